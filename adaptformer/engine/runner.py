"""From a validated config to a model, data loaders, a training run or an evaluation."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

import numpy as np
import paddle
from paddle.io import DataLoader, Subset

from adaptformer import freeze
from adaptformer.models.backbone import build_model
from adaptformer.weights.checkpoint import load_checkpoint, read_state
from adaptformer.config import Config, ConfigError, check_saved_config, save_config
from adaptformer.data import build_dataset, class_names, epoch_choice, eval_split, has_test
from adaptformer.data.loading import guarded_loader
from adaptformer.engine.step import autocast
from adaptformer.serve.tuned import backbone_fingerprint, save_tuned, tuned_size, tuned_state_names
from adaptformer.files.atomic import atomic_write_text
from adaptformer.errors import short_list
from adaptformer.engine import dist, memory
from adaptformer.files.run_folder import (LOCK, MANIFEST, RUN_FILES, acquire_lock, read_lock, check_folder, folder_entries, foreign_entries, owned_entries, record_written, release_lock,
                     remove_leftovers, remove_stale_temp_files, snapshot)
from adaptformer.engine.logger import read_records
from adaptformer.engine.trainer import BEST, LAST, Trainer, evaluate_model, resume_file, seed_everything


def build_loaders(cfg: Config) -> Tuple[DataLoader, DataLoader, List[str]]:
    d = cfg.data
    train_set = build_dataset(d, "train")
    names = class_names(d)
    if len(names) != cfg.model.num_classes:
        raise ConfigError(f"model.num_classes is {cfg.model.num_classes} but the data has {len(names)} classes")
    log = print if dist.is_main() else (lambda *a, **k: None)
    train_loader = guarded_loader(train_set, d, d.batch_size, shuffle=True, log=log)
    return train_loader, build_eval_loader(cfg, "eval"), names


def build_eval_loader(cfg: Config, split: str):
    """Each process evaluates every world_size-th sample (no padding), and the counts are summed."""
    d = cfg.data
    dataset = build_dataset(d, split)
    shard = Subset(dataset, list(range(dist.rank(), len(dataset), dist.world_size())))
    log = print if dist.is_main() else (lambda *a, **k: None)
    return guarded_loader(shard, d, d.eval_batch_size or d.batch_size, shuffle=False, log=log)


def prepare_output_dir(cfg: Config, resume: bool, overwrite: bool = False) -> Dict[str, tuple]:
    """Lock train.output_dir, check what it holds and claim it (the manifest); returns what an
    earlier run left there when --overwrite replaces it (removed once this run has finished), else {}."""
    out = cfg.train.output_dir
    if not dist.is_main():
        return {}
    acquire_lock(out)
    check_folder(out, resume, overwrite)  # again: the folder may have changed since the first check
    if resume:
        resume_file(out)  # "nothing to resume" before "no config.yaml"
        check_saved_config(cfg, out, fix="resume with the same -c/-o (train.output_dir may differ) or start a new train.output_dir")
    stale = remove_stale_temp_files(out)
    if stale:
        print(f"removed {len(stale)} temporary file(s) a killed run left in {out}: {', '.join(stale)}")
    if resume:  # nothing is replaced or removed
        return {}
    owned = owned_entries(out)  # the manifest, read once
    before = snapshot(out, owned)
    if before:
        print(f"--overwrite: the earlier run's files in {out} are replaced as this run writes its own; "
              "the others are removed when it finishes")
    kept = foreign_entries(out, owned)
    if kept:
        print(f"--overwrite: keeping {short_list(kept, 6)} in {out}: no run wrote them")
    record_written(out, *RUN_FILES)  # a resumed run claims the folder once its checkpoint has been read (_train)
    save_config(cfg, os.path.join(out, "config.yaml"))
    return before


def train(cfg: Config, resume: bool = False, overwrite: bool = False) -> Dict:
    # Optimizer state is keyed by Paddle's generated tensor names (linear_3.w_0_velocity_0).
    # A fresh name scope makes every run generate the same names, so a resumed run
    # finds its momentum buffers whatever was built before it in this process.
    out = cfg.train.output_dir
    if dist.is_main():
        check_folder(out, resume, overwrite)  # before any work
    fresh = not folder_entries(out) and not os.path.lexists(os.path.join(out, MANIFEST))
    with paddle.utils.unique_name.guard():
        try:
            return _train(cfg, resume, overwrite)
        except BaseException:
            if dist.is_main() and fresh:
                _abandon(out)
            raise
        finally:
            if dist.is_main():
                release_lock(out)


def _abandon(out: str) -> None:
    """A run into a new folder that failed before its first checkpoint leaves nothing behind: the
    folder would otherwise "hold a run" that holds nothing worth resuming."""
    import shutil

    if not os.path.isdir(out) or os.path.exists(os.path.join(out, LAST)) or os.path.exists(os.path.join(out, BEST)):
        return
    if read_lock(out)[0] != os.getpid():
        return  # the folder was never ours
    for name, kind in RUN_FILES.items():
        path = os.path.join(out, name)
        if os.path.islink(path) or os.path.isfile(path):
            os.remove(path)
        elif os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
    remove_stale_temp_files(out)
    for name in (MANIFEST, LOCK):
        if os.path.lexists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    if not os.listdir(out):
        os.rmdir(out)


def _train(cfg: Config, resume: bool, overwrite: bool = False) -> Dict:
    dist.init()
    log = print if dist.is_main() else (lambda *a, **k: None)
    seed_everything(cfg.train.seed)
    # Everything that can reject the config runs before the output folder is touched.
    model = build_model(cfg, load_backbone=not resume, log=log, batch_size=cfg.data.batch_size)
    params = freeze.summary(model)
    log(f"method {cfg.method.name}: {params}")
    train_loader, eval_loader, names = build_loaders(cfg)
    if eval_split(cfg.data) != "test" and has_test(cfg.data):
        build_dataset(cfg.data, "test")  # read (and checked) now, not after the last epoch
    earlier = prepare_output_dir(cfg, resume, overwrite)
    log(f"resolved config: {os.path.join(cfg.train.output_dir, 'config.yaml')}")
    # Taken before the Trainer (AMP O2 casts the backbone); a resumed run reads it from last.pdckpt.
    fingerprint = None if resume or cfg.method.names == ["full"] else backbone_fingerprint(model, tuned_state_names(model))
    trainer = Trainer(cfg, model, train_loader, eval_loader, names, backbone_fingerprint=fingerprint)
    if resume:
        trainer.resume()
        if dist.is_main():  # the folder may have been moved since: its config.yaml names where it is now
            record_written(cfg.train.output_dir, *RUN_FILES)
            save_config(cfg, os.path.join(cfg.train.output_dir, "config.yaml"))
    memory.reset_peak()
    result = trainer.fit()
    if has_test(cfg.data):
        test = final_test(cfg, model, result, len(names), log)
    else:
        test = {"test_top1": None, "test_top5": None, "test_top1_last": None, "test_images": 0}
        log(f"no test split (data.dataset {cfg.data.dataset} with these settings): nothing tested")
    tuned = None
    if dist.is_main() and cfg.method.names != ["full"]:
        tuned = save_tuned(model, os.path.join(cfg.train.output_dir, TUNED), cfg, names, trainer.backbone_fingerprint)
        size = tuned_size(tuned)
        shown = f"{size / 2**20:.2f} MiB" if size >= 2**20 else f"{size / 1024:.1f} KiB"
        log(f"tuned weights (what {cfg.method.name} changed, for the chosen epoch): {tuned} ({shown})")
    summary = {
        "method": cfg.method.name,
        "trainable_params": params.trainable,
        "total_params": params.total,
        "trainable_percent": params.percent,
        "trainable_mb": params.trainable_mb,
        "best_top1": result["best"]["top1"],
        "best_top5": result["best"].get("top5"),
        "best_epoch": result["best"]["epoch"],
        "selected_on": epoch_choice(cfg.data, cfg.train.select_epoch),
        **test,
        "epochs": cfg.train.epochs,
        "peak_memory_mb": memory.peak_mb(),
        "output_dir": cfg.train.output_dir,
        "class_names": names,  # what tools/predict.py names the outputs, with or without the data
        "tuned_weights": tuned,
    }
    if dist.is_main():
        atomic_write_text(os.path.join(cfg.train.output_dir, "summary.json"), json.dumps(summary, indent=2))
        removed = remove_leftovers(cfg.train.output_dir, earlier)
        if removed:
            log(f"--overwrite: removed the earlier run's {', '.join(removed)}")
    return summary


TEST_PREDICTIONS = "test_predictions.json"
TUNED = "tuned"  # the folder of tuned weights (adaptformer/serve/tuned.py) in train.output_dir


def final_test(cfg: Config, model, result: Dict, num_classes: int, log) -> Dict:
    """The test split, evaluated once the run is over: with the weights of the epoch chosen on the
    validation split (or on the test split itself, the paper's protocol, when there is no
    hold-out) and with the last epoch's. Per-image predictions go to test_predictions.json
    (single process) for paired comparisons between runs."""
    loader = build_eval_loader(cfg, "test")
    choice = epoch_choice(cfg.data, cfg.train.select_epoch)
    with autocast(cfg.train.amp):  # as the epochs' evaluations ran
        last = evaluate_model(model, loader, num_classes)
        best = last
        if choice != "last":  # else best.pdparams holds the last epoch's weights, the model's now
            load_checkpoint(model, os.path.join(cfg.train.output_dir, BEST))
            best = evaluate_model(model, loader, num_classes)
    out = {"test_top1": best.result()["top1"], "test_top5": best.result().get("top5"),
           "test_top1_last": last.result()["top1"], "test_images": best.result()["num_samples"]}
    chosen = "the last epoch's weights (train.select_epoch)" if choice == "last" else f"the epoch chosen on {choice}"
    noun = "videos" if cfg.data.dataset == "video" else "images"  # a video: its views, logits averaged
    log(f"test split ({out['test_images']} {noun}): top-1 {out['test_top1']:.4f} with {chosen} "
        f"(epoch {result['best']['epoch']}), {out['test_top1_last']:.4f} with the last epoch")
    if dist.is_main() and cfg.train.figures:
        draw_run_figures(cfg, loader.dataset, np.concatenate(best.predictions), log)
    if dist.is_main() and dist.world_size() == 1:
        predictions = {"labels": np.concatenate(best.targets).tolist(),
                       "best": np.concatenate(best.predictions).tolist(),
                       "last": np.concatenate(last.predictions).tolist()}
        atomic_write_text(os.path.join(cfg.train.output_dir, TEST_PREDICTIONS), json.dumps(predictions))
    return out


def draw_run_figures(cfg: Config, test_set, predicted: np.ndarray, log) -> None:
    """train.figures: the learning curves and a grid of test images with the chosen epoch's predictions."""
    from adaptformer.viz.run_figures import CURVES, TEST_GRID, plot_learning_curves, plot_test_grid

    out = cfg.train.output_dir
    plot_learning_curves(read_records(os.path.join(out, "metrics.jsonl")), eval_split(cfg.data), os.path.join(out, CURVES))
    plot_test_grid(test_set, predicted, class_names(cfg.data), cfg.data.mean, cfg.data.std, os.path.join(out, TEST_GRID))
    log(f"figures: {os.path.join(out, CURVES)}, {os.path.join(out, TEST_GRID)}")


def load_run_weights(model, checkpoint: str) -> None:
    """A run's best.pdparams (or the model part of a last.pdckpt) into `model`, every key matching."""
    state = read_state(checkpoint)
    if "model" in state and "optimizer" in state:  # a last.pdckpt resume file
        state = state["model"]
    load_checkpoint(model, checkpoint, state=state)


def evaluate(cfg: Config, checkpoint: str, split: str = "test") -> Dict:
    """Top-1/top-5, per-class accuracy and the confusion matrix of a checkpoint on `split`."""
    dist.init()
    model = build_model(cfg, load_backbone=False)
    load_run_weights(model, checkpoint)
    names = class_names(cfg.data)
    meter = evaluate_model(model, build_eval_loader(cfg, split), len(names))
    result = meter.result()
    result["checkpoint"] = checkpoint
    result["split"] = split
    result["per_class_accuracy"] = meter.per_class(names)
    result["class_names"] = names
    result["confusion_matrix"] = meter.confusion.astype(int).tolist()
    return result
