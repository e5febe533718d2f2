"""SVHN's cropped digits as distributed (`data.dataset: svhn`), one of the paper's image sets.
data.data_dir holds the MATLAB files of http://ufldl.stanford.edu/housenumbers/:

    train_32x32.mat   X uint8 [32, 32, 3, 73257], y [73257, 1]
    test_32x32.mat    X uint8 [32, 32, 3, 26032], y [26032, 1]

Label 10 is the digit 0 (SVHN's convention), so labels become the digits 0-9. The files are read
with SciPy (pip install -e ".[svhn]"): the opener's checks first (a regular file, within the archive
budget), then the variables' names, shapes and types from the file's headers alone (whosmat),
bounded, before the two arrays are read; MATLAB objects are never loaded. There is no validation
split: set data.val_fraction to choose the epoch on held-out training images.
"""
from __future__ import annotations

import os
from typing import Tuple

import numpy as np

from adaptformer.data.file_lists import data_root
from adaptformer.data.kinds import DatasetKind
from adaptformer.data.kinds.cifar import CifarImages
from adaptformer.errors import DataError, short_reason
from adaptformer.files.opener import check_regular

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
MAX_IMAGES = 1_000_000  # SVHN's extra set has 531,131; more is not this dataset


def _scipy_io():
    try:
        import scipy.io
    except ImportError:
        raise DataError('data.dataset svhn reads the .mat files with SciPy: pip install -e ".[svhn]"') from None
    return scipy.io


def read_svhn(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 32, 32, 3], labels int64 [N] as digits 0-9) of one SVHN .mat file."""
    sio = _scipy_io()
    check_regular(path, "archive", "SVHN's train_32x32.mat or test_32x32.mat")
    try:
        header = {name: (tuple(shape), kind) for name, shape, kind in sio.whosmat(path)}
    except Exception as e:  # noqa: BLE001  (scipy's several errors for a file that is not MATLAB)
        raise DataError(f"{path}: not a MATLAB file ({short_reason(e)})") from None
    x, y = header.get("X"), header.get("y")
    if x is None or y is None:
        raise DataError(f"{path}: holds {sorted(header)}; expected SVHN's variables X and y")
    n = x[0][3] if len(x[0]) == 4 else -1
    if x[0][:3] != (32, 32, 3) or not 0 < n <= MAX_IMAGES or x[1] != "uint8":
        raise DataError(f"{path}: X is {x[1]} {list(x[0])}; expected uint8 [32, 32, 3, N] with N <= {MAX_IMAGES}")
    if y[0] not in ((n, 1), (1, n), (n,)) or y[1] not in ("double", "uint8", "int32", "int64", "single"):
        raise DataError(f"{path}: y is {y[1]} {list(y[0])}; expected {n} numeric labels")
    try:
        mat = sio.loadmat(path, variable_names=["X", "y"], mat_dtype=False, struct_as_record=True)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: cannot be read ({short_reason(e)})") from None
    labels = np.asarray(mat["y"]).reshape(-1)
    if not np.all(np.isin(labels, np.arange(1, 11))):
        bad = labels[~np.isin(labels, np.arange(1, 11))][0]
        raise DataError(f"{path}: label {bad:g} is outside SVHN's 1-10 (10 stands for the digit 0)")
    images = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 0, 1, 2))
    return images, (labels % 10).astype(np.int64)


def _read(data_cfg, split: str, transform=None) -> CifarImages:
    root = data_root(data_cfg, "the folder of SVHN's train_32x32.mat and test_32x32.mat")
    path = os.path.join(root, FILES[split])
    if not os.path.exists(path):
        raise DataError(f"data.data_dir: {path} does not exist; expected SVHN's {FILES[split]}")
    images, labels = read_svhn(path)
    if data_cfg.classes is not None:
        table = np.full(10, -1, dtype=np.int64)
        table[list(data_cfg.classes)] = np.arange(len(data_cfg.classes))
        labels = table[labels]
        keep = np.flatnonzero(labels >= 0)
        images, labels = images[keep], labels[keep]
    return CifarImages(images, labels, transform)


KINDS = [DatasetKind("svhn", class_names=lambda cfg: [str(d) for d in range(10)], read=_read, order=55,
                     counted_in=lambda cfg: "SVHN's digits")]
