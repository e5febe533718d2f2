"""Matplotlib for files only (no display), figures written atomically as PNG, and the one colour
of each tuning method that every figure of the package draws it in."""
from __future__ import annotations

import math
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

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


# One colour per method (method.name), in every figure: a study's curves and its accuracy against
# trainable parameters, whatever the stages' order or which methods a study has. Stages that share a
# method (pretraining, from scratch and full fine-tuning are all `full`) share its colour and differ
# by line style and marker.
METHOD_COLOURS: Dict[str, str] = {
    "adaptformer": "tab:green",
    "linear": "tab:red",
    "full": "tab:purple",
    "vpt": "tab:blue",
    "adapter": "tab:pink",
    "lora": "tab:brown",
    "bitfit": "tab:orange",
    "adaptformer+vpt": "tab:olive",
}
# A run's own curves (run_figures) tell its training batches from its evaluation split in black and
# cyan, two colours no method has.
# Methods not named above (another '+' combination, a method added later) take one of these, chosen by
# their name's checksum: still one fixed colour each, unrelated to the order of the stages.
OTHER_COLOURS = ("tab:gray", "gold", "navy", "teal", "darkmagenta", "sienna", "lime", "slategray")
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")


def method_colour(method: str) -> str:
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return OTHER_COLOURS[zlib.crc32(method.encode("utf-8")) % len(OTHER_COLOURS)]


def stage_label(stage: str, method: str) -> str:
    """The stage's name, and its method in brackets only when the name does not already say it:
    'adaptformer', 'lora_r8_qv', 'scratch (full)', never 'adaptformer (adaptformer)'."""
    return stage if method.lower() in stage.lower() else f"{stage} ({method})"


def stage_styles(stages: Sequence[Tuple[str, str]]) -> List[Tuple[str, str, str]]:
    """(colour, line style, marker) for each (stage, method): the method's colour; a stage named as its
    method (the stage `full` of method full) drawn solid with circles, the other stages of that method
    dashed with squares, dotted with triangles, and so on in their order."""
    named = {method for stage, method in stages if stage == method}
    following: Dict[str, int] = {}
    styles = []
    for stage, method in stages:
        if stage == method:
            k = 0
        else:
            k = following.get(method, 1 if method in named else 0)
            following[method] = k + 1
        styles.append((method_colour(method), LINE_STYLES[k % len(LINE_STYLES)], MARKERS[k % len(MARKERS)]))
    return styles
