"""Guarding a run's output folder: one writer at a time, and only the package's own files ever removed.

- A lock file (`.lock`, holding "pid host") marks the folder as in use; a second training into
  it is refused. A lock left by a dead process on this host is taken over; a lock that names no
  process is reported with how to clear it.
- A run claims its folder by writing a manifest, `.adaptformer-run.json`, naming the files the
  run writes and their kind (file or folder). A folder with files but no manifest does not
  hold a run and is refused, `--overwrite` or not: nothing in it was written by us.
- A folder holding an earlier run is refused unless the run resumes it or `--overwrite` is
  given. With `--overwrite` nothing is deleted at the start: each file is replaced when the new
  run writes its own, and the earlier run's files the new run never rewrote are removed only
  once it has finished, and only if the manifest names them, the package writes files of that
  name and kind, and the entry still is of that kind (a file a link replaced is left alone).
  Anything else in the folder is kept and named.
"""
from __future__ import annotations

import json
import os
import re
import socket
from typing import Dict, List

from adaptformer.errors import ConfigError, InputFileError, OutputError
from adaptformer.files.opener import read_text
from adaptformer.files.atomic import atomic_write_text, describe_os_error, is_temp_file_name, remove_stale_temp_files
from adaptformer.errors import short_list

LOCK = ".lock"
MANIFEST = ".adaptformer-run.json"
FILE, FOLDER = "file", "folder"

# Every name a run writes in its folder, with its kind; for a folder, the names it writes inside.
RUN_FILES: Dict[str, str] = {
    "config.yaml": FILE, "metrics.jsonl": FILE, "best.pdparams": FILE, "last.pdckpt": FILE,
    "summary.json": FILE, "test_predictions.json": FILE, "curves.png": FILE, "test_predictions.png": FILE,
    "vdl": FOLDER, "tuned": FOLDER,
}
FOLDER_CONTENTS = {"vdl": re.compile(r"^vdlrecords\.[\w.-]+\.log$"), "tuned": re.compile(r"^tuned\.(pdparams|json)$")}
# tools/eval.py writes <checkpoint stem>_<split>_eval.json beside the checkpoint and records it.
EVAL_FILE = re.compile(r"^[\w.-]+_(test|val)_eval\.json$")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_lock(path: str):
    try:
        pid, host = read_text(path, "lock").split()[:2]
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
        if pid is not None and host == socket.gethostname() and not pid_alive(pid):
            log(f"note: {path} was left by process {pid}, which is no longer running; taking it over")
            os.remove(path)
            if _create_lock(path):
                return path
            pid, host = _read_lock(path)
    except OSError as e:
        raise OutputError(describe_os_error(folder, e)) from None
    if pid is None:
        raise ConfigError(f"train.output_dir: {folder} has a lock file {path} that names no process (it should hold "
                          "'pid host'); if no run is using this folder, delete that file and retry")
    raise ConfigError(
        f"train.output_dir: {folder} is in use by process {pid} on {host} (lock {path}); "
        "wait for that run to end or choose another train.output_dir"
    )


def read_lock(folder: str):
    """(pid, host) of folder/.lock, or (None, None)."""
    return _read_lock(os.path.join(folder, LOCK))


def release_lock(folder: str) -> None:
    path = os.path.join(folder, LOCK)
    pid, host = _read_lock(path)
    if pid == os.getpid() and host == socket.gethostname():
        os.remove(path)


# ----------------------------------------------------------------------------- the manifest

def read_manifest(folder: str) -> Dict[str, str]:
    """{name: kind} of the files the runs in `folder` recorded writing; {} when there is no manifest.
    A damaged manifest is an error: what it protects cannot be told."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.lexists(path):
        return {}
    try:
        doc = json.loads(read_text(path, "json"))
    except (InputFileError, ValueError) as e:
        raise ConfigError(f"{path}: the run manifest is unreadable ({e}); move the folder aside") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not all(isinstance(k, str) and v in (FILE, FOLDER) for k, v in files.items()):
        raise ConfigError(f"{path}: not a run manifest (expected {{\"files\": {{name: \"file\"|\"folder\"}}}}); "
                          "move the folder aside")
    return files


def record_written(folder: str, *names: str) -> None:
    """Add `names` (files of the run, RUN_FILES or eval results) to the folder's manifest, before
    they are written: a killed run then still owns what it left."""
    files = read_manifest(folder)
    for name in names:
        kind = RUN_FILES.get(name, FILE if EVAL_FILE.match(name) else None)
        if kind is None:
            raise ValueError(f"{name} is not a file a run writes")
        files[name] = kind
    atomic_write_text(os.path.join(folder, MANIFEST), json.dumps({"written_by": "adaptformer", "files": files},
                                                                 indent=1, sort_keys=True) + "\n")


def holds_run(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, MANIFEST))


def folder_entries(folder: str) -> List[str]:
    """What is in `folder`, apart from the lock, the manifest and temporary files of a killed write."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []  # nothing there yet (a path under a file fails when the folder is made)
    return sorted(n for n in names if n not in (LOCK, MANIFEST) and not is_temp_file_name(n))


