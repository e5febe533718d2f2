"""A benchmark suite in one command: a benchmark's protocol over many tasks and methods.

    python tools/train.py -c configs/vtab/suite.yaml -o suite.data_root=/data/vtab-1k [-o suite.tasks=[dtd,svhn]]
    python tools/train.py -c configs/fgvc/suite.yaml -o suite.data_root=/data/fgvc

suite.benchmark (study/benchmarks.py) is vtab (VTAB-1k) or fgvc (FGVC). For each task
(suite.tasks; empty = all of the benchmark's) found under suite.data_root, one study
(adaptformer/study/run.py) of suite.methods runs in suite.output_dir/<task>/:
  - with suite.sweep, every method trains once per value on the search protocol (VTAB-1k:
    train800, choices on val200; FGVC: train.json, choices on val.json; no test split) and keeps
    the value with the best validation top-1;
  - then each seed's final run, tested once: VTAB-1k trains on train800val200 and tests the last
    epoch's weights on test.txt; FGVC trains on train.json and tests the epoch chosen on val.json.
Every run's config is built and checked before the first one trains; --resume reuses finished
runs, task by task. At the end: suite.md and suite.csv (study/suite_report.py) and, per method,
one TaskBank serving every task's tuned folder, its size on disk in taskbank.json.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from adaptformer.config import (ConfigError, StageConfig, StudyConfig, SweepConfig, load_suite,
                                split_study_overrides)
from adaptformer.engine import dist
from adaptformer.files.atomic import atomic_write_text
from adaptformer.study.benchmarks import BENCHMARKS, Benchmark
from adaptformer.study.run import STUDY_KEYS, check_run_overrides, check_study, execute_study
from adaptformer.study.suite_report import write_suite_report


@dataclass
class Task:
    name: str
    folder: str
    num_classes: int
    group: str
    own: bool  # not one of the benchmark's tasks: its class count comes from the suite file


def benchmark_of(suite, path: str) -> Benchmark:
    if suite.benchmark not in BENCHMARKS:
        raise ConfigError(f"{path}: suite.benchmark must be one of {', '.join(BENCHMARKS)}, got {suite.benchmark!r}")
    return BENCHMARKS[suite.benchmark]


def _folder(root: str, name: str, bench: Benchmark, own: bool) -> Optional[str]:
    """root/<name>, or a folder whose name (any case) the benchmark knows as that task's."""
    path = os.path.join(root, name)
    if own or os.path.isdir(path):
        return path if os.path.isdir(path) else None
    entries = sorted(os.listdir(root)) if os.path.isdir(root) else []
    for entry in entries:
        if bench.task(entry) == name and os.path.isdir(os.path.join(root, entry)):
            return os.path.join(root, entry)
    return None


def resolve_tasks(suite, path: str) -> List[Task]:
    """The suite's tasks with their folders, class counts and groups; one line for any that is not there."""
    bench = benchmark_of(suite, path)
    entries = suite.tasks or list(bench.tasks)
    tasks, missing = [], []
    for entry in entries:
        if isinstance(entry, str):
            name = bench.task(entry)
            if name not in bench.tasks:
                own_hint = "; a task of one's own is {name: ..., num_classes: N, group: ...}" if bench.own_tasks else ""
                raise ConfigError(f"{path}: suite.tasks: {entry!r} is not one of {bench.title}'s tasks "
                                  f"({', '.join(bench.tasks)}){own_hint}")
            own, classes, group = False, bench.tasks[name], bench.groups[name]
        elif bench.own_tasks and isinstance(entry, dict) and isinstance(entry.get("name"), str) \
                and isinstance(entry.get("num_classes"), int) and entry["num_classes"] > 0 \
                and set(entry) <= {"name", "num_classes", "group"}:
            name, own, classes, group = entry["name"], True, entry["num_classes"], str(entry.get("group", "other"))
        else:
            kinds = "task names or {name, num_classes[, group]}" if bench.own_tasks else f"{bench.title} task names"
            raise ConfigError(f"{path}: suite.tasks entries are {kinds}, got {entry!r}")
        folder = _folder(suite.data_root, name, bench, own)
        if folder is None:
            missing.append(name)
            continue
        tasks.append(Task(name, folder, classes, group, own))
    if missing:
        raise ConfigError(f"{path}: suite.data_root {suite.data_root} has no folder for {', '.join(missing)}; "
                          "pass -o suite.tasks=[...] to run the others")
    if len({t.name for t in tasks}) != len(tasks):
        raise ConfigError(f"{path}: suite.tasks names a task twice")
    return tasks


def check_task_lists(data_cfg) -> None:
    """Read every list of the protocol (lines, labels, that each image exists): a broken test.txt
    stops the suite before its first run, not after the task's searches."""
    from adaptformer.data import build_dataset
    from adaptformer.data.kinds import kind_of

    for split in kind_of(data_cfg).splits_of(data_cfg):
        build_dataset(data_cfg, split)


