"""Write small CIFAR archives in the original python-pickle layout, for tests.

cifar10: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta, readme.html}
cifar100: cifar-100-python/{train, test, meta}
Batches are protocol-2 pickles of dicts with bytes keys; b'data' is uint8
[N, 3072] holding the R plane, then G, then B, each row-major. Every image is
its class colour (`class_colour`) plus noise, so a tiny model can learn it.
"""
from __future__ import annotations

import io
import pickle
import tarfile
from typing import Dict, List, Optional

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_NAMES = [f"fine_{i:02d}" for i in range(100)]
CIFAR100_COARSE = [f"coarse_{i:02d}" for i in range(20)]
NOISE = 10


def class_colour(label: int) -> np.ndarray:
    """The RGB colour (uint8 [3]) that images of `label` are drawn around."""
    rng = np.random.default_rng([7, label])
    return rng.integers(NOISE * 3, 256 - NOISE * 3, size=3).astype(np.uint8)


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hwc = np.stack([class_colour(int(c)) for c in labels]).astype(np.int16)[:, None, None, :]
    hwc = hwc + rng.integers(-NOISE, NOISE + 1, size=(len(labels), 32, 32, 3))
    hwc = np.clip(hwc, 0, 255).astype(np.uint8)
    return hwc.transpose(0, 3, 1, 2).reshape(len(labels), 3 * 32 * 32)


def _labels(n_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(n_classes), per_class))


class _Replacing:
    """A tar being written whose named members get other contents."""

    def __init__(self, tar: tarfile.TarFile, replace: Dict[str, bytes]):
        self.tar = tar
        self.replace = replace

    def addfile(self, info: tarfile.TarInfo, fileobj=None) -> None:
        if fileobj is not None and info.name.rsplit("/", 1)[-1] in self.replace:
            payload = self.replace[info.name.rsplit("/", 1)[-1]]
            info.size, fileobj = len(payload), io.BytesIO(payload)
        self.tar.addfile(info, fileobj)


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(payload))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _dump(obj: Dict) -> bytes:
    return pickle.dumps(obj, protocol=2)


def _batch(label_key: bytes, title: str, labels: np.ndarray, rng: np.random.Generator) -> Dict:
    return {
        b"batch_label": title.encode(),
        label_key: [int(c) for c in labels],
        b"data": _images(labels, rng),
        b"filenames": [f"{title.replace(' ', '_')}_{i}.png".encode() for i in range(len(labels))],
    }


def write_cifar_archive(
    path: str, kind: str = "cifar10", train_per_class: int = 2, test_per_class: int = 1, seed: int = 0,
    replace: Optional[Dict[str, bytes]] = None,
) -> str:
    """Write a CIFAR-10 or CIFAR-100 tar.gz at `path` and return `path`.
    `replace` maps member basenames (e.g. 'batches.meta') to the bytes written instead."""
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as archive:
        tar = _Replacing(archive, replace or {})
        if kind == "cifar10":
            folder = "cifar-10-batches-py"
            _add_dir(tar, folder)
            train = _labels(10, train_per_class, rng)
            for i, part in enumerate(np.array_split(train, 5), start=1):
                _add(tar, f"{folder}/data_batch_{i}", _dump(_batch(b"labels", f"training batch {i} of 5", part, rng)))
            test = _labels(10, test_per_class, rng)
            _add(tar, f"{folder}/test_batch", _dump(_batch(b"labels", "testing batch 1 of 1", test, rng)))
            meta = {
                b"num_cases_per_batch": int(np.ceil(len(train) / 5)),
                b"label_names": [n.encode() for n in CIFAR10_NAMES],
                b"num_vis": 3072,
            }
            _add(tar, f"{folder}/batches.meta", _dump(meta))
            _add(tar, f"{folder}/readme.html", b"<html>test archive</html>")
        elif kind == "cifar100":
            folder = "cifar-100-python"
            _add_dir(tar, folder)
            for member, per_class in (("train", train_per_class), ("test", test_per_class)):
                labels = _labels(100, per_class, rng)
                batch = _batch(b"fine_labels", member, labels, rng)
                batch[b"coarse_labels"] = [int(c) // 5 for c in labels]
                _add(tar, f"{folder}/{member}", _dump(batch))
            meta = {
                b"fine_label_names": [n.encode() for n in CIFAR100_NAMES],
                b"coarse_label_names": [n.encode() for n in CIFAR100_COARSE],
            }
            _add(tar, f"{folder}/meta", _dump(meta))
        else:
            raise ValueError(f"kind must be cifar10 or cifar100, got {kind!r}")
    return path


def names(kind: str) -> List[str]:
    return list(CIFAR10_NAMES if kind == "cifar10" else CIFAR100_NAMES)
