"""A study: several runs chained (e.g. pretrain -> frozen transfer -> full transfer),
repeated over seeds, optionally with one key chosen per stage on the validation split,
then one results table with paired comparisons (adaptformer/study/report.py).

Every run's config is built and checked before the first one trains, so a typo in the
last stage costs nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import paddle

from adaptformer.config import (Config, ConfigError, StageConfig, StudyConfig, load_config, load_study,
                     check_saved_config, split_study_overrides)
from adaptformer.data import eval_split
from adaptformer.engine import dist
from adaptformer.engine.logger import board_command, read_records
from adaptformer.engine.runner import TEST_PREDICTIONS, build_model, train
from adaptformer.engine.trainer import BEST, LAST
from adaptformer.files import open_regular, read_json
from adaptformer.study.report import write_results, write_sweep
from adaptformer.files.atomic import atomic_write_text

# Keys a study sets for each run itself.
STUDY_KEYS = ("train.output_dir", "model.pretrained", "train.seed")


@dataclass
class Run:
    """One training run of a stage: the keys the study sets, and its config once built."""

    stage: StageConfig
    keys: Dict[str, Any]
    sweep_value: Any = None  # set on a sweep's runs only

    @property
    def sweep(self) -> bool:
        return self.sweep_value is not None

    def config(self, folder: str, run_overrides: List[str], **more: Any) -> Config:
        return load_config(os.path.join(folder, self.stage.config), run_overrides, extra={**self.keys, **more})


@dataclass
class StageResult:
    stage: StageConfig
    runs: List[Dict] = field(default_factory=list)  # summary, records and test predictions of each run
    shipped: Optional[str] = None  # the committed checkpoint used instead of training


def run_study(path: str, overrides: Optional[List[str]] = None, resume: bool = False,
              overwrite: bool = False) -> List[StageResult]:
    """`overwrite` lets each run replace an earlier study's run in its folder; with `resume`,
    finished runs are reused and a run that never saved a checkpoint starts over in its folder.
    With both, a finished run made with another config (a stage changed, a widened sweep moving the
    choice) is trained again and every other finished run is reused."""
    study_overrides, run_overrides = split_study_overrides(overrides)
    study = load_study(path, study_overrides)
    check_run_overrides(study, run_overrides)
    folder = os.path.dirname(path)
    plan = check_study(study, folder, run_overrides, path, resume, overwrite)
    return execute_study(study, folder, plan, run_overrides, resume, overwrite)


def check_run_overrides(study: StudyConfig, run_overrides: List[str], sets=STUDY_KEYS) -> None:
    for o in run_overrides:
        key = o.split("=", 1)[0].strip()
        if key in sets or key == study.sweep.key:
            raise ConfigError(f"-o {o}: a study sets {key} per run; change the study file (or -o study.*) instead")


def check_study(study: StudyConfig, folder: str, run_overrides: List[str], path: str,
                resume: bool, overwrite: bool = False) -> Dict[str, Dict[str, List[Run]]]:
    """Every run of the study planned and its config built and checked (nothing trains yet)."""
    plan = {s.name: plan_stage(study, folder, s) for s in study.stages}
    planned = [r for p in plan.values() for r in p["runs"] + p["sweep"]]
    checked_models = set()  # a stage's runs differ in seed and swept value, not in their model
    for run in planned:
        cfg = run.config(folder, run_overrides)
        check_run(run, cfg, path, build=run.stage.name not in checked_models)
        checked_models.add(run.stage.name)
        if resume:
            # Not known yet: the backbone an earlier stage will point to (itself checked here, or a
            # committed file checked by its sha256) and a seed run's value chosen by the sweep
            # (checked once chosen, below).
            unknown = (["model.pretrained"] if run.stage.pretrained_from else []) + (
                [study.sweep.key] if plan[run.stage.name]["sweep"] and not run.sweep else [])
            reusable(cfg, unknown, overwrite)
    reused = sum(1 for p in plan.values() if p["sweep"] and p["runs"] and not study.sweep.overrides)
    print(f"study {study.name}: {len(planned) - reused} trainings planned (every config checked); "
          f"results in {study.output_dir}")
    return plan


def execute_study(study: StudyConfig, folder: str, plan: Dict[str, Dict[str, List[Run]]], run_overrides: List[str],
                  resume: bool, overwrite: bool) -> List[StageResult]:
    started = time.time()
    results: List[StageResult] = []
    backbones: Dict[str, str] = {}
    sweep_rows: List[Dict] = []
    for stage in study.stages:
        result = StageResult(stage)
        shipped = shipped_checkpoint(study, folder, stage)
        if shipped is not None:
            print(f"== stage {stage.name}: committed checkpoint {shipped} (sha256 checked; "
                  "-o study.use_checkpoints=false trains it instead)")
            result.shipped = shipped
            result.runs.append(shipped_run(shipped))
            backbones[stage.name] = shipped
            results.append(result)
            continue
        more = {"model.pretrained": backbones[stage.pretrained_from]} if stage.pretrained_from else {}
        # an earlier stage's backbone: its path is the study's to give, and a moved study changes it
        ignored = list(more)
        chosen: Dict[str, Any] = {}
        reuse = None  # the sweep's run of the chosen value is the first seed's run
        if plan[stage.name]["sweep"]:
            done = [execute(r.config(folder, run_overrides, **more), resume, overwrite, ignored)
                    for r in plan[stage.name]["sweep"]]
            scores = [d["summary"]["best_top1"] for d in done]
            values = [r.sweep_value for r in plan[stage.name]["sweep"]]
            best = scores.index(max(scores))  # the first of equal scores
            chosen = {study.sweep.key: values[best]}
            # The sweep's run of the chosen value is the first seed's, unless the choice runs differ
            # from the final ones in more than the swept key (study.sweep.overrides).
            reuse = None if study.sweep.overrides else done[best]
            sweep_rows += [{"stage": stage.name, "key": study.sweep.key, "value": v, "val_top1": sc,
                            "chosen": i == best} for i, (v, sc) in enumerate(zip(values, scores))]
            print(f"== stage {stage.name}: {study.sweep.key} = {values[best]!r} chosen on the validation split")
        for i, run in enumerate(plan[stage.name]["runs"]):
            if i == 0 and reuse is not None:
                result.runs.append(reuse)
                continue
            cfg = run.config(folder, run_overrides, **more, **chosen)
            result.runs.append(execute(cfg, resume, overwrite, ignored))
        backbones[stage.name] = os.path.join(result.runs[0]["folder"], BEST)
        results.append(result)
    if dist.is_main():
        if sweep_rows:
            write_sweep(study.output_dir, sweep_rows)
        write_results(study, results)
        atomic_write_text(os.path.join(study.output_dir, "study.json"), json.dumps(
            {"name": study.name, "wall_seconds": time.time() - started, "resumed": resume}, indent=2))
        print(f"every run's curves in one VisualDL board: {board_command(study.output_dir)}")
    return results


def check_run(run: Run, cfg: Config, path: str, build: bool = True) -> None:
    """What would stop this run later: its model, the files it names (not a checkpoint an earlier
    stage will write), and for a sweep, a validation split to choose on."""
    if run.sweep and eval_split(cfg.data) != "val":
        raise ConfigError(f"{path}: stage '{run.stage.name}': study.sweep chooses on the validation split, "
                          f"so its config {run.stage.config} needs one (data.val_fraction > 0, or data that "
                          "brings its own)")
    named = {"model.pretrained": None if run.stage.pretrained_from else cfg.model.pretrained,
             "data.data_file": cfg.data.data_file, "data.data_dir": cfg.data.data_dir}
    for key, file in named.items():
        if file is not None and not os.path.exists(file):
            raise ConfigError(f"{path}: stage '{run.stage.name}': {key} {file} does not exist")
    if build:
        with paddle.utils.unique_name.guard():
            build_model(cfg, load_backbone=False, log=lambda *a, **k: None)


def plan_stage(study: StudyConfig, folder: str, stage: StageConfig) -> Dict[str, List[Run]]:
    """A stage's runs: once per seed (once if it is another stage's backbone or there are no
    seeds), plus its sweep runs; none if a committed checkpoint stands in for it."""
    if shipped_checkpoint(study, folder, stage, check=False) is not None:
        return {"runs": [], "sweep": []}
    backbone = any(s.pretrained_from == stage.name for s in study.stages)
    seeds = [None] if backbone or not study.seeds else list(study.seeds)
    base = {**study.overrides, **stage.overrides}
    stage_out = os.path.join(study.output_dir, stage.name)

    def run(out: str, seed: Optional[int], **keys: Any) -> Run:
        seeded = {} if seed is None else {"train.seed": seed}
        return Run(stage, {**base, **keys, **seeded, "train.output_dir": out}, keys.get(study.sweep.key))

    runs = [run(stage_out if seed is None else os.path.join(stage_out, f"seed{seed}"), seed) for seed in seeds]
    swept = study.sweep.key is not None and (
        stage.name in study.sweep.stages if study.sweep.stages else not backbone)
    sweep = [run(os.path.join(stage_out, "sweep", f"{study.sweep.key}={v}"), seeds[0],
                 **{**study.sweep.overrides, study.sweep.key: v})
             for v in (study.sweep.values if swept else [])]
    return {"runs": runs, "sweep": sweep}


def shipped_checkpoint(study: StudyConfig, folder: str, stage: StageConfig, check: bool = True) -> Optional[str]:
    """The committed checkpoint standing in for `stage`, its sha256 checked; None if it is to be trained."""
    if stage.checkpoint is None or not study.use_checkpoints:
        return None
    path = os.path.normpath(os.path.join(folder, stage.checkpoint))
    if not os.path.isfile(path):
        raise ConfigError(f"stage '{stage.name}': checkpoint {path} not found "
                          "(-o study.use_checkpoints=false trains the stage instead)")
    if check and stage.checkpoint_sha256 is not None:
        digest = sha256_of(path)
        if digest != stage.checkpoint_sha256:
            raise ConfigError(f"stage '{stage.name}': {path} has sha256 {digest}, the study expects "
                              f"{stage.checkpoint_sha256}")
    return path


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open_regular(path, "weights", "a committed checkpoint") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped_run(checkpoint: str) -> Dict:
    """What the run that produced a committed checkpoint recorded, from <name>.summary.json beside it."""
    side = os.path.splitext(checkpoint)[0] + ".summary.json"
    if not os.path.lexists(side):
        raise ConfigError(f"{checkpoint}: its run summary {side} is missing")
    saved = read_json(side, "json", "the run summary of a committed checkpoint")
    if not isinstance(saved.get("summary"), dict) or not isinstance(saved.get("records", []), list):
        raise ConfigError(f"{side}: expected {{\"summary\": {{...}}, \"records\": [...]}}")
    return {"summary": saved["summary"], "records": saved.get("records", []), "predictions": None}


def finished(out: str) -> bool:
    return os.path.exists(os.path.join(out, "summary.json"))


def reusable(cfg: Config, ignored: Sequence[str], overwrite: bool) -> bool:
    """Whether --resume reuses the run in cfg's folder: it finished, with this run's config (the
    `ignored` keys apart: a study may change what does not change the run). A finished run made with
    another config is refused, or with --overwrite trained again."""
    out = cfg.train.output_dir
    if not finished(out):
        return False
    try:
        check_saved_config(cfg, out, list(ignored), fix="add --overwrite to train again the runs whose "
                                                        "config changed, or use another study.output_dir")
    except ConfigError:
        if not overwrite:
            raise
        return False
    return True


def execute(cfg: Config, resume: bool, overwrite: bool, ignored: Sequence[str] = ()) -> Dict:
    """Train one run (or, with --resume, reuse it if it finished with this config) and collect what
    the report needs."""
    out = cfg.train.output_dir
    if resume and reusable(cfg, ignored, overwrite):
        print(f"== {out}: already finished")
        summary = read_json(os.path.join(out, "summary.json"), "json", "a run's summary.json")
    else:
        stale = resume and finished(out)  # made with another config: --overwrite trains it again
        print(f"== {out}: {cfg.method.name} on {cfg.data.dataset}, seed {cfg.train.seed}"
              + (" (its finished run had another config)" if stale else ""))
        # --resume continues a run interrupted after a checkpoint, and restarts one interrupted before it
        continues = resume and not stale and os.path.exists(os.path.join(out, LAST))
        summary = train(cfg, resume=continues, overwrite=overwrite or (resume and not continues))
    records = read_records(os.path.join(out, "metrics.jsonl")) if dist.is_main() else []
    predictions = None
    pred_path = os.path.join(out, TEST_PREDICTIONS)
    if os.path.lexists(pred_path):
        predictions = read_json(pred_path, "json", "a run's test predictions")
    # The folder this study gave the run: a finished run moved here keeps its old summary.output_dir.
    return {"summary": summary, "records": records, "predictions": predictions, "folder": out}
