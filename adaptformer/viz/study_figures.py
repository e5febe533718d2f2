"""A study's figures: learning curves by epoch (the transfers on their own axes, a pretraining run
that is their backbone on axes of its own) and test top-1 against trainable parameters. Each
method is drawn in its one colour (figures.METHOD_COLOURS) and each stage is named once.

The accuracy figure can be redrawn from a study's results.csv alone:

    python -m adaptformer.viz.study_figures docs/cpu_study --classes 5

The curves need every run's metrics.jsonl (the study's output folder)."""
from __future__ import annotations

import argparse
import csv
import io
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from adaptformer.viz.figures import pyplot, save, stage_label, stage_styles

CURVES = "curves.png"
ACCURACY = "accuracy_vs_params.png"
SPLITS = {"val": "validation split", "test": "test split"}


@dataclass
class Series:
    """One stage's curve of one quantity: its seeds' mean by epoch and their range."""
    epochs: List[int]
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


@dataclass
class StageCurves:
    stage: str
    method: str
    backbone: bool  # another stage's pretrained_from: it learnt another task
    split: str  # where its eval_top1 was measured (val / test)
    seeds: int
    top1: Optional[Series]
    loss: Optional[Series]


@dataclass
class Point:
    stage: str
    method: str
    params: int
    mean: float
    std: float  # seeds' standard deviation; 0 for one run
    seeds: int


# --------------------------------------------------------------------------- from a study's results


def _series(runs, key: str) -> Optional[Series]:
    """Epochs every run has `key` at, and the runs' mean, min and max there."""
    per_run = [{x["epoch"]: x[key] for x in r["records"] if x.get(key) is not None} for r in runs]
    epochs = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    if not epochs:
        return None
    values = np.array([[d[e] for e in epochs] for d in per_run], dtype=float)
    return Series(epochs, values.mean(axis=0), values.min(axis=0), values.max(axis=0))


def curves_of(results) -> List[StageCurves]:
    backbones = {r.stage.pretrained_from for r in results}
    out = []
    for r in results:
        summary = r.runs[0]["summary"]
        out.append(StageCurves(r.stage.name, summary["method"], r.stage.name in backbones,
                               summary.get("selected_on", "test"), len(r.runs),
                               _series(r.runs, "eval_top1"), _series(r.runs, "train_loss")))
    return out


def points_of(results, rows) -> List[Point]:
    """The transfers' test top-1 (stages that are another's backbone solved another task; if every
    stage is one, all of them)."""
    backbones = {r.stage.pretrained_from for r in results}
    tested = [(r, row) for r, row in zip(results, rows) if row["test_top1"] is not None]
    shown = [(r, row) for r, row in tested if r.stage.name not in backbones] or tested
    points = []
    for r, row in shown:
        mean, std = row["test_top1"] if isinstance(row["test_top1"], tuple) else (row["test_top1"], 0.0)
        points.append(Point(r.stage.name, row["method"], int(row["trainable_params"]), mean, std, len(r.runs)))
    return points


def chance_of(results) -> Optional[float]:
    labels = next((r.runs[0]["predictions"]["labels"] for r in results
                   if r.runs[0].get("predictions") and r.stage.name not in {x.stage.pretrained_from for x in results}),
                  None)
    return 1.0 / len(set(labels)) if labels else None


def write_study_figures(results, rows, folder: str) -> None:
    plot_study_curves(curves_of(results), os.path.join(folder, CURVES))
    plot_accuracy_vs_parameters(points_of(results, rows), os.path.join(folder, ACCURACY), chance_of(results))


# --------------------------------------------------------------------------- drawing


def _split_name(stages: Sequence[StageCurves]) -> str:
    splits = {s.split for s in stages}
    return SPLITS.get(splits.pop(), "evaluation split") if len(splits) == 1 else "evaluation split"


