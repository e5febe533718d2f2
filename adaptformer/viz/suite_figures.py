"""A suite's figure: test top-1 per task and method, with the group and overall means, each method
in its one colour (figures.METHOD_COLOURS), every seed drawn as a dot over its method's bar."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from adaptformer.viz.figures import method_colour, pyplot, save

FIGURE = "suite.png"


def draw_suite(rows: Sequence[Dict], methods: List[str]):
    """rows: suite_report.table_rows (tasks, then group means and the mean over tasks), each holding
    per method the list of its seeds' test top-1 (a mean row: one value)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(rows) + 2), 4.5))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(rows))
    for k, m in enumerate(methods):
        offset = x - 0.4 + width * (k + 0.5)
        means = [100 * float(np.mean(r[m])) if r[m] else np.nan for r in rows]
        ax.bar(offset, means, width, color=method_colour(m), label=m, alpha=0.85)
        for xi, r in zip(offset, rows):
            if len(r[m]) > 1:
                ax.plot([xi] * len(r[m]), [100 * v for v in r[m]], "o", ms=2.5, color="black", alpha=0.6)
    tasks = sum(1 for r in rows if not r["mean"])
    if tasks < len(rows):
        ax.axvline(tasks - 0.5, color="grey", lw=0.8)  # the tasks, then the means
    ax.set_xticks(x)
    ax.set_xticklabels([r["task"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="test top-1 (%)", ylim=(0, 100),
           title="Test top-1 per task (bars: mean over seeds; dots: each seed)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncol=min(len(methods), 6), loc="upper center", bbox_to_anchor=(0.5, -0.32))
    fig.tight_layout()
    return fig


def plot_suite(rows: Sequence[Dict], methods: List[str], path: str) -> None:
    save(draw_suite(rows, methods), path)
