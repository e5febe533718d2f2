"""CIFAR-10 / CIFAR-100 from the original python archives, read by the package's restricted reader.

Archive resolution: data.data_file, else data.data_dir/<archive name>, else
Paddle's download cache, else (data.download) a download by Paddle's downloader.
The archive's pickled batches are never given to `pickle.load`: its members are
read in one bounded pass over the tar stream (decompressing at most a few times
the archive's size) and unpickled by `adaptformer.files.safe_pickle`, which builds
only numpy arrays, bytes, numbers and containers. Every failure is a one-line
`DataError` that says which file and which config key.
"""
from __future__ import annotations

import gzip
import os
import socket
import tarfile
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image

from adaptformer.data.kinds import DatasetKind
from adaptformer.errors import CheckpointError, DataError, one_line, short_reason
from adaptformer.files import open_regular
from adaptformer.files.safe_pickle import ALLOWANCE, GROWTH, ByteBudget, CheckpointReadError, read_data_pickle, read_exactly


@dataclass(frozen=True)
class CifarKind:
    title: str
    archive: str
    num_classes: int
    meta: str
    names_key: str
    labels_key: str
    train_prefix: str
    test_member: str
    paddle_name: str  # Paddle's names for its URL and MD5 sum: CIFAR10_URL, CIFAR10_MD5

    def _paddle_fact(self, what: str) -> str:
        import paddle.vision.datasets.cifar as paddle_cifar  # only its URLs and MD5 sums: the batches are read here

        return getattr(paddle_cifar, f"{self.paddle_name}_{what}")

    @property
    def url(self) -> str:
        return self._paddle_fact("URL")

    @property
    def md5(self) -> str:
        return self._paddle_fact("MD5")

    def is_train(self, base: str) -> bool:
        return base.startswith(self.train_prefix)

    def in_split(self, base: str, mode: str) -> bool:
        return self.is_train(base) if mode == "train" else base == self.test_member


ARCHIVES: Dict[str, CifarKind] = {
    "cifar10": CifarKind(
        "CIFAR-10", "cifar-10-python.tar.gz", 10, "batches.meta", "label_names", "labels", "data_batch_",
        "test_batch", "CIFAR10",
    ),
    "cifar100": CifarKind(
        "CIFAR-100", "cifar-100-python.tar.gz", 100, "meta", "fine_label_names", "fine_labels", "train",
        "test", "CIFAR100",
    ),
}

_SAMPLE_BYTES = 3 * 32 * 32
_inspected: Dict[Tuple[str, str, int, int], List[str]] = {}


def _text(x: Any) -> str:
    return x.decode("latin1") if isinstance(x, bytes) else str(x)


def _expected(kind: CifarKind) -> str:
    return f"expected the original {kind.title} python archive ({kind.archive})"


def cache_path(kind: CifarKind) -> str:
    import paddle.dataset.common

    return os.path.join(paddle.dataset.common.DATA_HOME, "cifar", kind.archive)


def _offline_hint(kind: CifarKind) -> str:
    return (
        f"{kind.title} archive not available offline: pass -o data.data_file=/path/to/{kind.archive} "
        f"(or -o data.data_dir=DIR holding it)"
    )


def find_archive(data_cfg) -> Tuple[Optional[str], str]:
    """(path, where it came from); path None means it has to be downloaded."""
    kind = ARCHIVES[data_cfg.dataset]
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


def check_reachable(url: str, timeout: float = 10.0) -> None:
    """Fail fast (OSError) when the download host cannot be reached, before Paddle's downloader prints anything."""
    parts = urllib.parse.urlsplit(url)
    socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout).close()


def download(kind: CifarKind) -> str:
    """The archive in Paddle's cache, fetched by Paddle's downloader (checked against its MD5)."""
    try:
        import paddle.dataset.common

        check_reachable(kind.url)
        return paddle.dataset.common.download(kind.url, "cifar", kind.md5)
    except Exception as e:  # the downloader raises many kinds; every one means "not available"
        raise DataError(f"{_offline_hint(kind)}; download failed: {short_reason(e)}") from None


# --------------------------------------------------------------------------- reading the archive


class _CappedStream:
    """A (decompressed) stream that refuses to produce more than the archive's byte budget in total."""

    def __init__(self, raw, budget: ByteBudget):
        self._raw = raw
        self._budget = budget

    def read(self, n: int = -1) -> bytes:
        left = self._budget.limit - self._budget.spent
        data = self._raw.read(left + 1 if n is None or n < 0 else min(n, left + 1))
        if len(data) > left:
            raise CheckpointReadError(
                f"decompresses to more than {self._budget.limit} bytes, more than a "
                f"{self._budget.file_size}-byte archive may (limit {GROWTH} x its size + {ALLOWANCE >> 10} KiB)")
        self._budget.spent += len(data)
        return data


