"""A study's results: the table (Markdown + CSV), paired comparisons, learning curves and
accuracy against trainable parameters (PNG); the sweep's table when there was one."""
from __future__ import annotations

import csv
import io
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from adaptformer.viz.study_figures import write_study_figures
from adaptformer.study.stats import mcnemar, paired_bootstrap
from adaptformer.files.atomic import atomic_write_text

PROTOCOL = {"val": "val", "test": "test (paper protocol)", "last": "none (last epoch)"}


def _mean_std(values: Sequence[Optional[float]]):
    """(mean, sample standard deviation) over seeds; the value itself for one run; None for none."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return values[0] if values else None
    return float(np.mean(values)), float(np.std(values, ddof=1))


def stage_row(result) -> Dict:
    """One row per stage: the seeds' mean and standard deviation where there are several."""
    summaries = [r["summary"] for r in result.runs]
    first = summaries[0]
    times = [np.mean([x["epoch_time_s"] for x in r["records"]]) for r in result.runs if r["records"]]
    return {
        "stage": result.stage.name,
        "method": first["method"],
        "trainable_params": first["trainable_params"],
        "trainable_percent": first["trainable_percent"],
        "runs": "committed" if result.shipped else str(len(summaries)),
        "test_top1": _mean_std([s.get("test_top1") for s in summaries]),
        "test_top1_last": _mean_std([s.get("test_top1_last") for s in summaries]),
        "selection_top1": _mean_std([s["best_top1"] for s in summaries]),
        "selected_on": PROTOCOL.get(first.get("selected_on", "test"), first.get("selected_on")),
        "best_epoch": "/".join(str(s["best_epoch"]) for s in summaries),
        "epochs": first["epochs"],
        "epoch_time_s": float(np.mean(times)) if times else None,
        "peak_memory_mb": max((s["peak_memory_mb"] for s in summaries if s.get("peak_memory_mb")), default=None),
    }


COLUMNS = [
    ("stage", "stage"),
    ("method", "method"),
    ("trainable_params", "trainable params"),
    ("trainable_percent", "trainable %"),
    ("runs", "seeds"),
    ("test_top1", "test top-1, chosen epoch"),
    ("test_top1_last", "test top-1, last epoch"),
    ("selected_on", "epoch chosen on"),
    ("selection_top1", "top-1 there"),
    ("best_epoch", "chosen epoch"),
    ("epochs", "epochs"),
    ("epoch_time_s", "s / epoch"),
    ("peak_memory_mb", "peak memory MB"),
]


def _fmt(key: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        mean, std = value
        return f"{mean:.4f} ± {std:.4f}"
    if key in ("test_top1", "test_top1_last", "selection_top1"):
        return f"{value:.4f}"
    if key in ("trainable_percent", "epoch_time_s"):
        return f"{value:.2f}"
    if key == "peak_memory_mb":
        return f"{value:.0f}"
    if key == "trainable_params":
        return f"{value:,}"
    return str(value)


def _markdown(columns, rows) -> str:
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(k, r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _csv(columns, rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = []
    for k, _ in columns:
        header += [f"{k}_mean", f"{k}_std"] if any(isinstance(r.get(k), tuple) for r in rows) else [k]
    writer.writerow(header)
    for r in rows:
        cells = []
        for k, _ in columns:
            v = r.get(k)
            if any(isinstance(x.get(k), tuple) for x in rows):
                cells += list(v) if isinstance(v, tuple) else ["", ""]
            else:
                cells.append("" if v is None else v)
        writer.writerow(cells)
    return buf.getvalue()


def _correct(result) -> np.ndarray:
    """[seeds, test images] booleans of the chosen epoch's predictions."""
    return correct_matrix([r["predictions"] for r in result.runs], f"stage '{result.stage.name}'")


def correct_matrix(preds: Sequence[Optional[Dict]], what: str) -> np.ndarray:
    """[seeds, test images] booleans from the runs' test_predictions.json contents."""
    if any(p is None for p in preds):
        raise ValueError(f"{what} has no per-image test predictions")
    labels = [p["labels"] for p in preds]
    if any(lab != labels[0] for lab in labels):
        raise ValueError(f"{what}: its runs were tested on different images")
    return np.array([np.array(p["best"]) == np.array(p["labels"]) for p in preds])


def comparison_rows(results, pairs: List[List[str]]) -> List[Dict]:
    by_name = {r.stage.name: r for r in results}
    rows = []
    for a_name, b_name in pairs:
        a, b = _correct(by_name[a_name]), _correct(by_name[b_name])
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"stages '{a_name}' and '{b_name}' were tested on different images")
        seeds = min(len(a), len(b))
        boot = paired_bootstrap(a[:seeds], b[:seeds])
        tests = [mcnemar(a[i], b[i]) for i in range(seeds)]
        rows.append({
            "pair": f"{a_name} − {b_name}",
            "diff": f"{100 * boot['diff']:+.1f}",
            "ci": f"[{100 * boot['ci_low']:+.1f}, {100 * boot['ci_high']:+.1f}]",
            "p_boot": f"{boot['p']:.4f}",
            "mcnemar": ", ".join(f"{t['only_a']}/{t['only_b']} p={t['p']:.3g}" for t in tests),
            "images": str(a.shape[1]),
            "seeds": str(seeds),
        })
    return rows


COMPARE_COLUMNS = [
    ("pair", "A − B"),
    ("diff", "test top-1 difference (points, mean over seeds)"),
    ("ci", "95 % interval (bootstrap over test images)"),
    ("p_boot", "p (bootstrap, two-sided)"),
    ("mcnemar", "McNemar per seed: only A right / only B right, exact p"),
    ("images", "test images"),
    ("seeds", "paired seeds"),
]


def write_results(study, results) -> None:
    folder = study.output_dir
    os.makedirs(folder, exist_ok=True)
    rows = [stage_row(r) for r in results]
    text = _markdown(COLUMNS, rows)
    compared = comparison_rows(results, study.compare) if study.compare else []
    if compared:
        text += "\nPaired comparisons on the same test images:\n\n" + _markdown(COMPARE_COLUMNS, compared)
        atomic_write_text(os.path.join(folder, "comparisons.csv"), _csv(COMPARE_COLUMNS, compared))
    atomic_write_text(os.path.join(folder, "results.md"), text)
    atomic_write_text(os.path.join(folder, "results.csv"), _csv(COLUMNS, rows))
    write_study_figures(results, rows, folder)  # curves.png, accuracy_vs_params.png
    print(f"results: {os.path.join(folder, 'results.md')}\n{text}")


def write_sweep(folder: str, rows: List[Dict]) -> None:
    columns = [("stage", "stage"), ("key", "key"), ("value", "value"), ("val_top1", "validation top-1"),
               ("chosen", "chosen")]
    shown = [{**r, "val_top1": f"{r['val_top1']:.4f}", "chosen": "yes" if r["chosen"] else ""} for r in rows]
    atomic_write_text(os.path.join(folder, "sweep.md"), _markdown(columns, shown))
    atomic_write_text(os.path.join(folder, "sweep.csv"), _csv(columns, rows))
    print(f"sweep: {os.path.join(folder, 'sweep.md')}\n{_markdown(columns, shown)}")
