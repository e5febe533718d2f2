"""Guarding a run's output folder: one writer at a time, and no earlier run's files lost.

- A lock file (`.lock`, holding "pid host") marks the folder as in use; a second
  training into it is refused. A lock left by a dead process on this host is taken over.
- A folder holding an earlier run is refused unless the run resumes it or `--overwrite`
  is given. With `--overwrite` nothing is deleted at the start: each file is replaced when
  the new run writes its own, and the earlier run's files the new run never writes
  (`*_eval.json`, old VisualDL logs, ...) are removed only once the new run has finished.
"""
from __future__ import annotations

import os
import socket
from typing import Dict, List

from ..config import ConfigError
from ..utils import OutputError, describe_os_error, is_temp_file_name, remove_stale_temp_files, short_list

LOCK = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_lock(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            pid, host = f.read().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None, None  # unreadable or half-written: treated as held


def _create_lock(path: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {socket.gethostname()}\n")
    return True


def acquire_lock(folder: str, log=print) -> str:
    """Create folder/.lock for this process, or raise ConfigError naming the process holding it."""
    path = os.path.join(folder, LOCK)
    try:
        os.makedirs(folder, exist_ok=True)
        if _create_lock(path):
            return path
        pid, host = _read_lock(path)
        if pid is not None and host == socket.gethostname() and not _pid_alive(pid):
            log(f"note: {path} was left by process {pid}, which is no longer running; taking it over")
            os.remove(path)
            if _create_lock(path):
                return path
            pid, host = _read_lock(path)
    except OSError as e:
        raise OutputError(describe_os_error(folder, e)) from None
    holder = f"process {pid} on {host}" if pid is not None else "another process"
    raise ConfigError(
        f"train.output_dir: {folder} is in use by {holder} (lock {path}); "
        "wait for that run to end or choose another train.output_dir"
    )


def release_lock(folder: str) -> None:
    path = os.path.join(folder, LOCK)
    pid, host = _read_lock(path)
    if pid == os.getpid() and host == socket.gethostname():
        os.remove(path)


def earlier_run_files(folder: str) -> List[str]:
    """What an earlier run left in `folder` (not the lock, nor temporary files of a killed run)."""
    return sorted(n for n in os.listdir(folder) if n != LOCK and not is_temp_file_name(n))


def refuse_earlier_run(folder: str, existing: List[str]) -> None:
    raise ConfigError(
        f"train.output_dir: {folder} already holds a run ({short_list(existing, 4)}); "
        "pass --resume to continue it or --overwrite to replace it"
    )


def _identity(path: str):
    st = os.lstat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


def _is_folder(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def snapshot(folder: str, entries: List[str]) -> Dict[str, tuple]:
    """Identity of each entry and of the files inside its sub-folders (VisualDL adds new files
    to vdl/, so the old ones inside must be told apart from the folder itself)."""
    found = {}
    for name in entries:
        path = os.path.join(folder, name)
        found[name] = _identity(path)
        if _is_folder(path):
            for inner in os.listdir(path):
                found[os.path.join(name, inner)] = _identity(os.path.join(path, inner))
    return found


def remove_leftovers(folder: str, before: Dict[str, tuple]) -> List[str]:
    """After a finished --overwrite run: delete the files the earlier run left and this run did not
    rewrite (an atomic rewrite gives a new inode, an append a new size), then the sub-folders this
    leaves empty. A folder this run wrote into is kept with the new files."""
    removed = []
    for name, identity in sorted(before.items(), key=lambda kv: -kv[0].count(os.sep)):
        path = os.path.join(folder, name)
        if not os.path.lexists(path):
            continue
        if _is_folder(path):
            if os.listdir(path):
                continue
            os.rmdir(path)
        elif _identity(path) == identity:
            os.remove(path)
        else:
            continue
        removed.append(name)
    return removed


__all__ = ["LOCK", "acquire_lock", "release_lock", "earlier_run_files", "refuse_earlier_run", "snapshot",
           "remove_leftovers", "remove_stale_temp_files"]
