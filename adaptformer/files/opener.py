"""One way to open a file a user hands us: a regular file, opened without blocking, within the
size budget of its kind, then read.

Why each step: a FIFO, socket or device where a file is expected blocks `open()` or `read()`
forever (a FIFO named x.png in a class folder, /dev/zero behind a symlink); a file far larger
than its kind can be is read until memory runs out. `os.stat` follows links, so a link is judged
by what it points to; a loop of links is an error, not a hang.
"""
from __future__ import annotations

import errno
import io
import os
import stat
from typing import Any, BinaryIO, Dict

from adaptformer.errors import InputFileError

MiB = 1 << 20
GiB = 1 << 30

# What a file of each kind can reasonably hold; a larger one is not what it claims to be.
BUDGETS: Dict[str, int] = {
    "config": 1 * MiB,  # a YAML config (ours are a few KB)
    "json": 64 * MiB,  # summary.json, tuned.json, config.json, meta.json, test_predictions.json
    "metrics": 256 * MiB,  # metrics.jsonl: a few hundred bytes per epoch
    "lock": 4096,
    "image": 512 * MiB,  # a compressed image; decoded pixels are bounded by images.MAX_PIXELS
    "weights": 64 * GiB,  # checkpoints (.pdparams, .pdckpt, .pth, .safetensors, .npz): bounded by the disk
    "archive": 64 * GiB,  # dataset archives (CIFAR .tar.gz)
    "text": 256 * MiB,  # file lists and annotation files
    "video": 16 * GiB,  # a compressed video; decoded frames are bounded by data/video_files.py
}

_KIND_OF_FILE = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
                 stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symbolic link"}


def _describe_mode(mode: int) -> str:
    return _KIND_OF_FILE.get(stat.S_IFMT(mode), "not a regular file")


def _budget(kind: str) -> int:
    if kind not in BUDGETS:
        raise KeyError(f"unknown file kind {kind!r}; one of {sorted(BUDGETS)}")
    return BUDGETS[kind]


def _size_text(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} bytes"


def _refused(path, reason: str, expected: str = "") -> InputFileError:
    e = InputFileError(f"{path}: {reason}" + (f"; expected {expected}" if expected else ""))
    e.reason = reason  # without the path, for outputs that name the file already (predict)
    return e


def check_regular(path: str, kind: str, expected: str = "") -> os.stat_result:
    """The stat of `path` (links followed) if it is a regular file within `kind`'s budget;
    InputFileError (an OSError) naming the file and what was expected otherwise."""
    path = os.fspath(path)
    if "\0" in path:
        raise _refused(repr(path), "a path cannot hold a NUL byte", expected)
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refused(path, "a loop of symbolic links", expected) from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise _refused(path, "no such file", expected) from None
        raise _refused(path, f"cannot be read ({e.strerror})", expected) from None
    if stat.S_ISDIR(st.st_mode):
        raise _refused(path, "is a folder, not a file", expected)
    if not stat.S_ISREG(st.st_mode):
        raise _refused(path, f"is {_describe_mode(st.st_mode)}, not a regular file", expected)
    budget = _budget(kind)
    if st.st_size > budget:
        raise _refused(path, f"{_size_text(st.st_size)}, more than a {kind} file can be ({_size_text(budget)})",
                       expected)
    return st


class _Bounded(io.RawIOBase):
    """A read-only view of an open file that refuses to go past `limit` bytes (a file that grows
    after it was checked, or a special file that passed for a regular one)."""

    def __init__(self, raw: BinaryIO, limit: int, path: str):
        self._raw, self._limit, self._path = raw, limit, path
        self.name = path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        if n and self._raw.tell() > self._limit:
            raise _refused(self._path, "grew past its size budget while being read")
        return n

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_regular(path: str, kind: str, expected: str = "") -> BinaryIO:
    """`path` opened for binary reading, checked by check_regular first. The open itself does not
    block (O_NONBLOCK), and the descriptor is checked again, so a file swapped for a FIFO between
    the check and the open is refused too."""
    st = check_regular(path, kind, expected)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _refused(path, f"cannot be read ({e.strerror})", expected) from None
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            raise _refused(path, f"is {_describe_mode(now.st_mode)}, not a regular file", expected)
        os.set_blocking(fd, True)
        raw = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    return io.BufferedReader(_Bounded(raw, max(st.st_size, now.st_size), path), buffer_size=1 << 16)


def read_bytes(path: str, kind: str, expected: str = "") -> bytes:
    with open_regular(path, kind, expected) as f:
        data = f.read(_budget(kind) + 1)
    if len(data) > _budget(kind):
        raise _refused(path, f"more than a {kind} file can be ({_size_text(_budget(kind))})")
    return data


def decode_utf8(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _refused(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def read_text(path: str, kind: str, expected: str = "") -> str:
    """A UTF-8 text file (a BOM is dropped); InputFileError for anything else."""
    text = decode_utf8(read_bytes(path, kind, expected), path)
    return text[1:] if text.startswith("\ufeff") else text


def read_json(path: str, kind: str = "json", expected: str = "", want: type = dict) -> Any:
    """A JSON document of type `want` (dict by default)."""
    import json

    text = read_text(path, kind, expected)
    try:
        doc = json.loads(text)
    except RecursionError:
        raise _refused(path, "not valid JSON (nested too deeply)") from None
    except ValueError as e:
        raise _refused(path, f"not valid JSON ({str(e)[:120]})") from None
    if want is not None and not isinstance(doc, want):
        raise _refused(path, f"holds a JSON {type(doc).__name__}, expected a JSON "
                             f"{'object' if want is dict else want.__name__}")
    return doc


__all__ = ["BUDGETS", "check_regular", "open_regular", "read_bytes", "read_text", "read_json", "decode_utf8"]
