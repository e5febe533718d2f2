"""Studies: a validation hold-out for every choice, the test split once, seeds, a sweep with one
grid for every stage, paired comparisons, committed checkpoints standing in for a stage."""
import json
import os
import sys

import numpy as np
import pytest
import yaml

from adaptformer.config import ConfigError, DataConfig, load_config
from adaptformer.data import build_dataset
from adaptformer.data.holdout import holdout_indices
from adaptformer.engine import train
from adaptformer.engine.runner import TEST_PREDICTIONS
from adaptformer.study.run import run_study, sha256_of
from conftest import ROOT, run_tool

SYNTHETIC = {"dataset": "synthetic", "synthetic_train_size": 48, "synthetic_eval_size": 20,
             "synthetic_num_classes": 4, "batch_size": 16, "num_workers": 0, "val_fraction": 0.25}


def test_holdout_is_per_class_seeded_and_disjoint():
    labels = np.repeat(np.arange(3), [10, 20, 7])
    train_idx, val_idx = holdout_indices(labels, 0.2, seed=0)
    assert np.bincount(labels[val_idx]).tolist() == [2, 4, 1]
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(37))
    again, _ = holdout_indices(labels, 0.2, seed=0)
    other, _ = holdout_indices(labels, 0.2, seed=1)
    assert np.array_equal(again, train_idx) and not np.array_equal(other, train_idx)
    # at least one image per class is held out, and never a whole class
    _, tiny = holdout_indices(np.array([0, 0, 1, 1, 1]), 0.01, seed=0)
    assert np.bincount(np.array([0, 0, 1, 1, 1])[tiny]).tolist() == [1, 1]


def test_splits_of_a_dataset_with_a_holdout():
    cfg = DataConfig(**SYNTHETIC)
    train, val, test, ev = (build_dataset(cfg, s) for s in ("train", "val", "test", "eval"))
    assert (len(train), len(val), len(test), len(ev)) == (36, 12, 20, 12)
    assert np.bincount(val.labels).tolist() == [3, 3, 3, 3]
    # held-out images are training images, shown with the eval transform (no augmentation)
    whole_train = build_dataset(DataConfig(**{**SYNTHETIC, "val_fraction": 0.0}), "test")
    assert not set(val.indices) & set(train.indices) and val.dataset.seed != whole_train.seed
    assert np.array_equal(val[0][0], val[0][0]) and not np.array_equal(train[0][0], train[0][0])
    no_holdout = DataConfig(**{**SYNTHETIC, "val_fraction": 0.0})
    assert len(build_dataset(no_holdout, "train")) == 48 and len(build_dataset(no_holdout, "eval")) == 20


def run_config(tmp_path, name="run", **sections):
    cfg = {
        "model": {"name": "vit_tiny_patch4_32", "num_classes": 4, "kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2}},
        "method": {"name": "full"},
        "data": dict(SYNTHETIC),
        "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0},
        "train": {"epochs": 3, "output_dir": str(tmp_path / name)},
    }
    for section, values in sections.items():
        cfg[section] = {**cfg[section], **values}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_a_run_chooses_its_epoch_on_val_and_tests_once(tmp_path):
    summary = train(load_config(run_config(tmp_path)))
    out = tmp_path / "run"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["eval_num_samples"] for r in records} == {12}  # every epoch on the 12 held-out images
    best = max(records, key=lambda r: r["eval_top1"])
    assert summary["selected_on"] == "val" and summary["best_epoch"] == best["epoch"]
    assert summary["best_top1"] == pytest.approx(best["eval_top1"])
    predictions = json.loads((out / TEST_PREDICTIONS).read_text())
    labels = np.array(predictions["labels"])
    assert summary["test_images"] == len(labels) == 20
    assert summary["test_top1"] == pytest.approx(np.mean(np.array(predictions["best"]) == labels))
    assert summary["test_top1_last"] == pytest.approx(np.mean(np.array(predictions["last"]) == labels))
    # The chosen epoch's weights are the ones tested: best.pdparams evaluated on its own agrees,
    # image by image (a final test that never reloaded them would report the last epoch's).
    from adaptformer.engine import evaluate

    alone = evaluate(load_config(run_config(tmp_path)), str(out / "best.pdparams"), split="test")
    assert alone["top1"] == pytest.approx(summary["test_top1"], abs=1e-9)