def _open_stream(raw):
    gzipped = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw


def _members(path: str, wanted: Callable[[str], bool]) -> Iterator[Tuple[str, Optional[bytearray]]]:
    """(member name, its bytes if `wanted(basename)` else None) for every member, in archive order."""
    budget = ByteBudget(os.path.getsize(path))
    with open_regular(path, "archive", "a CIFAR archive (.tar.gz)") as raw:
        stream = _CappedStream(_open_stream(raw), budget)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                what = f"member {one_line(member.name)}"
                if member.size > budget.limit - budget.spent:
                    budget.spend(member.size, what)  # refuses, naming the declared size, before inflating it
                data = None
                if wanted(os.path.basename(member.name)) and not member.isfile():
                    raise DataError(f"{path}: member {one_line(member.name)} is a "
                                    f"{'link' if member.issym() or member.islnk() else 'folder or special file'}, "
                                    "not the file of a batch; the archive is not the one CIFAR distributes")
                if member.isfile() and wanted(os.path.basename(member.name)):
                    data = read_exactly(tar.extractfile(member), member.size, what)
                yield one_line(member.name), data


def _unpickle_member(path: str, source: str, kind: CifarKind, name: str, data: bytearray, purpose: str) -> Any:
    try:
        return read_data_pickle(data, f"member {os.path.basename(name)}")
    except CheckpointError as e:  # unsafe or damaged: either way not a CIFAR batch
        raise DataError(f"{path} ({source}): cannot read {purpose} ({e}); {_expected(kind)}") from None


def _read_archive(path: str, source: str, kind: CifarKind, wanted: Callable[[str], bool]):
    """(basenames of all members, {member name: bytes} of the wanted ones); one-line DataError on failure."""
    try:
        bases, found = [], {}
        for name, data in _members(path, wanted):
            bases.append(os.path.basename(name))
            if data is not None:
                found[name] = data
        return bases, found
    except DataError:
        raise
    except Exception as e:  # tarfile, gzip and the byte budget fail in many ways; all mean a bad archive
        raise DataError(f"{path} ({source}): cannot read it ({short_reason(e)}); {_expected(kind)}") from None


def _field(record: Dict, key: str) -> Any:
    """A batch/meta entry: Python 2 pickles key them by bytes, Python 3 ones by str."""
    return record.get(key.encode(), record.get(key)) if isinstance(record, dict) else None


