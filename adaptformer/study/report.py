"""A study's results: the table (Markdown + CSV), paired comparisons, learning curves and
accuracy against trainable parameters (PNG); the sweep's table when there was one."""
from __future__ import annotations

import csv
import io
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from adaptformer.viz.figures import pyplot as _pyplot
from adaptformer.viz.figures import save as _save
from adaptformer.study.stats import mcnemar, paired_bootstrap
from adaptformer.files.atomic import atomic_write_text

PROTOCOL = {"val": "val", "test": "test (paper protocol)"}


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
    preds = [r["predictions"] for r in result.runs]
    if any(p is None for p in preds):
        raise ValueError(f"stage '{result.stage.name}' has no per-image test predictions")
    labels = [p["labels"] for p in preds]
    if any(lab != labels[0] for lab in labels):
        raise ValueError(f"stage '{result.stage.name}': its runs were tested on different images")
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
    colours = stage_colours([r.stage.name for r in results])
    plot_curves(results, colours, os.path.join(folder, "curves.png"))
    plot_accuracy_vs_parameters(results, rows, colours, os.path.join(folder, "accuracy_vs_params.png"))
    print(f"results: {os.path.join(folder, 'results.md')}\n{text}")


def write_sweep(folder: str, rows: List[Dict]) -> None:
    columns = [("stage", "stage"), ("key", "key"), ("value", "value"), ("val_top1", "validation top-1"),
               ("chosen", "chosen")]
    shown = [{**r, "val_top1": f"{r['val_top1']:.4f}", "chosen": "yes" if r["chosen"] else ""} for r in rows]
    atomic_write_text(os.path.join(folder, "sweep.md"), _markdown(columns, shown))
    atomic_write_text(os.path.join(folder, "sweep.csv"), _csv(columns, rows))
    print(f"sweep: {os.path.join(folder, 'sweep.md')}\n{_markdown(columns, shown)}")


# --------------------------------------------------------------------------- figures


def stage_colours(names: List[str]) -> Dict[str, tuple]:
    """One colour per stage, the same in every figure of the study."""
    cmap = _pyplot().get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _by_epoch(result, key: str):
    """Epochs and the seeds' mean, min and max of `key` at each."""
    per_run = [{x["epoch"]: x[key] for x in r["records"] if key in x} for r in result.runs]
    epochs = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    if not epochs:
        return [], None, None, None
    values = np.array([[d[e] for e in epochs] for d in per_run])
    return epochs, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def plot_curves(results, colours, path: str) -> None:
    fig, (ax_acc, ax_loss) = _pyplot().subplots(1, 2, figsize=(11, 4))
    styles = ["-", "--", ":", "-."]
    for i, r in enumerate(results):
        label = f"{r.stage.name} ({r.runs[0]['summary']['method']})"
        for ax, key in ((ax_acc, "eval_top1"), (ax_loss, "train_loss")):
            epochs, mean, lo, hi = _by_epoch(r, key)
            if not epochs:
                continue
            # Line styles differ too, so equal curves stay visible on top of each other.
            ax.plot(epochs, mean, styles[i % len(styles)], marker="o", ms=3, color=colours[r.stage.name], label=label)
            if len(r.runs) > 1:
                ax.fill_between(epochs, lo, hi, color=colours[r.stage.name], alpha=0.15)
    selected = {r.runs[0]["summary"].get("selected_on", "test") for r in results}
    split = "validation" if selected == {"val"} else "evaluation split"
    ax_acc.set(xlabel="epoch", ylabel=f"{split} top-1", title=f"Top-1 on the {split} (band: seeds' range)",
               ylim=(0, 1))
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="Training loss", ylim=(0, None))
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_accuracy_vs_parameters(results, rows, colours, path: str) -> None:
    """Test top-1 (chosen epoch; error bar: seeds' standard deviation) against trainable parameters,
    without the stages that are another stage's backbone (they solved another task)."""
    backbones = {r.stage.pretrained_from for r in results}
    pairs = [(r, row) for r, row in zip(results, rows) if row["test_top1"] is not None]
    transfers = [(r, row) for r, row in pairs if r.stage.name not in backbones] or pairs
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    for r, row in transfers:
        mean, std = row["test_top1"] if isinstance(row["test_top1"], tuple) else (row["test_top1"], 0.0)
        ax.errorbar(row["trainable_params"], mean, yerr=std, fmt="o", capsize=4, color=colours[r.stage.name],
                    label=f"{r.stage.name} ({mean:.3f})")
    labels = next((r.runs[0]["predictions"]["labels"] for r, _ in transfers if r.runs[0]["predictions"]), None)
    if labels:
        ax.axhline(1.0 / len(set(labels)), color="grey", ls=":", label="chance")
    ax.set_xscale("log")
    ax.set(xlabel="trainable parameters (log scale)", ylabel="test top-1", ylim=(0, 1),
           title="Accuracy against trainable parameters")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