def test_lr_mult_scales_the_update_of_matching_parameters(tmp_path):
    from adaptformer import freeze
    from adaptformer.engine.optim import build_optimizer
    from adaptformer.engine.runner import build_model
    import paddle

    def one_step(lr_mult):
        cfg = load_config(run_config(tmp_path, method={"name": "adaptformer"}),
                          ["optimizer.name=sgd", "optimizer.weight_decay=0", f"optimizer.lr_mult={lr_mult}"])
        paddle.seed(0)
        model = build_model(cfg, log=lambda *a: None)
        before = {n: p.numpy().copy() for n, p in freeze.trainable_named_parameters(model).items()}
        opt = build_optimizer(cfg.optimizer, freeze.trainable_named_parameters(model), 0.1)
        x = paddle.to_tensor(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype("float32"))
        paddle.nn.functional.cross_entropy(model(x), paddle.to_tensor([0, 1, 2, 3])).backward()
        opt.step()
        return {n: p.numpy() - before[n] for n, p in freeze.trainable_named_parameters(model).items()}

    plain, scaled = one_step("{}"), one_step("{adapter: 10}")
    up = "blocks.0.adapter.up_proj.weight"
    assert np.abs(plain[up]).max() > 0
    np.testing.assert_allclose(scaled[up], 10 * plain[up], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(scaled["head.weight"], plain["head.weight"], rtol=1e-6)
    with pytest.raises(ConfigError, match=r"optimizer.lr_mult: patterns \['adaptor'\] match no trainable"):
        one_step("{adaptor: 10}")


def write_study(tmp_path, **study):
    pre = run_config(tmp_path, "pre", train={"epochs": 2})
    transfer = run_config(tmp_path, "transfer", model={"reset_head": True}, train={"epochs": 2})
    body = {"name": "s", "output_dir": str(tmp_path / "out"), "stages": [
        {"name": "pre", "config": os.path.basename(pre)},
        {"name": "adaptformer", "config": os.path.basename(transfer), "pretrained_from": "pre",
         "overrides": {"method.name": "adaptformer"}},
        {"name": "linear", "config": os.path.basename(transfer), "pretrained_from": "pre",
         "overrides": {"method.name": "linear"}},
    ], **study}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"study": body}))
    return str(path)


def test_study_seeds_sweep_and_paired_comparisons(tmp_path):
    path = write_study(tmp_path, seeds=[0, 1], compare=[["adaptformer", "linear"]],
                       sweep={"key": "optimizer.lr", "values": [0.0001, 0.01]})
    results = run_study(path)
    out = tmp_path / "out"
    assert [len(r.runs) for r in results] == [1, 2, 2]  # the backbone stage runs once
    rows = (out / "sweep.csv").read_text().splitlines()[1:]
    assert len(rows) == 4 and not (out / "pre" / "sweep").exists()
    for stage in ("adaptformer", "linear"):
        scores = {float(r.split(",")[2]): float(r.split(",")[3]) for r in rows if r.startswith(stage)}
        chosen = max(scores, key=lambda v: (scores[v], -list(scores).index(v)))
        # seed 0 is the sweep's run of the chosen value, not trained twice
        assert not (out / stage / "seed0").exists()
        first = out / stage / "sweep" / f"optimizer.lr={chosen}"
        for seed, folder in ((0, first), (1, out / stage / "seed1")):
            saved = yaml.safe_load((folder / "config.yaml").read_text())
            assert saved["optimizer"]["lr"] == chosen and saved["train"]["seed"] == seed
            assert saved["model"]["pretrained"] == str(out / "pre" / "best.pdparams")
    text = (out / "results.md").read_text()
    assert "±" in text and "adaptformer − linear" in text
    comparison = (out / "comparisons.csv").read_text().splitlines()
    assert comparison[1].startswith("adaptformer − linear") and comparison[1].endswith(",20,2")


def test_a_moved_study_resumes_from_its_new_folder(tmp_path):
    """--resume reuses finished runs; the next stage's backbone is the one in the study's folder,
    not the folder a moved run's summary still names."""
    run_study(write_study(tmp_path, seeds=[0]))
    os.rename(tmp_path / "out", tmp_path / "moved")
    finished = (tmp_path / "moved" / "linear" / "seed0" / "summary.json").read_text()
    run_study(write_study(tmp_path, seeds=[0, 1], output_dir=str(tmp_path / "moved")), resume=True)
    assert (tmp_path / "moved" / "linear" / "seed0" / "summary.json").read_text() == finished
    saved = yaml.safe_load((tmp_path / "moved" / "linear" / "seed1" / "config.yaml").read_text())
    assert saved["model"]["pretrained"] == str(tmp_path / "moved" / "pre" / "best.pdparams")


def test_a_study_resume_continues_a_run_killed_after_a_checkpoint_and_restarts_one_killed_before(tmp_path, capsys):
    """Runs interrupted mid-way (no summary.json): one with last.pdckpt continues from it, one without
    starts again in its folder; neither stops the study."""
    path = write_study(tmp_path, seeds=[0, 1])
    run_study(path)
    out = tmp_path / "out" / "linear"
    finished = json.loads((out / "seed0" / "summary.json").read_text())
    for seed in ("seed0", "seed1"):
        os.remove(out / seed / "summary.json")
    os.remove(out / "seed1" / "last.pdckpt")
    capsys.readouterr()
    run_study(path, resume=True)
    log = capsys.readouterr().out
    again = json.loads((out / "seed0" / "summary.json").read_text())
    assert again["test_top1"] == finished["test_top1"] and again["best_epoch"] == finished["best_epoch"]
    assert (out / "seed1" / "summary.json").exists() and (out / "seed1" / "last.pdckpt").exists()
    assert f"== {out / 'seed0'}: linear" in log and f"== {out / 'seed1'}: linear" in log
    assert log.count("already finished") >= 1  # the runs left whole are reused


