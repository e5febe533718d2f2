"""Datasets driven by `DataConfig`: CIFAR-10/100 archives, image folders and a synthetic set.

`build_dataset(cfg.data, "train" | "eval")` returns a `paddle.io.Dataset` of
(float32 tensor [3, img_size, img_size], int64 label as a 0-d numpy array).
"eval" is the archive's test split for CIFAR, and the data.eval_split folder
(val | test) for `data.dataset: folder` (layout in adaptformer/data/folder.py).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional


class DataError(ValueError):
    """The data cannot be loaded as configured; the message names the file and the config key."""


from adaptformer.data.cifar import KINDS, cifar_class_names, load_cifar  # noqa: E402
from adaptformer.data.folder import folder_class_names, load_folder  # noqa: E402
from adaptformer.data.normalization import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    NORMALIZATIONS,
)
from adaptformer.data.synthetic import SyntheticImages  # noqa: E402
from adaptformer.data.transforms import build_transforms  # noqa: E402

__all__ = [
    "DataError",
    "build_dataset",
    "build_transforms",
    "class_names",
    "num_classes",
    "SyntheticImages",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
    "NORMALIZATIONS",
]

SPLITS = ("train", "eval")
SYNTHETIC_SEEDS = {"train": 0, "eval": 1}


def _base_num_classes(data_cfg) -> int:
    if data_cfg.dataset == "synthetic":
        return data_cfg.synthetic_num_classes
    if data_cfg.dataset == "folder":
        return len(folder_class_names(data_cfg))
    if data_cfg.dataset not in KINDS:
        raise DataError(f"data.dataset must be one of cifar10, cifar100, synthetic, folder, got {data_cfg.dataset!r}")
    return KINDS[data_cfg.dataset].num_classes


def _check_classes(data_cfg) -> None:
    classes = data_cfg.classes
    if classes is None:
        return
    n = _base_num_classes(data_cfg)
    bad = [c for c in classes if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < n]
    if bad:
        what = f"the class folders of {data_cfg.data_dir}" if data_cfg.dataset == "folder" else data_cfg.dataset
        raise DataError(f"data.classes: ids {bad} are outside [0, {n}) for {what}")
    if not classes or len(set(classes)) != len(classes):
        raise DataError(f"data.classes must be a non-empty list of distinct class ids, got {classes}")


def num_classes(data_cfg) -> int:
    _check_classes(data_cfg)
    return len(data_cfg.classes) if data_cfg.classes is not None else _base_num_classes(data_cfg)


def class_names(data_cfg) -> List[str]:
    """Class names after subsetting, in label order."""
    _check_classes(data_cfg)
    if data_cfg.dataset == "synthetic":
        names = [f"class_{i}" for i in range(data_cfg.synthetic_num_classes)]
    elif data_cfg.dataset == "folder":
        names = folder_class_names(data_cfg)
    else:
        names = cifar_class_names(data_cfg)
    return names if data_cfg.classes is None else [names[c] for c in data_cfg.classes]


def build_dataset(data_cfg, split: str, train_transform: Optional[Callable[[Any], Any]] = None):
    """The `split` ("train" | "eval") dataset. `train_transform` replaces the
    configured train transform; the eval split always uses the eval transform."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    _check_classes(data_cfg)
    if split == "train":
        transform = train_transform if train_transform is not None else build_transforms(data_cfg, train=True)
    else:
        transform = build_transforms(data_cfg, train=False)
    if data_cfg.dataset == "synthetic":
        key = "synthetic_train_size" if split == "train" else "synthetic_eval_size"
        size = getattr(data_cfg, key)
        if size < 1 or data_cfg.synthetic_num_classes < 1:
            raise DataError(
                f"data.{key} and data.synthetic_num_classes must be >= 1, "
                f"got {size} and {data_cfg.synthetic_num_classes}"
            )
        return SyntheticImages(
            size,
            data_cfg.synthetic_num_classes,
            data_cfg.img_size,
            seed=SYNTHETIC_SEEDS[split],
            transform=transform,
            classes=data_cfg.classes,
        )
    if data_cfg.dataset == "folder":
        return load_folder(data_cfg, split, transform)
    return load_cifar(data_cfg, split, transform)
