"""VTAB-1k tasks (`data.dataset: vtab`), in the layout NOAH's get_vtab1k.py writes and V-PETL
Bench reads. data.data_dir is one task's folder:

    <vtab-1k>/<task>/train800.txt  val200.txt  train800val200.txt  test.txt
    <vtab-1k>/<task>/images/...    (each list line: `images/train800/000000.jpg 7`)

The task is data.vtab.task, else the folder's name; its class count comes from the table below
(the 19 tasks, under the names the repositories use), or from data.vtab.num_classes for a task
not in it. data.vtab.protocol:
  search  train800 for training, val200 for every choice (epoch, learning rate); no test split, so
          a search never evaluates test.txt
  final   train800val200 for training, test.txt tested once with the last epoch's weights (no choice
          on test; train.select_epoch: best picks the best test epoch instead, V-PETL Bench's habit,
          and the results say "epoch chosen on test")
The benchmarks' preprocessing, Resize((224, 224)) without crop and ImageNet mean/std with no
augmentation, is configs/vtab/_base_.yaml's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from adaptformer.data.file_lists import data_root, read_text_list
from adaptformer.data.image_files import ImageFiles
from adaptformer.data.kinds import DatasetKind
from adaptformer.errors import DataError

GROUPS = {
    "natural": {"cifar": 100, "caltech101": 102, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37,
                "svhn": 10, "sun397": 397},
    "specialized": {"patch_camelyon": 2, "eurosat": 10, "resisc45": 45, "diabetic_retinopathy": 5},
    "structured": {"clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4, "dsprites_loc": 16,
                   "dsprites_ori": 16, "smallnorb_azi": 18, "smallnorb_ele": 9},
}
TASKS = {task: n for group in GROUPS.values() for task, n in group.items()}
ALIASES = {"cifar100": "cifar", "oxford_pet": "oxford_iiit_pet", "caltech": "caltech101",
           "oxford_flowers": "oxford_flowers102", "flowers102": "oxford_flowers102", "sun": "sun397",
           "camelyon": "patch_camelyon", "retinopathy": "diabetic_retinopathy", "resisc": "resisc45",
           "clevr_count_all": "clevr_count", "clevr_closest_object_distance": "clevr_dist",
           "dsprites_location": "dsprites_loc", "dsprites_orientation": "dsprites_ori",
           "smallnorb_azimuth": "smallnorb_azi", "smallnorb_elevation": "smallnorb_ele"}
LISTS = {"search": {"train": "train800.txt", "val": "val200.txt"},
         "final": {"train": "train800val200.txt", "test": "test.txt"}}


@dataclass
class VtabConfig:
    task: Optional[str] = None  # a VTAB-1k task name or alias; None = data.data_dir's folder name
    num_classes: Optional[int] = None  # for a task not in the table (a miniature's own); else checked against it
    protocol: str = "search"  # search (train800 / val200 / test) | final (train800val200 / test, last epoch)


def _check(section: VtabConfig, fail) -> None:
    if section.protocol not in LISTS:
        fail("protocol", f"must be one of {', '.join(LISTS)}, got {section.protocol!r}")
    if section.num_classes is not None and section.num_classes < 1:
        fail("num_classes", f"must be >= 1, got {section.num_classes}")


def task_of(data_cfg) -> str:
    """The canonical task name: data.vtab.task or the folder's name, through the aliases."""
    name = data_cfg.vtab.task or os.path.basename(os.path.normpath(_root(data_cfg)))
    return ALIASES.get(name.lower(), name.lower())


def _root(data_cfg) -> str:
    return data_root(data_cfg, "one task's folder of VTAB-1k, holding train800.txt, val200.txt, "
                               "train800val200.txt and test.txt")


def task_classes(data_cfg) -> int:
    task, given = task_of(data_cfg), data_cfg.vtab.num_classes
    known = TASKS.get(task)
    if known is None and given is None:
        raise DataError(f"data.vtab.task {task!r} is not one of VTAB-1k's 19 tasks ({', '.join(TASKS)}); "
                        "for another task set data.vtab.num_classes")
    if known is not None and given is not None and given != known:
        raise DataError(f"data.vtab.num_classes is {given}, but VTAB-1k's {task} has {known} classes")
    return known if known is not None else given


def _read(data_cfg, split: str, transform=None) -> ImageFiles:
    root, n, task = _root(data_cfg), task_classes(data_cfg), task_of(data_cfg)
    name = LISTS[data_cfg.vtab.protocol][split]
    samples = read_text_list(os.path.join(root, name), root, "data.data_dir", n, f"VTAB-1k's {task} ({n} classes)")
    names = [f"class_{i}" for i in range(n)]
    return ImageFiles(samples, names, transform, data_cfg.img_size).keep(data_cfg.classes)


KINDS = [DatasetKind(
    "vtab", class_names=lambda cfg: [f"class_{i}" for i in range(task_classes(cfg))], read=_read,
    splits=lambda cfg: tuple(LISTS[cfg.vtab.protocol]), any_size=True, count=task_classes,
    counted_in=lambda cfg: f"VTAB-1k's {task_of(cfg)}", order=40, section=VtabConfig, check=_check,
    choice=lambda cfg: "last" if cfg.vtab.protocol == "final" else None)]