def test_resume_refuses_a_finished_run_made_with_another_config(tmp_path):
    path = write_study(tmp_path, seeds=[0, 1], sweep={"key": "optimizer.lr", "values": [0.0001, 0.01]})
    run_study(path)
    study = yaml.safe_load(open(path))
    study["study"]["stages"][2]["overrides"]["optimizer.weight_decay"] = 0.5
    open(path, "w").write(yaml.safe_dump(study))
    before = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    with pytest.raises(ConfigError, match=r"linear/seed1/config.yaml: the run in .* was made with another config"):
        run_study(path, resume=True)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == before  # refused before any work


def test_resume_with_overwrite_trains_again_only_the_runs_whose_config_changed(tmp_path, capsys):
    """--resume --overwrite after a stage's config changed: that stage's finished runs are trained
    again with the new config; every other finished run is reused as it is."""
    path = write_study(tmp_path, seeds=[0, 1], sweep={"key": "optimizer.lr", "values": [0.0001, 0.01]})
    run_study(path)
    out = tmp_path / "out"
    kept = {p: p.read_text() for p in out.glob("adaptformer/**/summary.json")}
    assert len(kept) == 3  # two sweep runs (one of them seed 0) and seed 1
    study = yaml.safe_load(open(path))
    study["study"]["stages"][2]["overrides"]["optimizer.weight_decay"] = 0.5
    open(path, "w").write(yaml.safe_dump(study))
    capsys.readouterr()
    run_study(path, resume=True, overwrite=True)
    log = capsys.readouterr().out
    assert {p: p.read_text() for p in kept} == kept and log.count("already finished") == 4  # pre + adaptformer's 3
    retrained = sorted(out.glob("linear/**/config.yaml"))
    assert len(retrained) == 3 and log.count("(its finished run had another config)") == 3
    for folder in retrained:
        assert yaml.safe_load(folder.read_text())["optimizer"]["weight_decay"] == 0.5


def test_a_study_checks_every_config_before_the_first_run(tmp_path):
    path = write_study(tmp_path)
    study = yaml.safe_load(open(path))
    study["study"]["stages"][2]["overrides"] = {"optimizer.lr": "fast"}
    open(path, "w").write(yaml.safe_dump(study))
    with pytest.raises(ConfigError, match="optimizer.lr must be a number"):
        run_study(path)
    assert not (tmp_path / "out").exists()


def test_a_committed_checkpoint_stands_in_for_its_stage(tmp_path):
    run_study(write_study(tmp_path))
    shipped = tmp_path / "shipped.pdparams"
    shipped.write_bytes((tmp_path / "out" / "pre" / "best.pdparams").read_bytes())
    summary = json.loads((tmp_path / "out" / "pre" / "summary.json").read_text())
    (tmp_path / "shipped.summary.json").write_text(json.dumps({"summary": summary, "records": []}))
    digest = sha256_of(str(shipped))

    def study_with(sha):
        path = write_study(tmp_path, output_dir=str(tmp_path / "out2"))
        study = yaml.safe_load(open(path))
        study["study"]["stages"][0].update(checkpoint="shipped.pdparams", checkpoint_sha256=sha)
        open(path, "w").write(yaml.safe_dump(study))
        return path

    with pytest.raises(ConfigError, match=f"has sha256 {digest}, the study expects 0000"):
        run_study(study_with("0000"))
    results = run_study(study_with(digest))
    assert results[0].shipped == str(shipped) and not (tmp_path / "out2" / "pre").exists()
    saved = yaml.safe_load((tmp_path / "out2" / "linear" / "config.yaml").read_text())
    assert saved["model"]["pretrained"] == str(shipped)
    retrained = run_study(study_with(digest), ["study.use_checkpoints=false"], overwrite=True)
    assert retrained[0].shipped is None and (tmp_path / "out2" / "pre" / "best.pdparams").exists()


def test_eval_without_arguments_takes_the_most_recent_run(tmp_path):
    for name in ("older", "newer"):
        r = run_tool([sys.executable, os.path.join(ROOT, "tools", "train.py"), "-c",
                      run_config(tmp_path, name, train={"epochs": 1, "output_dir": f"output/{name}"})],
                     cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr[-2000:]
    os.utime(tmp_path / "output" / "older" / "best.pdparams", (1, 1))
    r = run_tool([sys.executable, os.path.join(ROOT, "tools", "eval.py")], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "evaluating the most recent run: output/newer/best.pdparams" in r.stdout
    assert "test top-1" in r.stdout and (tmp_path / "output" / "newer" / "best_test_eval.json").exists()
