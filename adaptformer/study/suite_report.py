"""The table a benchmark suite's readers look for: test top-1 per task and method (mean ± sample
standard deviation over seeds, in %), the group means and the mean over tasks, trainable
parameters per task, and the benchmark's published figures beside ours where they exist
(study/benchmarks.py).
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import numpy as np

from adaptformer.files.atomic import atomic_write_text
from adaptformer.study.benchmarks import Benchmark
from adaptformer.study.report import correct_matrix
from adaptformer.study.stats import mcnemar, stratified_paired_bootstrap
from adaptformer.viz.suite_figures import FIGURE, plot_suite


def _cell(values: List[float]) -> str:
    if not values:
        return "-"
    mean = 100 * float(np.mean(values))
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {100 * float(np.std(values, ddof=1)):.1f}"


def _tops(results: Dict, task: str, method: str) -> List[float]:
    return [s["test_top1"] for s in results[task][method] if s.get("test_top1") is not None]


def table_rows(tasks, results: Dict, methods: List[str], group_order) -> List[Dict]:
    """One row per task, then one per group present and the mean over tasks (of the seeds' means)."""
    rows = []
    for t in tasks:
        row = {"task": t.name, "group": t.group, "classes": t.num_classes, "own": t.own, "mean": False}
        for m in methods:
            row[m] = _tops(results, t.name, m)
            params = [s["trainable_params"] for s in results[t.name][m]]
            row[f"{m} params"] = params[0] if params else None
        rows.append(row)
    groups = [g for g in group_order if any(t.group == g for t in tasks)]
    groups += sorted({t.group for t in tasks} - set(groups))
    means = []
    for label, members in [(f"{g} mean", [t for t in tasks if t.group == g]) for g in groups] + [
            ("mean over tasks", list(tasks))]:
        row = {"task": label, "group": f"{len(members)} task{'s' if len(members) > 1 else ''}", "classes": "",
               "own": False, "mean": True}
        for m in methods:
            per_task = [float(np.mean(_tops(results, t.name, m))) for t in members if _tops(results, t.name, m)]
            row[m] = [float(np.mean(per_task))] if per_task else []
        means.append(row)
    return rows + means


def _published(bench: Benchmark, method: str, task: str, every_task: bool) -> Optional[float]:
    """The published figure for this row: a standard task's, or the mean when the suite ran every task."""
    if task == "mean over tasks":
        return bench.published_means.get(method) if every_task else None
    return bench.published_tasks.get(method, {}).get(task)


def comparison_rows(pairs: List[List[str]], tasks, predictions: Dict) -> List[Dict]:
    """Method A against B on every task's test images, paired image by image and seed by seed: the
    difference of the means over tasks, its 95 % interval and p from a bootstrap resampling images
    within each task, McNemar's exact test per seed on all tasks' images pooled, and each task's
    own difference."""
    rows = []
    for a, b in pairs:
        strata = []
        for t in tasks:
            ca = correct_matrix(predictions[t.name][a], f"task {t.name}, method {a}")
            cb = correct_matrix(predictions[t.name][b], f"task {t.name}, method {b}")
            if ca.shape[1] != cb.shape[1]:
                raise ValueError(f"task {t.name}: methods {a} and {b} were tested on different images")
            strata.append((ca, cb))
        seeds = min(min(len(ca), len(cb)) for ca, cb in strata)
        strata = [(ca[:seeds], cb[:seeds]) for ca, cb in strata]
        boot = stratified_paired_bootstrap(strata)
        pooled = [mcnemar(np.concatenate([ca[i] for ca, _ in strata]), np.concatenate([cb[i] for _, cb in strata]))
                  for i in range(seeds)]
        rows.append({
            "pair": f"{a} − {b}",
            "diff": 100 * boot["diff"], "ci_low": 100 * boot["ci_low"], "ci_high": 100 * boot["ci_high"],
            "p": boot["p"],
            "mcnemar": ", ".join(f"{m['only_a']}/{m['only_b']} p={m['p']:.3g}" for m in pooled),
            "per_task": {t.name: 100 * float((ca.mean(axis=1) - cb.mean(axis=1)).mean())
                         for t, (ca, cb) in zip(tasks, strata)},
            "images": sum(ca.shape[1] for ca, _ in strata), "tasks": len(strata), "seeds": seeds,
        })
    return rows


def _comparison_lines(rows: List[Dict]) -> List[str]:
    if not rows:
        return []
    lines = ["Paired comparisons on the test images (the same images and seeds for both methods):", "",
             "| A − B | mean over tasks (points) | 95 % interval (bootstrap over images within each task) | p | "
             "McNemar per seed, all tasks' images: only A right / only B right | per task (points) | "
             "images | seeds |", "|---|---:|---|---:|---|---|---:|---:|"]
    for r in rows:
        per_task = ", ".join(f"{t} {d:+.1f}" for t, d in r["per_task"].items())
        lines.append(f"| {r['pair']} | {r['diff']:+.1f} | [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}] | {r['p']:.4f} | "
                     f"{r['mcnemar']} | {per_task} | {r['images']} | {r['seeds']} |")
    return lines + [""]


def write_suite_report(suite, bench: Benchmark, tasks, results: Dict, banks: Dict,
                       predictions: Optional[Dict] = None) -> None:
    methods = [m.name for m in suite.methods]
    rows = table_rows(tasks, results, methods, bench.group_order)
    # Published columns only beside the benchmark's own tasks: a task of one's own named like one of
    # them (the miniature's dsprites_loc) is another task.
    shown = [m for m in methods if m in bench.published_means] if not all(t.own for t in tasks) else []
    header = ["task", "group", "classes"] + [f"{m} top-1 %" for m in methods] + [f"{m} (V-PETL)" for m in shown]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    csv = [",".join(["task", "group", "classes"] + [f"{m}_top1" for m in methods] + [f"{m}_trainable_params"
                                                                                  for m in methods])]
    every_task = not any(t.own for t in tasks) and {t.name for t in tasks} == set(bench.tasks)
    for r in rows:
        standard = not r["own"] and (not r["mean"] or r["task"] == "mean over tasks")
        published = [_published(bench, m, r["task"], every_task) if standard else None for m in shown]
        lines.append("| " + " | ".join([r["task"], r["group"], str(r["classes"])] + [_cell(r[m]) for m in methods]
                                       + ["-" if p is None else f"{p:.1f}" for p in published]) + " |")
        csv.append(",".join([r["task"], r["group"], str(r["classes"])]
                            + ["" if not r[m] else f"{float(np.mean(r[m])):.6f}" for m in methods]
                            + [str(r.get(f"{m} params") or "") for m in methods]))
    params = ["| method | trainable parameters per task (first task) | trainable % (largest over tasks) | "
              "TaskBank: tasks served | tuned weights on disk | backbone on disk | max logit difference |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        bank = banks.get(m)
        first = rows[0].get(f"{m} params")
        percent = max((s["trainable_percent"] for t in tasks for s in results[t.name][m]
                       if s.get("trainable_percent") is not None), default=None)
        served = (f"{bank['tasks']} | {bank['tuned_bytes'] / 2**20:.2f} MiB | {bank['backbone_bytes'] / 2**20:.1f} MiB | "
                  f"{bank['max_abs_logit_difference']:.2g}") if bank else "- | - | - | -"
        params.append(f"| {m} | {'-' if first is None else f'{first:,}'} | "
                      f"{'-' if percent is None else f'{percent:.2f}'} | {served} |")
    compared = comparison_rows(suite.compare, tasks, predictions) if suite.compare and predictions else []
    seeds = f"seeds {', '.join(map(str, suite.seeds))}" if suite.seeds else "one run per method"
    sweep = (f"{suite.sweep.key} chosen per task and method on the validation split from "
             f"{suite.sweep.values}" if suite.sweep.key else "no sweep: each method's config as written")
    text = "\n".join([
        f"# Suite {suite.name}",
        "",
        f"{bench.title}: test top-1 of the final runs ({bench.final_runs}); {seeds}; "
        f"{sweep}. Group rows are means of the task means; \"mean over tasks\" is {bench.title}'s usual mean. "
        f"The V-PETL columns are {bench.published_source}, for comparison only where the task and method are "
        "the standard ones.",
        "",
        *lines,
        "",
        *params,
        "",
        *_comparison_lines(compared),
        f"![test top-1 per task]({FIGURE})",
        "",
    ])
    atomic_write_text(os.path.join(suite.output_dir, "suite.md"), text)
    atomic_write_text(os.path.join(suite.output_dir, "suite.csv"), "\n".join(csv) + "\n")
    if compared:
        atomic_write_text(os.path.join(suite.output_dir, "suite_comparisons.json"), json.dumps(compared, indent=2))
    plot_suite(rows, methods, os.path.join(suite.output_dir, FIGURE))
    print(text)
