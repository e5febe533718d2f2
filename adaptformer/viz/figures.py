"""Matplotlib for files only (no display), and figures written atomically as PNG."""
from __future__ import annotations

import math
from typing import Optional, Sequence

from adaptformer.files.atomic import atomic_write


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str, dpi: int = 110) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    pyplot().close(fig)


def image_grid(images: Sequence, captions: Sequence[str], colours: Sequence[str], path: str,
               title: Optional[str] = None, columns: int = 8) -> None:
    """Images (PIL or HxWx3 arrays; None leaves its cell blank) with a coloured caption each, as PNG."""
    cols = max(1, min(columns, len(captions)))
    rows = max(1, math.ceil(len(captions) / cols))
    fig, axes = pyplot().subplots(rows, cols, figsize=(2.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, text, colour in zip(axes.ravel(), images, captions, colours):
        if img is not None:
            ax.imshow(img)
        ax.set_title(text, fontsize=8, color=colour)
    if title:
        fig.suptitle(title, fontsize=10)
    save(fig, path, dpi=90)
