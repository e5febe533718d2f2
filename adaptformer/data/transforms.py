"""Image transforms built from `DataConfig` / `AugmentConfig`.

All randomness comes from Python's `random` module: in dygraph mode Paddle's
RandomCrop (random.randint), RandomHorizontalFlip (random.random),
RandomRotation, BrightnessTransform and ContrastTransform (random.uniform) draw
from it, and so does `RandomApply` below. Seeding `random` (and `numpy.random`,
from which paddle.io.DataLoader draws each epoch's worker seeds) before an
epoch therefore makes the augmentation of that epoch reproducible.
"""
from __future__ import annotations

import random
from typing import Any, Callable, List, Sequence

import paddle.vision.transforms as T

from adaptformer.data import DataError

CIFAR_SIZE = 32


class RandomApply:
    """Apply all `transforms` in order with probability `p`, else none of them."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]], p: float = 0.5) -> None:
        self.transforms = list(transforms)
        self.p = p

    def __call__(self, img: Any) -> Any:
        if random.random() < self.p:
            for t in self.transforms:
                img = t(img)
        return img

    def __repr__(self) -> str:
        return f"RandomApply(p={self.p}, transforms={self.transforms})"


def _check(cfg) -> None:
    aug = cfg.augment
    if cfg.img_size < 1:
        raise DataError(f"data.img_size must be >= 1, got {cfg.img_size}")
    if len(cfg.mean) != 3 or len(cfg.std) != 3:
        raise DataError(f"data.mean and data.std must each hold 3 values (RGB), got {cfg.mean} and {cfg.std}")
    if any(s <= 0 for s in cfg.std):
        raise DataError(f"data.std values must be > 0, got {cfg.std}")
    for key in ("hflip", "color_jitter_p"):
        value = getattr(aug, key)
        if not 0.0 <= value <= 1.0:
            raise DataError(f"data.augment.{key} is a probability and must be in [0, 1], got {value}")
    for key in ("random_crop_padding", "brightness", "contrast", "rotation"):
        value = getattr(aug, key)
        if value < 0:
            raise DataError(f"data.augment.{key} must be >= 0 (0 = off), got {value}")


def build_transforms(data_cfg, train: bool) -> T.Compose:
    """PIL image -> normalised float32 CHW tensor; random only when `train`."""
    _check(data_cfg)
    size = data_cfg.img_size
    aug = data_cfg.augment
    ops: List[Callable[[Any], Any]] = []
    if size != CIFAR_SIZE:
        ops.append(T.Resize((size, size)))
    if train:
        if aug.random_crop_padding > 0:
            ops.append(T.RandomCrop(size, padding=aug.random_crop_padding))
        jitter = []
        if aug.brightness > 0:
            jitter.append(T.BrightnessTransform(aug.brightness))
        if aug.contrast > 0:
            jitter.append(T.ContrastTransform(aug.contrast))
        if aug.color_jitter_p > 0 and jitter:
            ops.append(RandomApply(jitter, p=aug.color_jitter_p))
        if aug.hflip > 0:
            ops.append(T.RandomHorizontalFlip(aug.hflip))
        if aug.rotation > 0:
            ops.append(T.RandomRotation(aug.rotation))
    ops.append(T.ToTensor())
    ops.append(T.Normalize(mean=list(data_cfg.mean), std=list(data_cfg.std)))
    return T.Compose(ops)