def inspect_archive(path: str, kind: CifarKind, source: str) -> List[str]:
    """Check that `path` is the expected archive and return its class names."""
    st = os.stat(path)
    key = (kind.title, os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key in _inspected:
        return _inspected[key]
    where = f"{path} ({source})"
    bases, found = _read_archive(path, source, kind, lambda base: base == kind.meta)
    if not any(kind.is_train(b) for b in bases) or kind.test_member not in bases or not found:
        other = next(k for k in ARCHIVES.values() if k is not kind)
        if any(other.is_train(b) for b in bases) and other.test_member in bases:
            raise DataError(f"{where}: this is a {other.title} archive, but data.dataset is {kind.title}; {_expected(kind)}")
        listed = ", ".join(sorted(set(bases))[:8]) or "nothing"
        raise DataError(f"{where}: not a {kind.title} archive (found {listed}); {_expected(kind)}")
    name, data = next(iter(found.items()))
    names = _field(_unpickle_member(path, source, kind, name, data, "the class names"), kind.names_key)
    if not isinstance(names, (list, tuple)) or len(names) != kind.num_classes:
        raise DataError(f"{where}: member {kind.meta} has no {kind.num_classes} '{kind.names_key}'; {_expected(kind)}")
    _inspected[key] = [_text(n) for n in names]
    return _inspected[key]


def archive_dataset(path: str) -> str:
    """Which CIFAR archive `path` is, "cifar10" or "cifar100", told by its members, not its file name."""
    bases, _ = _read_archive(path, "archive", ARCHIVES["cifar10"], lambda base: False)
    for key, kind in ARCHIVES.items():
        if any(kind.is_train(b) for b in bases) and kind.test_member in bases:
            return key
    listed = ", ".join(sorted(set(bases))[:8]) or "nothing"
    raise DataError(f"{path}: neither a CIFAR-10 nor a CIFAR-100 python archive (found {listed})")


def _batch_arrays(batch: Any, kind: CifarKind) -> Tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, 32, 32, 3], int64 labels [N]) of one batch; ValueError says what is wrong."""
    data, labels = _field(batch, "data"), _field(batch, kind.labels_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _SAMPLE_BYTES:
        raise ValueError(f"no uint8 'data' of {_SAMPLE_BYTES} bytes per image (3x32x32)")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
        raise ValueError(f"no '{kind.labels_key}' list of {len(data)} labels")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"'{kind.labels_key}' holds values that are not integers") from None
    # The rows hold the red plane, then green, then blue: [N, 3, 32, 32] -> [N, 32, 32, 3].
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.reshape(-1)


def read_split(path: str, source: str, kind: CifarKind, mode: str) -> Tuple[np.ndarray, np.ndarray]:
    """All images and labels of the train or test batches, batches in member-name order (as Paddle reads them)."""
    _, found = _read_archive(path, source, kind, lambda base: kind.in_split(base, mode))
    purpose = f"the {kind.title} {mode} data"
    images, labels = [], []
    for name in sorted(found):
        batch = _unpickle_member(path, source, kind, name, found.pop(name), purpose)
        try:
            batch_images, batch_labels = _batch_arrays(batch, kind)
        except ValueError as e:
            raise DataError(
                f"{path} ({source}): cannot read {purpose} (member {os.path.basename(name)}: {e}); {_expected(kind)}"
            ) from None
        images.append(batch_images)
        labels.append(batch_labels)
    if not images or not sum(map(len, labels)):
        raise DataError(f"{path} ({source}): no {kind.title} {mode} images of 3x32x32 found")
    labels = np.concatenate(labels)
    outside = labels[(labels < 0) | (labels >= kind.num_classes)]
    if outside.size:
        raise DataError(f"{path} ({source}): {purpose} holds labels outside [0, {kind.num_classes}) "
                        f"({outside.size} of them, e.g. {int(outside[0])}); {_expected(kind)}")
    return np.ascontiguousarray(np.concatenate(images)), labels


class CifarImages:
    """uint8 images [N, 32, 32, 3] and int64 labels; an item is (transform(PIL image), 0-d int64 label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Optional[Callable] = None):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __getitem__(self, idx: int):
        image = Image.fromarray(self.images[idx])
        if self.transform is not None:
            image = self.transform(image)
        return image, np.array(self.labels[idx], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)


def _locate(data_cfg) -> Tuple[str, str]:
    """(archive path, where it came from), downloading it when that is configured and needed."""
    path, source = find_archive(data_cfg)
    if path is None:
        return download(ARCHIVES[data_cfg.dataset]), "downloaded by Paddle"
    return path, source


def load_cifar(data_cfg, split: str, transform: Optional[Callable] = None) -> CifarImages:
    """The archive's `split` (train | eval = the archive's test split) as a `CifarImages`,
    restricted to data.classes and relabelled 0..k-1 in that order."""
    kind = ARCHIVES[data_cfg.dataset]
    mode = "train" if split == "train" else "test"
    path, source = _locate(data_cfg)
    inspect_archive(path, kind, source)
    images, labels = read_split(path, source, kind, mode)
    if labels.min() < 0 or labels.max() >= kind.num_classes:
        raise DataError(
            f"{path} ({source}): {mode} labels span {labels.min()}..{labels.max()}, "
            f"expected 0..{kind.num_classes - 1} for {kind.title}"
        )
    if data_cfg.classes is not None:
        table = np.full(kind.num_classes, -1, dtype=np.int64)
        table[list(data_cfg.classes)] = np.arange(len(data_cfg.classes))
        labels = table[labels]
        keep = np.flatnonzero(labels >= 0)
        if keep.size == 0:
            raise DataError(f"data.classes: no {mode} images of classes {data_cfg.classes} in {path}")
        images, labels = images[keep], labels[keep]
    return CifarImages(images, labels, transform)


def cifar_class_names(data_cfg) -> List[str]:
    """All class names of the archive, in original label order."""
    path, source = _locate(data_cfg)
    return inspect_archive(path, ARCHIVES[data_cfg.dataset], source)


def _read(data_cfg, split: str, transform: Optional[Callable] = None) -> CifarImages:
    return load_cifar(data_cfg, "train" if split == "train" else "eval", transform)


KINDS = [
    DatasetKind(key, class_names=cifar_class_names, read=_read, count=lambda cfg: ARCHIVES[cfg.dataset].num_classes,
                order=10 + i)
    for i, key in enumerate(ARCHIVES)
]
