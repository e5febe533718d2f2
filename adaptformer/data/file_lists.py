"""Lists of labelled images, as the benchmarks ship them: text lines `relative/path label`
(VTAB-1k's train800.txt, PaddleClas's train_list.txt) or a JSON object {relative path: label}
(VPT's FGVC splits). Every rule is checked when the list is read, before any training, with a
one-line error naming the list and its line: the list exists, each line has a path and an
integer label, the label is a class of the task, the path stays under the image root and names
an existing file.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

from adaptformer.errors import DataError, quoted
from adaptformer.files import read_json
from adaptformer.files.opener import read_text

Samples = List[Tuple[str, int]]  # (absolute image path, label)


def data_root(data_cfg, holds: str) -> str:
    """data.data_dir, which must name a folder; `holds` says what it should hold, for the messages."""
    if data_cfg.data_dir is None:
        raise DataError(f"data.data_dir must be given for data.dataset {data_cfg.dataset}: {holds}")
    root = os.path.expanduser(data_cfg.data_dir)
    if not os.path.isdir(root):
        raise DataError(f"data.data_dir: {root} is not a folder; expected {holds}")
    return root


def _require(path: str, key: str, expected: str) -> None:
    if not os.path.exists(path):
        raise DataError(f"{key}: {path} does not exist; expected {expected}")


def _image_path(root: str, relative: str, where: str, what: str = "image") -> str:
    if os.path.isabs(relative) or ".." in relative.replace("\\", "/").split("/"):
        raise DataError(f"{where}: {what} path {quoted(relative)} must be relative to {root} and stay under it")
    return os.path.join(root, relative)


def check_files(samples: Samples, wheres: List[str], what: str = "image") -> None:
    missing = [(where, path) for where, (path, _) in zip(wheres, samples) if not os.path.isfile(path)]
    if missing:
        where, path = missing[0]
        more = f" (and {len(missing) - 1} more of {len(samples)})" if len(missing) > 1 else ""
        raise DataError(f"{where}: {what} {quoted(path)} does not exist{more}")


def _check_label(label: int, num_classes: Optional[int], where: str, task: str) -> None:
    if label < 0 or (num_classes is not None and label >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise DataError(f"{where}: label {label} is outside {bound} for {task}")


def read_text_list(path: str, root: str, key: str, num_classes: Optional[int], task: str,
                   what: str = "image") -> Samples:
    """The `relative/path label` lines of `path` (blank lines skipped; the label is the last field,
    so a path may hold spaces), files (images, or videos: `what`) under `root`."""
    _require(path, key, "a list of `relative/path label` lines")
    samples, wheres = [], []
    for number, line in enumerate(read_text(path, "text", "a list of `relative/path label` lines").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.strip().rsplit(None, 1)
        try:
            relative, label = fields[0], int(fields[1])
        except (IndexError, ValueError):
            raise DataError(f"{where}: expected `relative/path label` with an integer label, got {quoted(line)}") from None
        _check_label(label, num_classes, where, task)
        samples.append((_image_path(root, relative, where, what), label))
        wheres.append(where)
    if not samples:
        raise DataError(f"{path}: the list names no {what}; expected `relative/path label` lines")
    check_files(samples, wheres, what)
    return samples


def read_json_split(path: str, root: str, key: str) -> Dict[str, int]:
    """{relative image path: class id} of a VPT-style split file, checked for types and paths (the
    ids are mapped to labels by the caller)."""
    _require(path, key, "a JSON object {relative image path: class id}")
    doc = read_json(path, "json", "a JSON object {relative image path: class id}")
    for relative, cls in doc.items():
        if not isinstance(cls, int) or isinstance(cls, bool):
            raise DataError(f"{path}: image {quoted(relative)} has class {cls!r}; expected an integer id")
        _image_path(root, relative, path)
    if not doc:
        raise DataError(f"{path}: the split names no image")
    return doc


def labelled(doc: Dict[str, int], table: Dict[int, int], root: str, path: str, task: str) -> Samples:
    """The images of a JSON split with their ids mapped through `table` (id -> label)."""
    samples, wheres = [], []
    for relative, cls in doc.items():
        if cls not in table:
            raise DataError(f"{path}: image {quoted(relative)} has class id {cls}, which the training split "
                            f"of {task} does not have")
        samples.append((os.path.join(root, relative), table[cls]))
        wheres.append(path)
    check_files(samples, wheres)
    return samples
