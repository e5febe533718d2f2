"""A validation split carved from the training images: per class, seeded.

Model selection (best epoch, learning rate) is done on it, so the test split is
evaluated once, at the end, and stays an unbiased estimate.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def dataset_labels(ds) -> np.ndarray:
    """Every label of `ds` in index order, without decoding an image."""
    if hasattr(ds, "labels"):  # SyntheticImages, CIFAR
        return np.asarray(ds.labels, dtype=np.int64)
    if hasattr(ds, "targets"):  # image folders
        return np.asarray(ds.targets, dtype=np.int64)
    raise TypeError(f"cannot read the labels of a {type(ds).__name__} without loading its images")


def holdout_indices(labels: np.ndarray, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: round(fraction x n_c) images of every class c go to val, at least one
    per class and never all of it; which ones depends only on (seed, class, n_c)."""
    labels = np.asarray(labels, dtype=np.int64)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_val = min(max(1, int(round(fraction * len(members)))), len(members) - 1)
        rng = np.random.default_rng([seed, int(c)])
        val.append(members[rng.permutation(len(members))[:n_val]])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx
