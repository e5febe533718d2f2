"""CIFAR-10 / CIFAR-100 from the original python archives, read by Paddle's datasets.

Archive resolution: data.data_file, else data.data_dir/<archive name>, else
Paddle's download cache, else (data.download) a Paddle download. Every failure
is a one-line `DataError` that says which file and which config key.
"""
from __future__ import annotations

import os
import pickle
import tarfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import paddle
import paddle.dataset.common
import paddle.vision.datasets

from adaptformer.data import DataError


@dataclass(frozen=True)
class CifarKind:
    title: str
    archive: str
    num_classes: int
    paddle_class: str
    meta: str
    names_key: str
    train_prefix: str
    test_member: str

    def is_train(self, base: str) -> bool:
        return base.startswith(self.train_prefix)


KINDS: Dict[str, CifarKind] = {
    "cifar10": CifarKind(
        "CIFAR-10", "cifar-10-python.tar.gz", 10, "Cifar10", "batches.meta", "label_names", "data_batch_", "test_batch"
    ),
    "cifar100": CifarKind(
        "CIFAR-100", "cifar-100-python.tar.gz", 100, "Cifar100", "meta", "fine_label_names", "train", "test"
    ),
}

_SAMPLE_BYTES = 3 * 32 * 32
_inspected: Dict[Tuple[str, str, int, int], List[str]] = {}


def _text(x: Any) -> str:
    return x.decode("latin1") if isinstance(x, bytes) else str(x)


def _short(e: BaseException) -> str:
    msg = str(e).strip().rstrip(":").splitlines()
    reason = f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__
    return reason if len(reason) <= 200 else reason[:197] + "..."


def cache_path(kind: CifarKind) -> str:
    return os.path.join(paddle.dataset.common.DATA_HOME, "cifar", kind.archive)


def _offline_hint(kind: CifarKind) -> str:
    return (
        f"{kind.title} archive not available offline: pass -o data.data_file=/path/to/{kind.archive} "
        f"(or -o data.data_dir=DIR holding it)"
    )


def find_archive(data_cfg) -> Tuple[Optional[str], str]:
    """(path, where it came from); path None means Paddle has to download it."""
    kind = KINDS[data_cfg.dataset]
    if data_cfg.data_file is not None:
        path = os.path.expanduser(data_cfg.data_file)
        if not os.path.isfile(path):
            what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
            raise DataError(f"data.data_file: {path} {what}; expected the {kind.title} archive {kind.archive}")
        return path, "data.data_file"
    if data_cfg.data_dir is not None:
        path = os.path.join(os.path.expanduser(data_cfg.data_dir), kind.archive)
        if not os.path.isfile(path):
            raise DataError(
                f"data.data_dir: {path} not found; the folder must hold the {kind.title} archive {kind.archive}"
            )
        return path, "data.data_dir"
    path = cache_path(kind)
    if os.path.isfile(path):
        return path, "Paddle's download cache; delete it to download again"
    if not data_cfg.download:
        raise DataError(f"{_offline_hint(kind)}; data.download is false and there is no cached copy at {path}")
    return None, "download"


