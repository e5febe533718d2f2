"""Datasets driven by `DataConfig`: CIFAR-10/100 archives, image folders and a synthetic set.

`build_dataset(cfg.data, split)` returns a `paddle.io.Dataset` of (float32 NumPy
array [3, img_size, img_size], int64 label as a 0-d NumPy array). Splits:
- "test": the archive's test split for CIFAR, the data.eval_split folder
  (val | test) for `data.dataset: folder` (layout in adaptformer/data/kinds/folder.py);
- "train" and "val": with data.val_fraction > 0, the training images minus / only
  a per-class, seeded hold-out (data.val_seed); with 0, "train" is every training
  image and there is no "val";
- "eval": the split evaluated every epoch and used to pick the best epoch: "val"
  when there is one, else "test" (the paper's protocol).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

import numpy as np
from paddle.io import Subset as _PaddleSubset


from adaptformer.errors import DataError  # noqa: E402,F401


from adaptformer.data.kinds.cifar import KINDS, cifar_class_names, load_cifar  # noqa: E402
from adaptformer.data.kinds.folder import folder_class_names, load_folder  # noqa: E402
from adaptformer.data.holdout import dataset_labels, holdout_indices  # noqa: E402
from adaptformer.data.normalization import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    NORMALIZATIONS,
)
from adaptformer.data.kinds.synthetic import SyntheticImages  # noqa: E402
from adaptformer.data.transforms import build_transforms  # noqa: E402

__all__ = [
    "DataError",
    "build_dataset",
    "build_transforms",
    "eval_split",
    "class_names",
    "num_classes",
    "SyntheticImages",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
    "NORMALIZATIONS",
]

SPLITS = ("train", "val", "test", "eval")
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


def eval_split(data_cfg) -> str:
    """The split evaluated every epoch: the hold-out when there is one, else the test split."""
    return "val" if data_cfg.val_fraction > 0 else "test"


def build_dataset(data_cfg, split: str, train_transform: Optional[Callable[[Any], Any]] = None):
    """The `split` ("train" | "val" | "test" | "eval") dataset. `train_transform` replaces the
    configured train transform; the other splits always use the eval transform."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    _check_classes(data_cfg)
    if split == "eval":
        split = eval_split(data_cfg)
    if split == "train":
        transform = train_transform if train_transform is not None else build_transforms(data_cfg, train=True)
    else:
        transform = build_transforms(data_cfg, train=False)
    if split == "test":
        return _source(data_cfg, "eval", transform)
    if data_cfg.val_fraction <= 0:
        if split == "val":
            raise DataError("data.val_fraction is 0: there is no validation split (set it, e.g. 0.1)")
        return _source(data_cfg, "train", transform)
    full = _source(data_cfg, "train", transform)
    train_idx, val_idx = holdout_indices(dataset_labels(full), data_cfg.val_fraction, data_cfg.val_seed)
    return Subset(full, (train_idx if split == "train" else val_idx).tolist())


class Subset(_PaddleSubset):
    """Paddle's Subset, which also tells its labels without loading images."""

    @property
    def labels(self) -> np.ndarray:
        return dataset_labels(self.dataset)[np.asarray(self.indices, dtype=np.int64)]


def _source(data_cfg, part: str, transform):
    """The dataset's own "train" or "eval" part."""
    if data_cfg.dataset == "synthetic":
        key = "synthetic_train_size" if part == "train" else "synthetic_eval_size"
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
            seed=SYNTHETIC_SEEDS[part],
            transform=transform,
            classes=data_cfg.classes,
        )
    if data_cfg.dataset == "folder":
        return load_folder(data_cfg, part, transform)
    return load_cifar(data_cfg, part, transform)
