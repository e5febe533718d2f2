"""The splits of any dataset kind, the same way for all of them.

`build_dataset(cfg.data, split)` returns a map-style dataset of (float32 NumPy array
[3, img_size, img_size], int64 label as a 0-d NumPy array). Splits:
- "test": the kind's test split (for CIFAR the archive's test batch, for `data.dataset: folder`
  the data.eval_split folder, val | test; layout in adaptformer/data/kinds/folder.py);
- "train" and "val": a kind that brings its own validation split reads both; otherwise, with
  data.val_fraction > 0, the training images minus / only a per-class, seeded hold-out
  (data.val_seed), and with 0, "train" is every training image and there is no "val";
- "eval": the split evaluated every epoch and used to pick the best epoch: "val" when there is
  one, else "test" (the paper's protocol).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

import numpy as np
from paddle.io import Subset as _PaddleSubset

from adaptformer.data.holdout import dataset_labels, holdout_indices
from adaptformer.data.kinds import kind_of
from adaptformer.data.transforms import build_transforms
from adaptformer.errors import DataError

SPLITS = ("train", "val", "test", "eval")


def _check_classes(data_cfg) -> None:
    classes = data_cfg.classes
    if classes is None:
        return
    kind = kind_of(data_cfg)
    n = kind.num_classes(data_cfg)
    bad = [c for c in classes if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < n]
    if bad:
        raise DataError(f"data.classes: ids {bad} are outside [0, {n}) for {kind.classes_of(data_cfg)}")
    if not classes or len(set(classes)) != len(classes):
        raise DataError(f"data.classes must be a non-empty list of distinct class ids, got {classes}")


def num_classes(data_cfg) -> int:
    _check_classes(data_cfg)
    return len(data_cfg.classes) if data_cfg.classes is not None else kind_of(data_cfg).num_classes(data_cfg)


def class_names(data_cfg) -> List[str]:
    """Class names after subsetting, in label order."""
    _check_classes(data_cfg)
    names = kind_of(data_cfg).class_names(data_cfg)
    return names if data_cfg.classes is None else [names[c] for c in data_cfg.classes]


def has_own_val(data_cfg) -> bool:
    return "val" in kind_of(data_cfg).splits_of(data_cfg)


def eval_split(data_cfg) -> str:
    """The split evaluated every epoch: the validation split when there is one, else the test split."""
    return "val" if data_cfg.val_fraction > 0 or has_own_val(data_cfg) else "test"


def has_test(data_cfg) -> bool:
    """Whether the data has a test split at all: VTAB-1k's search protocol has none (train800 and
    val200 only), so a learning-rate search never sees the test images."""
    return "test" in kind_of(data_cfg).splits_of(data_cfg)


def epoch_choice(data_cfg, select_epoch: str = "auto") -> str:
    """Whose weights the final test evaluates: "val" or "test", the epoch of the best top-1 on that
    split (the eval split), or "last", the last epoch's. train.select_epoch auto follows the data's
    protocol: the last epoch for a VTAB-1k final run, else the best on the eval split."""
    if select_epoch == "last":
        return "last"
    if select_epoch == "auto":
        kind = kind_of(data_cfg)
        if kind.choice is not None and kind.choice(data_cfg) == "last":
            return "last"
    return eval_split(data_cfg)


def build_dataset(data_cfg, split: str, train_transform: Optional[Callable[[Any], Any]] = None):
    """The `split` ("train" | "val" | "test" | "eval") dataset. `train_transform` replaces the
    configured train transform; the other splits always use the eval transform."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    _check_classes(data_cfg)
    kind = kind_of(data_cfg)
    if has_own_val(data_cfg) and data_cfg.val_fraction > 0:
        raise DataError(f"data.val_fraction is {data_cfg.val_fraction}, but data.dataset {kind.name} brings its "
                        "own validation split: set data.val_fraction: 0")
    if split == "eval":
        split = eval_split(data_cfg)
    if kind.transforms is not None:  # clips: the kind's own
        transform = kind.transforms(data_cfg, split == "train")
    elif split == "train":
        transform = train_transform if train_transform is not None else build_transforms(data_cfg, train=True)
    else:
        transform = build_transforms(data_cfg, train=False)
    if split == "test" or has_own_val(data_cfg) or data_cfg.val_fraction <= 0:
        if split not in kind.splits_of(data_cfg):
            if split == "val" and not has_own_val(data_cfg):
                raise DataError("data.val_fraction is 0: there is no validation split (set it, e.g. 0.1)")
            raise DataError(f"data.dataset {kind.name} brings no {split} split with these settings "
                            f"(only {', '.join(kind.splits_of(data_cfg))})")
        return kind.read(data_cfg, split, transform)
    full = kind.read(data_cfg, "train", transform)
    train_idx, val_idx = holdout_indices(dataset_labels(full), data_cfg.val_fraction, data_cfg.val_seed)
    return Subset(full, (train_idx if split == "train" else val_idx).tolist())


class Subset(_PaddleSubset):
    """Paddle's Subset, which also tells its labels without loading images."""

    @property
    def labels(self) -> np.ndarray:
        return dataset_labels(self.dataset)[np.asarray(self.indices, dtype=np.int64)]