def inspect_archive(path: str, kind: CifarKind, source: str) -> List[str]:
    """Check that `path` is the expected archive and return its class names."""
    st = os.stat(path)
    key = (kind.title, os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key in _inspected:
        return _inspected[key]
    where = f"{path} ({source})"
    expected = f"expected the original {kind.title} python archive ({kind.archive})"
    meta = None
    try:
        with tarfile.open(path, "r") as tar:
            bases = []
            for member in tar:
                base = os.path.basename(member.name)
                bases.append(base)
                if base == kind.meta and member.isfile():
                    meta = pickle.load(tar.extractfile(member), encoding="bytes")
    except Exception as e:
        raise DataError(f"{where}: cannot read it ({_short(e)}); {expected}") from None
    if not any(kind.is_train(b) for b in bases) or kind.test_member not in bases or meta is None:
        other = next(k for k in KINDS.values() if k is not kind)
        if any(other.is_train(b) for b in bases) and other.test_member in bases:
            raise DataError(f"{where}: this is a {other.title} archive, but data.dataset is {kind.title}; {expected}")
        found = ", ".join(sorted(set(bases))[:8]) or "nothing"
        raise DataError(f"{where}: not a {kind.title} archive (found {found}); {expected}")
    names = meta.get(kind.names_key.encode(), meta.get(kind.names_key)) if isinstance(meta, dict) else None
    if names is None or len(names) != kind.num_classes:
        raise DataError(f"{where}: member {kind.meta} has no {kind.num_classes} '{kind.names_key}'; {expected}")
    _inspected[key] = [_text(n) for n in names]
    return _inspected[key]


def _paddle_dataset(kind: CifarKind, data_file: Optional[str], mode: str, transform) -> paddle.io.Dataset:
    cls = getattr(paddle.vision.datasets, kind.paddle_class)
    return cls(data_file=data_file, mode=mode, transform=transform, download=data_file is None, backend="pil")


def _open(data_cfg, mode: str, transform) -> Tuple[paddle.io.Dataset, str, str]:
    kind = KINDS[data_cfg.dataset]
    path, source = find_archive(data_cfg)
    if path is None:
        try:
            ds = _paddle_dataset(kind, None, mode, transform)
        except Exception as e:
            raise DataError(f"{_offline_hint(kind)}; download failed: {_short(e)}") from None
        inspect_archive(ds.data_file, kind, "downloaded by Paddle")
        return ds, ds.data_file, "downloaded by Paddle"
    inspect_archive(path, kind, source)
    try:
        ds = _paddle_dataset(kind, path, mode, transform)
    except Exception as e:
        raise DataError(
            f"{path} ({source}): cannot read the {kind.title} {mode} data ({_short(e)}); "
            f"expected the original {kind.title} python archive ({kind.archive})"
        ) from None
    return ds, path, source


def load_cifar(data_cfg, split: str, transform: Optional[Callable] = None) -> paddle.io.Dataset:
    """Paddle's Cifar10/Cifar100 for `split` (train | eval = the archive's test split),
    restricted to data.classes and relabelled 0..k-1 in that order."""
    kind = KINDS[data_cfg.dataset]
    mode = "train" if split == "train" else "test"
    ds, path, source = _open(data_cfg, mode, transform)
    # Paddle's Cifar10 keeps every sample as (uint8 row of 3072, int label) in `ds.data`.
    if not ds.data or np.asarray(ds.data[0][0]).size != _SAMPLE_BYTES:
        raise DataError(f"{path} ({source}): no {kind.title} {mode} images of 3x32x32 found")
    labels = np.fromiter((label for _, label in ds.data), dtype=np.int64, count=len(ds.data))
    if labels.min() < 0 or labels.max() >= kind.num_classes:
        raise DataError(
            f"{path} ({source}): {mode} labels span {labels.min()}..{labels.max()}, "
            f"expected 0..{kind.num_classes - 1} for {kind.title}"
        )
    if data_cfg.classes is not None:
        table = np.full(kind.num_classes, -1, dtype=np.int64)
        table[list(data_cfg.classes)] = np.arange(len(data_cfg.classes))
        new = table[labels]
        keep = np.flatnonzero(new >= 0)
        if keep.size == 0:
            raise DataError(f"data.classes: no {mode} images of classes {data_cfg.classes} in {path}")
        rows = np.stack([ds.data[i][0] for i in keep])  # a copy, so the dropped classes' batches can be freed
        ds.data = list(zip(rows, new[keep].tolist()))
    return ds


def cifar_class_names(data_cfg) -> List[str]:
    """All class names of the archive, in original label order."""
    kind = KINDS[data_cfg.dataset]
    path, source = find_archive(data_cfg)
    if path is None:
        _, path, source = _open(data_cfg, "test", None)
    return inspect_archive(path, kind, source)
