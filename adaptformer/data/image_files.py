"""A dataset of image files and their labels: what every kind that reads image files shares
(class folders today; file lists next), and what data/loading.py's SampleGuard knows.

An unreadable image never raises here: an exception inside a DataLoader hangs it (num_workers 0)
or ends it in tracebacks from every worker. The sample comes back as a blank image with the label
-1 - index instead, and SampleGuard, around the loader in the main process, stops on it or leaves
it out (data.on_bad_image).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from adaptformer.data.images import open_rgb
from adaptformer.errors import DataError, one_line, quoted, short_reason


def load_rgb(path: str) -> Image.Image:
    """The image at `path` as an RGB PIL image (rules in adaptformer/data/images.py); a one-line
    DataError naming the file if unreadable."""
    try:
        return open_rgb(path)
    except Exception as e:
        fix = "replace or remove it under data.data_dir"
        # quoted: a file name holding a line break cannot forge a line of the training log
        raise DataError(f"{quoted(path)}: cannot read this image ({one_line(short_reason(e))}); {fix}") from None


def bad_image_label(index: int) -> int:
    return -1 - index


def bad_image_index(label: int) -> int:
    return -1 - label


class ImageFiles:
    """`samples` [(image path, label)], `classes` the names of the labels; an item is
    (transform(RGB PIL image), 0-d int64 label), a blank image of `img_size` with
    bad_image_label(index) for an unreadable file."""

    def __init__(self, samples: List[Tuple[str, int]], classes: Sequence[str],
                 transform: Optional[Callable[[Any], Any]] = None, img_size: int = 32):
        self.samples, self.classes, self.transform, self.img_size = list(samples), list(classes), transform, img_size
        self.targets = [label for _, label in self.samples]
        self.class_to_idx = {n: i for i, n in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        try:
            img = load_rgb(path)
        except DataError:
            img, target = Image.new("RGB", (self.img_size, self.img_size)), bad_image_label(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, np.array(target, dtype=np.int64)

    noun = "image"  # what SampleGuard calls the files in its messages

    def reason_of(self, path: str) -> str:
        """Why the file at `path` is unreadable, read again (in the main process, for the message)."""
        try:
            load_rgb(path)
        except DataError as e:
            return str(e)
        return f"{path}: could not be read, then could (is it being written?)"

    def path_of_bad(self, label: int) -> str:
        """The file of the sample that came back with `label` (a bad_image_label)."""
        return self.samples[bad_image_index(label)][0]

    def keep(self, classes: Optional[Sequence[int]]) -> "ImageFiles":
        """Only the samples of `classes` (label ids), relabelled 0..k-1 in that order (None: all)."""
        if classes is not None:
            table = {old: new for new, old in enumerate(classes)}
            names = self.classes
            self.samples = [(p, table[t]) for p, t in self.samples if t in table]
            self.targets = [t for _, t in self.samples]
            self.classes = [names[c] for c in classes]
            self.class_to_idx = {n: i for i, n in enumerate(self.classes)}
        return self
