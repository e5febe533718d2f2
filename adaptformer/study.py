"""A study: several runs chained (e.g. pretrain -> frozen transfer -> full
transfer), then one results table (Markdown + CSV) and learning curves (PNG)."""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Dict, List, Optional

import paddle

from .config import Config, ConfigError, StageConfig, StudyConfig, load_config, load_study
from .engine import dist
from .engine.logger import read_records
from .engine.runner import build_model, train
from .engine.trainer import BEST, LAST
from .utils import atomic_write, atomic_write_text

# Keys a study sets for each stage itself.
STUDY_KEYS = ("train.output_dir", "model.pretrained")

COLUMNS = [
    ("stage", "stage"),
    ("method", "method"),
    ("trainable_params", "trainable params"),
    ("trainable_percent", "trainable %"),
    ("trainable_mb", "trainable MB"),
    ("best_top1", "top-1"),
    ("best_top5", "top-5"),
    ("best_epoch", "best epoch"),
    ("epochs", "epochs"),
    ("epoch_time_s", "s / epoch"),
    ("peak_memory_mb", "peak memory MB"),
]


def run_study(path: str, overrides: Optional[List[str]] = None, resume: bool = False,
              overwrite: bool = False) -> List[Dict]:
    """`overwrite` lets each stage replace an earlier study's run in its folder; with `resume`,
    a stage that never saved a checkpoint starts over in its folder."""
    study = load_study(path)
    for o in overrides or []:
        if o.split("=", 1)[0].strip() in STUDY_KEYS:
            raise ConfigError(f"-o {o}: a study sets {', '.join(STUDY_KEYS)} per stage; change study.output_dir instead")
    validate_stages(study, path, overrides)
    rows = []
    for stage in study.stages:
        out = os.path.join(study.output_dir, stage.name)
        cfg = stage_config(study, stage, path, overrides)
        summary_path = os.path.join(out, "summary.json")
        if resume and os.path.exists(summary_path):
            print(f"== stage {stage.name}: already finished ({summary_path})")
            with open(summary_path, encoding="utf-8") as f:
                summary = json.load(f)
        else:
            print(f"== stage {stage.name}: {cfg.method.name} on {cfg.data.dataset}, output {out}")
            resumable = resume and os.path.exists(os.path.join(out, LAST))
            summary = train(cfg, resume=resumable, overwrite=overwrite or resume)
        records = read_records(os.path.join(out, "metrics.jsonl")) if dist.is_main() else []
        times = [r["epoch_time_s"] for r in records]
        rows.append({"stage": stage.name, **summary, "epoch_time_s": sum(times) / len(times) if times else None,
                     "records": records, "pretrained_from": stage.pretrained_from})
    if dist.is_main():
        write_results(study.output_dir, rows)
    return rows


def stage_config(study: StudyConfig, stage: StageConfig, path: str, overrides: Optional[List[str]]) -> Config:
    extra = {**study.overrides, **stage.overrides, "train.output_dir": os.path.join(study.output_dir, stage.name)}
    if stage.pretrained_from:
        extra["model.pretrained"] = os.path.join(study.output_dir, stage.pretrained_from, BEST)
    return load_config(os.path.join(os.path.dirname(path), stage.config), overrides, extra=extra)


def validate_stages(study: StudyConfig, path: str, overrides: Optional[List[str]]) -> None:
    """Every stage's config, model and named files, checked before the first stage trains
    (a checkpoint an earlier stage will write is not looked for)."""
    for stage in study.stages:
        cfg = stage_config(study, stage, path, overrides)
        named = {"model.pretrained": None if stage.pretrained_from else cfg.model.pretrained,
                 "data.data_file": cfg.data.data_file, "data.data_dir": cfg.data.data_dir}
        for key, file in named.items():
            if file is not None and not os.path.exists(file):
                raise ConfigError(f"{path}: stage '{stage.name}': {key} {file} does not exist")
        with paddle.utils.unique_name.guard():
            build_model(cfg, load_backbone=False, log=lambda *a, **k: None)


def _fmt(key: str, value) -> str:
    if value is None:
        return ""
    if key in ("best_top1", "best_top5"):
        return f"{value:.4f}"
    if key in ("trainable_percent", "trainable_mb", "epoch_time_s"):
        return f"{value:.2f}"
    if key == "peak_memory_mb":
        return f"{value:.0f}"
    if key == "trainable_params":
        return f"{value:,}"
    return str(value)


def results_markdown(rows: List[Dict]) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(k, r.get(k)) for k, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_results(folder: str, rows: List[Dict]) -> None:
    os.makedirs(folder, exist_ok=True)
    atomic_write_text(os.path.join(folder, "results.md"), results_markdown(rows))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([k for k, _ in COLUMNS])
    for r in rows:
        writer.writerow(["" if r.get(k) is None else r.get(k) for k, _ in COLUMNS])
    atomic_write_text(os.path.join(folder, "results.csv"), buf.getvalue())
    plot_curves(rows, os.path.join(folder, "curves.png"))
    plot_accuracy_vs_parameters(rows, os.path.join(folder, "accuracy_vs_params.png"))
    print(f"results: {os.path.join(folder, 'results.md')}\n{results_markdown(rows)}")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    _pyplot().close(fig)


def plot_curves(rows: List[Dict], path: str) -> None:
    fig, (ax_acc, ax_loss) = _pyplot().subplots(1, 2, figsize=(11, 4))
    for r in rows:
        recs = r["records"]
        evals = [x for x in recs if "eval_top1" in x]
        label = f"{r['stage']} ({r['method']})"
        ax_acc.plot([x["epoch"] for x in evals], [x["eval_top1"] for x in evals], marker="o", label=label)
        ax_loss.plot([x["epoch"] for x in recs], [x["train_loss"] for x in recs], marker="o", label=label)
    ax_acc.set(xlabel="epoch", ylabel="eval top-1", title="Eval accuracy")
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="Training loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_accuracy_vs_parameters(rows: List[Dict], path: str) -> None:
    """Best eval top-1 against trainable parameters (log scale), one point per stage; when some stages
    transfer from another, only those (the source stage solved a different task)."""
    transfers = [r for r in rows if r.get("pretrained_from")] or rows
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    for i, r in enumerate(transfers):
        ax.scatter(r["trainable_params"], r["best_top1"], s=40)
        # Alternate label offsets: methods of equal size and accuracy would print over each other.
        ax.annotate(r["stage"], (r["trainable_params"], r["best_top1"]), textcoords="offset points",
                    xytext=(6, 5 if i % 2 == 0 else -11), fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="trainable parameters (log scale)", ylabel="best eval top-1", title="Accuracy against trainable parameters")
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)
