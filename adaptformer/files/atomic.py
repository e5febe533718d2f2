"""Files we write: atomically (a temporary file beside the target, renamed over it), with the
temporary files a killed run leaves found and removed, and a folder checked writable first."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from typing import Callable, Iterator, List


from adaptformer.errors import OutputError


# Temporary files of atomic_write: ".<name>.<mkstemp's random part>.tmp" beside the target.
TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which is not thread-safe later on.
_UMASK = _current_umask()


def _fsync_path(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: str) -> None:
    try:
        _fsync_path(folder, os.O_RDONLY)
    except OSError as e:  # some file systems cannot sync a directory; the rename still happened
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EACCES):
            raise


def describe_os_error(path: str, e: OSError) -> str:
    """One line for a failed write: the path and a plain reason."""
    if e.errno in _NO_SPACE:
        return f"{path}: cannot write, the disk or file size limit is full ({e.strerror}); free space and retry"
    if e.errno in (errno.EEXIST, errno.ENOTDIR):  # makedirs met a file where a folder should be
        return f"{path}: cannot write here (a file is in the way of this folder: {e.filename})"
    return f"{path}: cannot write here ({e.strerror or e})"


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) then move the result onto `path` in one step, so a
    crash never leaves a half-written file under the real name. The file and its
    folder are synced before returning, and the file gets the umask's permissions.
    A full disk or an unwritable folder raises OutputError with one line."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600
        _fsync_path(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(folder)
    except OSError as e:
        raise OutputError(describe_os_error(path, e)) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


@contextlib.contextmanager
def staged_folder(path: str) -> Iterator[str]:
    """A new folder written whole or not at all: the caller writes into the staging folder yielded
    (".<name>.<pid>.partial" beside `path`), which is renamed onto `path` when the block ends and
    removed if it raises. `path` must not exist."""
    path = os.path.abspath(path)
    if os.path.lexists(path):
        raise OutputError(f"{path} exists already; pass a new folder")
    staging = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.partial")
    try:
        os.makedirs(staging)
        yield staging
        os.rename(staging, path)
    except OSError as e:
        raise OutputError(describe_os_error(path, e)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_temp_file_name(name: str) -> bool:
    """Named as atomic_write names its temporary files."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_temp_files(folder: str) -> List[str]:
    """Delete temporary files atomic_write left in `folder` when its process was killed."""
    if not os.path.isdir(folder):
        return []
    stale = sorted(n for n in os.listdir(folder) if is_temp_file_name(n) and os.path.isfile(os.path.join(folder, n)))
    for name in stale:
        os.remove(os.path.join(folder, name))
    return stale


def require_writable_dir(path: str) -> None:
    """OutputError unless files can be created in folder `path` (created if missing)."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise OutputError(describe_os_error(path, e)) from None

