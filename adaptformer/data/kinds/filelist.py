"""Datasets given as file lists (`data.dataset: filelist`), the convention PaddleClas users
already have: for each split a text file of `relative/path label` lines, the paths relative to
data.data_dir (PaddleClas's image_root).

    data:
      dataset: filelist
      data_dir: dataset/flowers102            # the image root
      filelist: {train: train_list.txt, val: val_list.txt, test: test_list.txt, class_map: label_list.txt}

List paths are relative to data.data_dir unless absolute. `val` is optional: without it the epoch
is chosen as data.val_fraction says. `class_map` (optional, PaddleClas's class_id_map_file) holds
`id name` lines for the ids 0..k-1 and gives the class names; without it the classes are 0 up to
the training list's largest label, named class_0 ...
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

from adaptformer.data.file_lists import read_text_list
from adaptformer.data.image_files import ImageFiles
from adaptformer.data.kinds import DatasetKind
from adaptformer.errors import DataError, quoted
from adaptformer.files.opener import read_text


@dataclass
class FileListConfig:
    train: Optional[str] = None
    val: Optional[str] = None
    test: Optional[str] = None
    class_map: Optional[str] = None


def _root(data_cfg) -> str:
    if data_cfg.data_dir is None:
        raise DataError("data.data_dir must be given for data.dataset filelist: the folder the lists' paths start from")
    root = os.path.expanduser(data_cfg.data_dir)
    if not os.path.isdir(root):
        raise DataError(f"data.data_dir: {root} is not a folder; expected the image root of the file lists")
    return root


def _list_path(data_cfg, key: str) -> str:
    name = getattr(data_cfg.filelist, key)
    if name is None:
        raise DataError(f"data.filelist.{key} must be given: a file of `relative/path label` lines")
    return os.path.join(_root(data_cfg), os.path.expanduser(name))


def _class_map(path: str) -> List[str]:
    names = {}
    for number, line in enumerate(read_text(path, "text", "`id name` lines").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split(None, 1)
        if len(fields) != 2 or not fields[0].isdigit():
            raise DataError(f"{path}:{number}: expected `id name`, got {quoted(line)}")
        if int(fields[0]) in names:
            raise DataError(f"{path}:{number}: class id {fields[0]} is named twice")
        names[int(fields[0])] = fields[1]
    if sorted(names) != list(range(len(names))) or not names:
        raise DataError(f"{path}: class ids must be 0..k-1, each once; got {sorted(names)[:10]}")
    return [names[i] for i in range(len(names))]


def _class_names(data_cfg) -> List[str]:
    if data_cfg.filelist.class_map is not None:
        path = os.path.join(_root(data_cfg), os.path.expanduser(data_cfg.filelist.class_map))
        if not os.path.exists(path):
            raise DataError(f"data.filelist.class_map: {path} does not exist; expected `id name` lines")
        return _class_map(path)
    samples = read_text_list(_list_path(data_cfg, "train"), _root(data_cfg), "data.filelist.train", None, "a list")
    return [f"class_{i}" for i in range(max(label for _, label in samples) + 1)]


def _read(data_cfg, split: str, transform=None) -> ImageFiles:
    names = _class_names(data_cfg)
    path = _list_path(data_cfg, split)
    samples = read_text_list(path, _root(data_cfg), f"data.filelist.{split}", len(names),
                             f"the {len(names)} classes of data.filelist")
    return ImageFiles(samples, names, transform, data_cfg.img_size).keep(data_cfg.classes)


KINDS = [DatasetKind(
    "filelist", class_names=_class_names, read=_read, any_size=True, order=35, section=FileListConfig,
    splits=lambda cfg: ("train", "val", "test") if cfg.filelist.val is not None else ("train", "test"),
    counted_in=lambda cfg: "the classes of data.filelist")]