def task_study(suite, task: Task, bench: Benchmark) -> StudyConfig:
    """The study that runs every method on one task: final runs, choices on the search protocol."""
    keys = bench.task_keys(task.name, task.folder, task.num_classes, task.own, "final")
    search = bench.task_keys(task.name, task.folder, task.num_classes, task.own, "search")
    sweep = SweepConfig(key=suite.sweep.key, values=list(suite.sweep.values), stages=list(suite.sweep.stages),
                        overrides={**{k: v for k, v in search.items() if keys[k] != v}, **suite.sweep.overrides})
    stages = [StageConfig(name=m.name, config=m.config, overrides=dict(m.overrides)) for m in suite.methods]
    return StudyConfig(name=f"{suite.name}/{task.name}", output_dir=os.path.join(suite.output_dir, task.name),
                       stages=stages, seeds=list(suite.seeds), sweep=sweep, overrides=keys)


def run_suite(path: str, overrides: Optional[List[str]] = None, resume: bool = False,
              overwrite: bool = False) -> Dict:
    suite_overrides, run_overrides = split_study_overrides(overrides, "suite")
    suite = load_suite(path, suite_overrides)
    bench = benchmark_of(suite, path)
    tasks = resolve_tasks(suite, path)
    studies = [task_study(suite, t, bench) for t in tasks]
    for study in studies:
        check_run_overrides(study, run_overrides, sets=STUDY_KEYS + bench.keys)
    folder = os.path.dirname(path)
    plans = []
    for study in studies:  # every task's every run checked before the first trains
        plan = check_study(study, folder, run_overrides, path, resume, overwrite)
        checked_lists = set()
        for runs in plan.values():
            for run in runs["runs"][:1] + runs["sweep"][:1]:
                data = run.config(folder, run_overrides).data
                if data.dataset != bench.dataset:
                    raise ConfigError(f"{path}: suite method '{run.stage.name}': {run.stage.config} reads "
                                      f"data.dataset {data.dataset}; a {bench.title} suite runs tasks in its "
                                      f"layout ({bench.dataset})")
                protocol = getattr(data, bench.dataset).protocol
                if (data.data_dir, protocol) not in checked_lists:  # every list the task's runs read
                    checked_lists.add((data.data_dir, protocol))
                    check_task_lists(data)
        plans.append(plan)
    print(f"suite {suite.name}: {len(tasks)} tasks x {len(suite.methods)} methods, every config checked; "
          f"results in {suite.output_dir}")
    started, results, predictions = time.time(), {}, {}
    for i, (task, study, plan) in enumerate(zip(tasks, studies, plans), 1):
        print(f"== suite {suite.name}: task {i}/{len(tasks)} {task.name} ({task.group}, {task.num_classes} classes)")
        stage_results = execute_study(study, folder, plan, run_overrides, resume, overwrite)
        results[task.name] = {r.stage.name: [run["summary"] for run in r.runs] for r in stage_results}
        predictions[task.name] = {r.stage.name: [run["predictions"] for run in r.runs] for r in stage_results}
        elapsed = time.time() - started
        print(f"== suite {suite.name}: {i}/{len(tasks)} tasks done in {elapsed:.0f} s"
              + (f", about {elapsed / i * (len(tasks) - i):.0f} s to go" if i < len(tasks) else ""))
    summary = {"name": suite.name, "tasks": [t.__dict__ for t in tasks], "results": results,
               "wall_seconds": time.time() - started}
    if dist.is_main():
        banks = {m.name: serve_tasks(results, m.name) for m in suite.methods}
        summary["taskbank"] = banks
        write_suite_report(suite, bench, tasks, results, banks, predictions)
        atomic_write_text(os.path.join(suite.output_dir, "suite.json"), json.dumps(summary, indent=2))
    return summary


def serve_tasks(results: Dict, method: str) -> Optional[Dict]:
    """One TaskBank on the method's backbone serving every task's tuned folder (first seed): each
    task's logits against its folder's own model, and the bytes on disk. None for full fine-tuning."""
    import paddle

    from adaptformer.config import load_config
    from adaptformer.models import create_model
    from adaptformer.serve import trained
    from adaptformer.serve.tasks import TaskBank
    from adaptformer.serve.tuned import tuned_size
    from adaptformer.weights import load_pretrained

    folders = {task: runs[method][0].get("tuned_weights") for task, runs in results.items()}
    if not all(folders.values()):
        return None
    first = load_config(os.path.join(os.path.dirname(next(iter(folders.values()))), "config.yaml"))
    if first.model.pretrained is None:
        return None
    backbone = create_model(first.model.name, num_classes=0, **first.model.kwargs)
    load_pretrained(backbone, first.model.pretrained)
    bank = TaskBank(backbone, log=lambda *a: None)
    x = np.random.default_rng(0).standard_normal((2, 3, first.data.img_size, first.data.img_size)).astype("float32")
    worst = 0.0
    for task, tuned in folders.items():
        bank.add(task, tuned)
        bank.activate(task)
        served = bank(x).numpy()
        own = trained.from_tuned(tuned, log=lambda *a: None).model
        with paddle.no_grad():
            worst = max(worst, float(np.abs(served - own(paddle.to_tensor(x)).numpy()).max()))
    tuned_bytes = sum(tuned_size(f) for f in folders.values())
    return {"tasks": len(folders), "backbone": first.model.pretrained,
            "backbone_bytes": os.path.getsize(first.model.pretrained), "tuned_bytes": tuned_bytes,
            "max_abs_logit_difference": worst}
