"""Image transforms built from `DataConfig` / `AugmentConfig`.

Two recipes:
- CIFAR (default): Resize((img_size, img_size)) when the images are not already
  that size, then RandomCrop with padding, colour jitter, flip and rotation.
- FGVC (VPT): data.augment.train_resize 256 resizes the shorter side, then RandomCrop(224) and
  flip; data.eval_resize_crop 0.875 evaluates on Resize 256 + CenterCrop 224.
- ImageNet-style, for 224-pixel ViT fine-tuning (MAE / AdaptFormer):
  data.augment.random_resized_crop trains on RandomResizedCrop(img_size,
  rrc_scale, rrc_ratio, bicubic); data.eval_resize_crop = crop_pct evaluates on
  Resize(int(img_size / crop_pct), bicubic) of the shorter side, then
  CenterCrop(img_size) (crop_pct 0.875: Resize 256 + CenterCrop 224).

All randomness comes from Python's `random` module: in dygraph mode Paddle's
RandomCrop (random.randint), RandomHorizontalFlip (random.random),
RandomRotation, BrightnessTransform and ContrastTransform (random.uniform) draw
from it, and so do `RandomApply` and `RandomResizedCrop` below (Paddle's own
RandomResizedCrop draws the crop's area and aspect ratio from numpy.random, so
it is subclassed here). Seeding `random` (and `numpy.random`, from which
paddle.io.DataLoader draws each epoch's worker seeds) before an epoch therefore
makes the augmentation of that epoch reproducible.
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import paddle.vision.transforms as T
import paddle.vision.transforms.functional as F

from adaptformer.config.checks import check_data
from adaptformer.data.kinds import kind_of
from adaptformer.errors import DataError

CIFAR_SIZE = 32
BICUBIC = "bicubic"
BILINEAR = "bilinear"  # Paddle's Resize default


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


class RandomResizedCrop(T.RandomResizedCrop):
    """Paddle's RandomResizedCrop, with every random draw taken from Python's `random`.

    A crop covering a uniform fraction in `scale` of the image area, with an
    aspect ratio (width / height) log-uniform in `ratio`, at a uniform position;
    after 10 draws that do not fit, the largest centred crop whose aspect ratio
    is within `ratio`. The crop is resized to `size` with `interpolation`.
    """

    def crop_box(self, img: Any) -> Tuple[int, int, int, int]:
        """(top, left, height, width) of the crop for `img`."""
        if isinstance(img, np.ndarray):
            height, width = img.shape[:2]
        else:
            width, height = img.size
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            area = width * height * random.uniform(self.scale[0], self.scale[1])
            aspect = math.exp(random.uniform(log_lo, log_hi))
            w = round(math.sqrt(area * aspect))
            h = round(math.sqrt(area / aspect))
            if 0 < w <= width and 0 < h <= height:
                return random.randint(0, height - h), random.randint(0, width - w), h, w
        aspect = width / height
        if aspect < self.ratio[0]:  # too tall: full width, cut the height
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:  # too wide: full height, cut the width
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def _apply_image(self, img: Any) -> Any:
        top, left, h, w = self.crop_box(img)
        return F.resize(F.crop(img, top, left, h, w), self.size, self.interpolation)


class ToNormalizedArray:
    """PIL image (or HWC uint8 array) -> float32 CHW array, (x / 255 - mean) / std per channel.

    The last step of every transform, in NumPy rather than Paddle's ToTensor + Normalize:
    it runs in forked DataLoader workers, where Paddle tensor operations are not safe
    (with them, short runs died with "segmentation fault encountered in DataLoader
    workers" as an epoch's workers ended). Tensors are made in the main process.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def __call__(self, img: Any) -> np.ndarray:
        hwc = np.asarray(img)
        if hwc.ndim != 3 or hwc.shape[2] != 3:
            raise ValueError(f"expected an RGB image as height x width x 3, got shape {hwc.shape}")
        # One contiguous channel plane at a time, in place: the same float32 operations in the same
        # order as ((x / 255) - mean) / std on the transposed array (bit for bit), at a quarter of
        # its time at 224 px, where it was most of a CIFAR image's cost (docs/data_loader.md).
        chw = np.empty((3,) + hwc.shape[:2], dtype=np.float32)
        for c in range(3):
            plane = chw[c]
            np.copyto(plane, hwc[:, :, c], casting="unsafe")
            plane /= np.float32(255.0)
            plane -= self.mean[c, 0, 0]
            plane /= self.std[c, 0, 0]
        return chw

    def __repr__(self) -> str:
        return f"ToNormalizedArray(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


def eval_resize_size(img_size: int, crop_pct: float) -> int:
    """Shorter-side size before the centre crop: int(img_size / crop_pct) (224, 0.875 -> 256)."""
    return int(img_size / crop_pct)


def _check(data_cfg) -> None:
    def fail(key: str, msg: str):
        raise DataError(f"{key} {msg}")

    check_data(data_cfg, fail)


# The data keys the evaluation transform depends on (what a tuned folder records of it).
EVAL_KEYS = ("dataset", "img_size", "mean", "std", "eval_resize_crop")


def eval_resize(data_cfg, any_size: bool) -> Dict[str, Any]:
    """The evaluation transform's geometry, as data: the one description that evaluation,
    prediction, export's preprocessing record and TaskBank all use. `any_size`: the images may
    come in any size (folders, prediction); CIFAR's are img_size already when that is 32.
    {"shorter_side", "interpolation", "center_crop"} or {"size", "interpolation", "center_crop"};
    size None = no resize."""
    size = data_cfg.img_size
    if data_cfg.eval_resize_crop is not None:
        return {"shorter_side": eval_resize_size(size, data_cfg.eval_resize_crop), "interpolation": BICUBIC,
                "center_crop": [size, size]}
    resized = any_size or size != CIFAR_SIZE
    return {"size": [size, size] if resized else None, "interpolation": BILINEAR, "center_crop": None}


def eval_transform(data_cfg, any_size: bool) -> T.Compose:
    """PIL image -> normalised float32 CHW NumPy array, by eval_resize(data_cfg, any_size)."""
    _check(data_cfg)
    plan = eval_resize(data_cfg, any_size)
    ops: List[Callable[[Any], Any]] = []
    if "shorter_side" in plan:
        ops.append(T.Resize(plan["shorter_side"], interpolation=plan["interpolation"]))
    elif plan["size"] is not None:
        ops.append(T.Resize(tuple(plan["size"]), interpolation=plan["interpolation"]))
    if plan["center_crop"] is not None:
        ops.append(T.CenterCrop(tuple(plan["center_crop"])))
    ops.append(ToNormalizedArray(data_cfg.mean, data_cfg.std))
    return T.Compose(ops)


def build_transforms(data_cfg, train: bool) -> T.Compose:
    """PIL image -> normalised float32 CHW NumPy array; random only when `train`."""
    if not train:
        return eval_transform(data_cfg, kind_of(data_cfg).any_size)
    _check(data_cfg)
    size = data_cfg.img_size
    aug = data_cfg.augment
    ops: List[Callable[[Any], Any]] = []
    if aug.random_resized_crop:
        crop = RandomResizedCrop(size, scale=tuple(aug.rrc_scale), ratio=tuple(aug.rrc_ratio), interpolation=BICUBIC)
        ops.append(crop)
    elif aug.train_resize is not None:
        ops.append(T.Resize(aug.train_resize))  # the shorter side; bilinear, as torchvision's default
    elif size != CIFAR_SIZE or kind_of(data_cfg).any_size:
        ops.append(T.Resize((size, size)))
    if aug.random_crop_padding > 0 or aug.train_resize is not None:
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
    ops.append(ToNormalizedArray(data_cfg.mean, data_cfg.std))
    return T.Compose(ops)