def draw_study_curves(stages: Sequence[StageCurves]):
    """The figure: a row of two panels (top-1, training loss) for the transfers and, when a stage
    that is their backbone has curves, a row of its own below, with its own epoch axis."""
    from matplotlib.ticker import MaxNLocator

    drawn = [s for s in stages if s.top1 is not None or s.loss is not None]
    transfers = [s for s in drawn if not s.backbone]
    backbones = [s for s in drawn if s.backbone]
    rows = [(transfers, False), (backbones, True)] if transfers and backbones else [(drawn, False)]
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 4 * len(rows)), squeeze=False)
    for (row_stages, is_backbone), (ax_acc, ax_loss) in zip(rows, axes):
        split = _split_name(row_stages)
        # Styles per row, as the accuracy figure (the transfers only) draws them.
        for s, (colour, line, marker) in zip(row_stages, stage_styles([(s.stage, s.method) for s in row_stages])):
            for ax, series in ((ax_acc, s.top1), (ax_loss, s.loss)):
                if series is None:
                    continue
                ax.plot(series.epochs, series.mean, line, marker=marker, ms=3, color=colour,
                        label=stage_label(s.stage, s.method))
                if s.seeds > 1:
                    ax.fill_between(series.epochs, series.lo, series.hi, color=colour, alpha=0.15)
        if is_backbone:
            names = ", ".join(s.stage for s in row_stages)
            acc_title, loss_title = f"Pretraining ({names}): top-1 on its {split}", f"Pretraining ({names}): training loss"
        else:
            seeds = max(s.seeds for s in row_stages)
            band = " (band: seeds' range)" if seeds > 1 else ""
            what = "Transfers" if backbones else "Runs"
            acc_title, loss_title = f"{what}: top-1 on the {split}{band}", f"{what}: training loss"
        ax_acc.set(xlabel="epoch", ylabel=f"{split} top-1", title=acc_title, ylim=(0, 1))
        ax_loss.set(xlabel="epoch", ylabel="training loss", title=loss_title, ylim=(0, None))
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # One legend per row: both panels of a row draw the same stages in the same colours.
        ax_acc.legend(fontsize=8, loc="lower right")
    return fig


def plot_study_curves(stages: Sequence[StageCurves], path: str) -> None:
    save(draw_study_curves(stages), path)


def draw_accuracy_vs_parameters(points: Sequence[Point], chance: Optional[float] = None):
    """Test top-1 of the chosen epoch (error bar: seeds' standard deviation) against trainable parameters."""
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    for p, x, (colour, _, marker) in zip(points, _spread_apart([p.params for p in points]),
                                         stage_styles([(p.stage, p.method) for p in points])):
        spread = f" ± {p.std:.3f}" if p.seeds > 1 else ""
        ax.errorbar(x, p.mean, yerr=p.std, fmt=marker, ms=7, capsize=4, color=colour,
                    label=f"{stage_label(p.stage, p.method)}: {p.mean:.3f}{spread}")
    if chance:
        ax.axhline(chance, color="grey", ls=":", label=f"chance (1/{round(1 / chance)})")
    ax.set_xscale("log")
    bars = " (bars: seeds' s.d.)" if any(p.seeds > 1 for p in points) else ""
    ax.set(xlabel="trainable parameters (log scale; near-equal counts drawn side by side)",
           ylabel="test top-1 (chosen epoch)", ylim=(0, 1),
           title=f"Test top-1 against trainable parameters{bars}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _spread_apart(params: Sequence[int], close: float = 1.15, step: float = 1.08) -> List[float]:
    """x positions for the points: those within `close` x of an earlier one are moved right by
    `step` x per neighbour, so that methods of nearly equal size (AdaptFormer-16, Houlsby-16, LoRA r8
    on this backbone) do not hide each other on the log axis. The legend keeps the exact counts."""
    xs: List[float] = []
    for p in params:
        near = sum(1 for q in params[:len(xs)] if max(p, q) / max(1, min(p, q)) < close)
        xs.append(p * step ** near)
    return xs


def plot_accuracy_vs_parameters(points: Sequence[Point], path: str, chance: Optional[float] = None) -> None:
    save(draw_accuracy_vs_parameters(points, chance), path)


# --------------------------------------------------------------------------- redrawing from results.csv


def points_from_csv(path: str) -> List[Point]:
    """The points of a study's results.csv: its tested stages (a backbone stage has no test top-1)."""
    from adaptformer.files.opener import read_text

    rows = list(csv.DictReader(io.StringIO(read_text(path, "text", "a study's results.csv"), newline="")))
    points = []
    for row in rows:
        mean = row.get("test_top1_mean", row.get("test_top1", ""))
        if not mean:
            continue
        seeds = int(row["runs"]) if row["runs"].isdigit() else 1
        points.append(Point(row["stage"], row["method"], int(row["trainable_params"]), float(mean),
                            float(row.get("test_top1_std") or 0.0), seeds))
    return points


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Redraw a study's accuracy_vs_params.png from its results.csv.")
    parser.add_argument("folder", help="the folder holding results.csv; the figure is written there")
    parser.add_argument("--classes", type=int, default=None, help="classes of the transfer task (chance line)")
    args = parser.parse_args(argv)
    points = points_from_csv(os.path.join(args.folder, "results.csv"))
    out = os.path.join(args.folder, ACCURACY)
    plot_accuracy_vs_parameters(points, out, 1.0 / args.classes if args.classes else None)
    print(f"{out}: {len(points)} stages")


if __name__ == "__main__":
    main()
