"""A grid of classified images: each with its predicted class and probability, and its true
class when known (green: right, red: wrong, black: unknown)."""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

from adaptformer.data.images import open_rgb
from adaptformer.viz.figures import image_grid
from adaptformer.serve.predict import Prediction

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
    captions = [_caption(p, truth) for p, truth in zip(shown, truths)]
    title = f"first {len(shown)} of {len(predictions)} images" if len(predictions) > len(shown) else None
    image_grid([thumbnail(p.source) if p.ok else None for p in shown],
               [f"{os.path.basename(p.source)}\n{text}" for p, (text, _) in zip(shown, captions)],
               [colour for _, colour in captions], path, title=title, columns=COLUMNS)
    return len(shown)
