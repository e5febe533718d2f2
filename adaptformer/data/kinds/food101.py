"""Food-101 as it is distributed (`data.dataset: food101`), one of the paper's image sets.
data.data_dir is the extracted food-101/ folder:

    food-101/meta/classes.txt           the 101 class names, one per line, in label order
    food-101/meta/train.txt, test.txt   lines `<class>/<image id>` (75,750 and 25,250 of them)
    food-101/images/<class>/<image id>.jpg

The training images are train.txt's; the test split is test.txt's. There is no validation split:
set data.val_fraction to choose the epoch on training images held out (the paper's protocol,
data.val_fraction 0, chooses it on test).
"""
from __future__ import annotations

import os
from typing import List, Tuple

from adaptformer.data.file_lists import check_files
from adaptformer.data.image_files import ImageFiles
from adaptformer.data.kinds import DatasetKind
from adaptformer.errors import DataError, quoted
from adaptformer.files.opener import read_text


def _root(data_cfg) -> str:
    if data_cfg.data_dir is None:
        raise DataError("data.data_dir must be given for data.dataset food101: the food-101/ folder holding "
                        "meta/ and images/")
    root = os.path.expanduser(data_cfg.data_dir)
    if not os.path.isfile(os.path.join(root, "meta", "classes.txt")):
        raise DataError(f"data.data_dir: {os.path.join(root, 'meta', 'classes.txt')} does not exist; expected "
                        "the food-101/ folder as distributed (meta/classes.txt, meta/train.txt, images/)")
    return root


def _lines(path: str) -> List[Tuple[int, str]]:
    """(line number, text) of the non-blank lines."""
    if not os.path.isfile(path):
        raise DataError(f"data.data_dir: {path} does not exist; expected the food-101/ folder as distributed")
    text = read_text(path, "text", "Food-101's meta lists")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def class_names(data_cfg) -> List[str]:
    names = [line for _, line in _lines(os.path.join(_root(data_cfg), "meta", "classes.txt"))]
    if len(set(names)) != len(names):
        raise DataError(f"{os.path.join(_root(data_cfg), 'meta', 'classes.txt')}: a class is named twice")
    return names


def _read(data_cfg, split: str, transform=None) -> ImageFiles:
    root, names = _root(data_cfg), class_names(data_cfg)
    label_of = {name: i for i, name in enumerate(names)}
    path = os.path.join(root, "meta", f"{split}.txt")
    samples, wheres = [], []
    for number, line in _lines(path):
        cls = line.split("/", 1)[0]
        if cls not in label_of or "/" not in line or ".." in line.split("/"):
            raise DataError(f"{path}:{number}: expected `<class>/<image id>` with a class of meta/classes.txt, "
                            f"got {quoted(line)}")
        samples.append((os.path.join(root, "images", line + ".jpg"), label_of[cls]))
        wheres.append(f"{path}:{number}")
    check_files(samples, wheres)
    return ImageFiles(samples, names, transform, data_cfg.img_size).keep(data_cfg.classes)


KINDS = [DatasetKind("food101", class_names=class_names, read=_read, any_size=True, order=50,
                     counted_in=lambda cfg: "Food-101's meta/classes.txt")]
