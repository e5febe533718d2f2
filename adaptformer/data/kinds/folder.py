"""Image-folder datasets (`data.dataset: folder`).

Layout under data.data_dir, one folder per class, the same class folders in
both splits (images may sit in sub-folders of a class folder):

    data_dir/train/<class_name>/*.jpg|jpeg|png|ppm|bmp|pgm|tif|tiff|webp
    data_dir/val/<class_name>/...     (data.eval_split: val, the default)
    data_dir/test/<class_name>/...    (only with data.eval_split: test)

Labels are the positions of the class folder names in sorted order (folders
whose names start with "." are skipped); data.classes picks and relabels them by
those ids, as for CIFAR, and class_names(cfg) lists them. Every image is loaded
as an RGB PIL image by adaptformer/data/images.py (EXIF orientation applied;
grayscale, RGBA, palette and CMYK converted; the alpha channel dropped; 16-bit
images scaled to 8 bits; more than MAX_PIXELS pixels refused).

The paper's other image datasets as folders (no download code here):
- SVHN (train_32x32.mat / test_32x32.mat): write X[:, :, :, i] as a PNG into
  train|test/<label>/ with label y[i] % 10 (the .mat files store digit 0 as
  10); the class folders 0..9 then sort as the digits. Use data.eval_split: test.
Food-101 is read as distributed (data.dataset: food101, kinds/food101.py); file lists of any
other set as data.dataset: filelist, VTAB-1k and FGVC as vtab and fgvc.
"""
from __future__ import annotations

import os
from typing import Any, Callable, List, Optional

import numpy as np

from adaptformer.data.image_files import ImageFiles
from adaptformer.data.images import is_hidden, walk_images
from adaptformer.data.kinds import DatasetKind
from adaptformer.errors import DataError

EVAL_SPLITS = ("val", "test")
# The file types Paddle's DatasetFolder reads (paddle.vision.datasets.folder.IMG_EXTENSIONS).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _root(data_cfg) -> str:
    if data_cfg.data_dir is None:
        raise DataError(
            "data.data_dir must be given for data.dataset folder: a folder holding train/<class_name>/ "
            f"and {data_cfg.eval_split}/<class_name>/ image folders"
        )
    if data_cfg.data_file is not None:
        raise DataError(
            f"data.data_file is for the CIFAR archives; data.dataset folder reads data.data_dir, "
            f"got data.data_file {data_cfg.data_file}"
        )
    root = os.path.expanduser(data_cfg.data_dir)
    if not os.path.isdir(root):
        what = "is a file, not a folder" if os.path.exists(root) else "does not exist"
        raise DataError(f"data.data_dir: {root} {what}; expected a folder holding train/ and {data_cfg.eval_split}/")
    return root


def split_dir(data_cfg, split: str) -> str:
    """The folder of `split` ("train" | "eval") under data.data_dir, checked to exist."""
    root = _root(data_cfg)
    if split == "train":
        key, name = "data.data_dir", "train"
    else:
        key, name = "data.eval_split", data_cfg.eval_split
        if name not in EVAL_SPLITS:
            raise DataError(f"data.eval_split must be one of {', '.join(EVAL_SPLITS)}, got {name!r}")
    path = os.path.join(root, name)
    if not os.path.isdir(path):
        hint = ""
        others = [s for s in EVAL_SPLITS if s != name and os.path.isdir(os.path.join(root, s))]
        if split == "eval" and others:
            hint = f" (there is {others[0]}/: set data.eval_split: {others[0]})"
        raise DataError(f"{key}: {path} not found; expected the {split} split as {path}/<class_name>/<images>{hint}")
    return path


def _class_folders(path: str) -> List[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not is_hidden(e.name))


def folder_class_names(data_cfg) -> List[str]:
    """All class names (the train split's class folders, sorted), in label order."""
    path = split_dir(data_cfg, "train")
    names = _class_folders(path)
    if not names:
        raise DataError(f"data.data_dir: {path} has no class folders; expected {path}/<class_name>/<images>")
    return names



class ClassFolder(ImageFiles):
    """The images under root/<class_name>/ (sub-folders included), labelled by the sorted class
    folder names; hidden folders are not classes. Paddle's DatasetFolder follows folder links
    without end (a link to "." lists a class 41 times) and keeps hidden files, so the walk is
    images.walk_images, the rule prediction uses too."""

    def __init__(self, root: str, transform: Optional[Callable] = None, img_size: int = 32):
        names = _class_folders(root)
        samples = [(path, label) for label, name in enumerate(names)
                   for path in walk_images(os.path.join(root, name), IMG_EXTENSIONS)]
        super().__init__(samples, names, transform, img_size)
        self.root = root


def load_folder(data_cfg, split: str, transform: Optional[Callable[[Any], Any]] = None) -> ClassFolder:
    """The `split` ("train" | "eval") images of data.data_dir, restricted to
    data.classes and relabelled 0..k-1 in that order."""
    names = folder_class_names(data_cfg)
    path = split_dir(data_cfg, split)
    if split == "eval":
        train_path = split_dir(data_cfg, "train")
        found = _class_folders(path)
        if found != names:
            only_train = sorted(set(names) - set(found))
            only_eval = sorted(set(found) - set(names))
            raise DataError(
                f"data.eval_split: {path} and {train_path} must hold the same class folders; "
                f"only in train: {only_train}, only in {data_cfg.eval_split}: {only_eval}"
            )
    extensions = ", ".join(IMG_EXTENSIONS)
    ds = ClassFolder(path, transform=transform, img_size=data_cfg.img_size)
    counts = np.bincount(np.asarray(ds.targets, dtype=np.int64), minlength=len(names))
    empty = [os.path.join(path, n) for n, c in zip(names, counts) if c == 0]
    if empty:
        more = f" and {len(empty) - 1} more" if len(empty) > 1 else ""
        raise DataError(f"{empty[0]}{more}: class folder with no images (looked for {extensions})")
    return ds.keep(data_cfg.classes)


def _read(data_cfg, split: str, transform: Optional[Callable[[Any], Any]] = None) -> ClassFolder:
    return load_folder(data_cfg, "train" if split == "train" else "eval", transform)


KINDS = [DatasetKind("folder", class_names=folder_class_names, read=_read, any_size=True,
                     counted_in=lambda cfg: f"the class folders of {cfg.data_dir}", order=30)]
