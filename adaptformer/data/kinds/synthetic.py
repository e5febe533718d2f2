"""A deterministic, obviously synthetic image dataset for smoke tests and CI.

Class c has its own base colour and stripe pattern (orientation and period),
the same for every seed; a sample adds a random stripe phase, a brightness
wobble and pixel noise drawn from (seed, index). A tiny ViT separates the
classes within a few epochs.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from adaptformer.data.kinds import DatasetKind
from adaptformer.errors import DataError

_PATTERN_SEED = 20220527


def class_pattern(cls: int) -> Tuple[np.ndarray, int, int]:
    """(RGB base colour as float32 [3], stripe orientation 0..3, stripe period) of a class."""
    rng = np.random.default_rng([_PATTERN_SEED, cls])
    colour = rng.uniform(40.0, 215.0, size=3).astype(np.float32)
    return colour, cls % 4, 3 + (cls // 4) % 5


def render(cls: int, img_size: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 HWC image of class `cls`, varied by `rng`."""
    colour, orientation, period = class_pattern(cls)
    yy, xx = np.mgrid[0:img_size, 0:img_size].astype(np.float32)
    coord = (yy, xx, yy + xx, yy - xx)[orientation]
    phase = rng.uniform(0.0, 2.0 * np.pi)
    stripes = np.sin(2.0 * np.pi * coord / period + phase)[..., None]
    img = colour * rng.uniform(0.85, 1.15) + 35.0 * stripes
    img = img + rng.normal(0.0, 12.0, size=(img_size, img_size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


class SyntheticImages:
    """`num_samples` images, classes balanced, labels 0..k-1 as an int64 0-d array.

    `classes` picks which of the `num_classes` patterns appear (label i shows
    pattern classes[i]); None = all of them.
    """

    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        img_size: int,
        seed: int,
        transform: Optional[Callable[[Image.Image], Any]] = None,
        classes: Optional[Sequence[int]] = None,
    ) -> None:
        self.patterns: List[int] = list(classes) if classes is not None else list(range(num_classes))
        self.img_size = img_size
        self.seed = seed
        self.transform = transform
        k = len(self.patterns)
        self.labels = np.random.default_rng([seed, 0]).permutation(np.arange(num_samples) % k).astype(np.int64)

    def image(self, idx: int) -> Image.Image:
        rng = np.random.default_rng([self.seed, 1, idx])
        return Image.fromarray(render(self.patterns[self.labels[idx]], self.img_size, rng))

    def __getitem__(self, idx: int):
        img = self.image(idx)
        if self.transform is not None:
            img = self.transform(img)
        return img, np.array(self.labels[idx], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)


SEEDS = {"train": 0, "test": 1}  # the train and test images differ, the patterns do not


def _read(data_cfg, split: str, transform: Optional[Callable] = None) -> SyntheticImages:
    key = "synthetic_train_size" if split == "train" else "synthetic_eval_size"
    size = getattr(data_cfg, key)
    if size < 1 or data_cfg.synthetic_num_classes < 1:
        raise DataError(
            f"data.{key} and data.synthetic_num_classes must be >= 1, "
            f"got {size} and {data_cfg.synthetic_num_classes}"
        )
    return SyntheticImages(size, data_cfg.synthetic_num_classes, data_cfg.img_size, seed=SEEDS[split],
                           transform=transform, classes=data_cfg.classes)


KINDS = [DatasetKind("synthetic", class_names=lambda cfg: [f"class_{i}" for i in range(cfg.synthetic_num_classes)],
                     read=_read, count=lambda cfg: cfg.synthetic_num_classes, order=20)]
