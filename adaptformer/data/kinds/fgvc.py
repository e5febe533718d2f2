"""The FGVC benchmark's five fine-grained sets (`data.dataset: fgvc`) with VPT's split files.
data.data_dir is the dataset's root as its authors distribute it, with the split files beside:

    <root>/train.json  val.json  test.json     each {relative image path: class id}
    CUB-200-2011, NABirds: images under <root>/images/; Stanford Dogs: <root>/Images/;
    Stanford Cars, Oxford Flowers: paths relative to <root>

data.fgvc.task names the set (cub, nabirds, oxford_flowers, stanford_dogs, stanford_cars, or
VPT's names CUB, NABirds, OxfordFlowers, StanfordDogs, StanfordCars). The class ids of train.json,
sorted, become the labels 0..k-1 (k must be the set's class count); val.json and test.json may
use only those ids. Protocol (data.fgvc.protocol): final, choices on val.json and test.json tested
once; search, train.json and val.json only, so that a learning-rate search never evaluates test.json. The benchmark's transforms (Resize 256,
RandomCrop 224 + flip; Resize 256, CenterCrop 224; ImageNet mean/std) are configs/fgvc/_base_.yaml's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional

from adaptformer.data.file_lists import data_root, labelled, read_json_split
from adaptformer.data.image_files import ImageFiles
from adaptformer.data.kinds import DatasetKind
from adaptformer.errors import DataError

# task -> (class count, image folder under the root)
TASKS = {"cub": (200, "images"), "nabirds": (555, "images"), "oxford_flowers": (102, ""),
         "stanford_dogs": (120, "Images"), "stanford_cars": (196, "")}
# VPT's names and the folder names the sets are distributed under, lower-cased
ALIASES = {"cub200": "cub", "cub_200_2011": "cub", "oxfordflowers": "oxford_flowers", "flowers": "oxford_flowers",
           "oxfordflower": "oxford_flowers", "oxford-flowers": "oxford_flowers", "flowers102": "oxford_flowers",
           "stanforddogs": "stanford_dogs", "dogs": "stanford_dogs", "stanford-dogs": "stanford_dogs",
           "stanfordcars": "stanford_cars", "cars": "stanford_cars", "stanford-cars": "stanford_cars"}
# search: train.json for training, val.json for every choice, no test split (a search never evaluates
# test.json); final: the same, and test.json tested once with the epoch chosen on val.json.
PROTOCOLS = {"search": ("train", "val"), "final": ("train", "val", "test")}


@dataclass
class FgvcConfig:
    task: Optional[str] = None  # which of the five sets (required)
    protocol: str = "final"  # final (train / val / test) | search (train / val: no test split)


def _check(section: FgvcConfig, fail) -> None:
    if section.protocol not in PROTOCOLS:
        fail("protocol", f"must be one of {', '.join(PROTOCOLS)}, got {section.protocol!r}")


def task_of(data_cfg) -> str:
    name = data_cfg.fgvc.task
    if name is None:
        raise DataError(f"data.fgvc.task must name the set for data.dataset fgvc: one of {', '.join(TASKS)}")
    task = ALIASES.get(name.lower(), name.lower())
    if task not in TASKS:
        raise DataError(f"data.fgvc.task must be one of {', '.join(TASKS)} (or VPT's names), got {name!r}")
    return task


def _root(data_cfg) -> str:
    return data_root(data_cfg, "the set's root, holding train.json, val.json and test.json")


def _table(data_cfg) -> Dict[int, int]:
    """Class id -> label: train.json's ids in sorted order, checked against the set's class count."""
    task, root = task_of(data_cfg), _root(data_cfg)
    images = os.path.join(root, TASKS[task][1])
    path = os.path.join(root, "train.json")
    ids = sorted(set(read_json_split(path, images, "data.data_dir").values()))
    expected = TASKS[task][0]
    if len(ids) != expected:
        raise DataError(f"{path}: {len(ids)} class ids, but {task} has {expected} classes")
    return {cls: label for label, cls in enumerate(ids)}


def _read(data_cfg, split: str, transform=None) -> ImageFiles:
    task, root = task_of(data_cfg), _root(data_cfg)
    images = os.path.join(root, TASKS[task][1])
    path = os.path.join(root, f"{split}.json")
    samples = labelled(read_json_split(path, images, "data.data_dir"), _table(data_cfg), images, path, task)
    names = [f"class_{i}" for i in range(TASKS[task][0])]
    return ImageFiles(samples, names, transform, data_cfg.img_size).keep(data_cfg.classes)


KINDS = [DatasetKind(
    "fgvc", class_names=lambda cfg: [f"class_{i}" for i in range(TASKS[task_of(cfg)][0])], read=_read,
    splits=lambda cfg: PROTOCOLS[cfg.fgvc.protocol], any_size=True, count=lambda cfg: TASKS[task_of(cfg)][0],
    counted_in=lambda cfg: f"FGVC's {task_of(cfg)}", order=45, section=FgvcConfig, check=_check)]
