"""A grid of classified images: each with its predicted class and probability, and its true
class when known (green: right, red: wrong, black: unknown)."""
from __future__ import annotations

import math
import os
from typing import List, Optional, Sequence

from .data.images import open_rgb
from .figures import pyplot, save
from .predict import Prediction

THUMBNAIL = 192  # pixels on the longer side
MAX_SHOWN = 64
COLUMNS = 8


def thumbnail(path: str):
    """The image as classified (orientation, modes), small; None if it cannot be read."""
    try:
        img = open_rgb(path, draft_size=(THUMBNAIL, THUMBNAIL))
    except Exception:
        return None
    img.thumbnail((THUMBNAIL, THUMBNAIL))
    return img


def _caption(p: Prediction, truth: Optional[str]):
    if not p.ok:
        return "unreadable", "red"
    name, score = p.top[0]
    text = f"{name} {score:.2f}"
    if truth is None:
        return text, "black"
    return f"{text}\ntrue: {truth}", "green" if truth == name else "red"


def plot_predictions(predictions: Sequence[Prediction], truths: Sequence[Optional[str]], path: str,
                     max_shown: int = MAX_SHOWN) -> int:
    """Write the grid of the first `max_shown` images as PNG `path`; returns how many it shows."""
    shown: List[Prediction] = list(predictions)[:max_shown]
    cols = max(1, min(COLUMNS, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, p, truth in zip(axes.ravel(), shown, truths):
        img = thumbnail(p.source) if p.ok else None
        if img is not None:
            ax.imshow(img)
        text, colour = _caption(p, truth)
        ax.set_title(f"{os.path.basename(p.source)}\n{text}", fontsize=8, color=colour)
    if len(predictions) > len(shown):
        fig.suptitle(f"first {len(shown)} of {len(predictions)} images", fontsize=10)
    save(fig, path, dpi=90)
    return len(shown)