def _is_kind(path: str, kind: str) -> bool:
    if os.path.islink(path):
        return False
    return os.path.isdir(path) if kind == FOLDER else os.path.isfile(path)


def owned_entries(folder: str) -> Dict[str, str]:
    """The entries of `folder` a run wrote, by the manifest, name and kind: the only ones ever removed."""
    recorded = read_manifest(folder)
    owned = {}
    for name in folder_entries(folder):
        kind = recorded.get(name)
        known = RUN_FILES.get(name, FILE if EVAL_FILE.match(name) else None)
        if kind is not None and kind == known and _is_kind(os.path.join(folder, name), kind):
            owned[name] = kind
    return owned


def check_folder(folder: str, resume: bool, overwrite: bool) -> None:
    """Refuse, before anything is written, a folder this run may not use."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite cannot be combined: --resume continues the run in "
                          "train.output_dir, --overwrite replaces it; pass one")
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"train.output_dir: {folder} is a file, not a folder")
    entries = folder_entries(folder)
    if not entries or resume:
        return
    if not holds_run(folder):
        earlier = " (a run of a version before the manifest: move it aside)" if "config.yaml" in entries else ""
        raise ConfigError(f"train.output_dir: {folder} holds files no run of this package wrote "
                          f"({short_list(entries, 4)}; no {MANIFEST}){earlier}; choose an empty or new folder")
    if not overwrite:
        raise ConfigError(f"train.output_dir: {folder} already holds a run ({short_list(entries, 4)}); "
                          "pass --resume to continue it or --overwrite to replace it")


def _identity(path: str):
    st = os.lstat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


def snapshot(folder: str, owned: Dict[str, str]) -> Dict[str, tuple]:
    """Identity of each file the earlier run wrote (`owned`: owned_entries), inside its folders too:
    VisualDL adds new files to vdl/, so the old ones inside must be told apart from the folder itself."""
    found = {}
    for name, kind in owned.items():
        path = os.path.join(folder, name)
        if kind == FILE:
            found[name] = _identity(path)
            continue
        for inner in os.listdir(path):
            inner_path = os.path.join(path, inner)
            if FOLDER_CONTENTS[name].match(inner) and _is_kind(inner_path, FILE):
                found[os.path.join(name, inner)] = _identity(inner_path)
        found[name] = None  # the folder itself: removed once empty
    return found


def foreign_entries(folder: str, owned: Dict[str, str]) -> List[str]:
    """Entries of `folder` no run wrote (`owned`: owned_entries), kept by --overwrite."""
    return [n for n in folder_entries(folder) if n not in owned]


def remove_leftovers(folder: str, before: Dict[str, tuple]) -> List[str]:
    """After a finished --overwrite run: delete the earlier run's files this run did not rewrite
    (an atomic rewrite gives a new inode, an append a new size), then its folders this leaves empty."""
    removed = []
    for name, identity in sorted(before.items(), key=lambda kv: -kv[0].count(os.sep)):
        path = os.path.join(folder, name)
        if identity is None:
            if _is_kind(path, FOLDER) and not os.listdir(path):
                os.rmdir(path)
                removed.append(name)
        elif _is_kind(path, FILE) and _identity(path) == identity:
            os.remove(path)
            removed.append(name)
    return removed


__all__ = ["LOCK", "MANIFEST", "RUN_FILES", "acquire_lock", "read_lock", "release_lock", "check_folder", "record_written", "owned_entries",
           "read_manifest", "holds_run", "snapshot", "foreign_entries", "remove_leftovers", "remove_stale_temp_files"]
