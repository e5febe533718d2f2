"""The dataset kinds (`data.dataset`): every module of this package that defines `KINDS` adds
them, and owns everything about them: how their files are found and checked, their class names,
the splits they bring and how one is read, and whether their images need resizing. Adding a
format is adding a module. Importing this needs no Paddle: config validation reads the names.

    data.dataset        reads                                          its splits        class names
    cifar10, cifar100   the original python archive (cifar.py)         train, test       the archive's
    folder              data_dir/train/<class>/, val|test/ (folder.py)  train, test       the folder names
    filelist            `path label` lists, PaddleClas style            train, [val,] test  class map or class_0 ...
    vtab                a VTAB-1k task as NOAH writes it (vtab.py)      train, val, test  class_0 ...
    fgvc                VPT's {train,val,test}.json (fgvc.py)          train, val, test  class_0 ...
    synthetic           generated striped images (synthetic.py)        train, test       class_0 ...
    food101, svhn       Food-101's meta/ lists, SVHN's .mat files      train, test       their classes, digits
    video               `path label` lists of video files (video.py)   train, [val,] test  class_0 ...

A kind may own a config section, `data.<kind>.*` (its dataclass in `section`), and the rule of
which epoch's weights its protocol tests (`choice`: VTAB-1k's final run takes the last epoch).

A kind reads its own splits; data/splits.py makes the rest of them the same way for all kinds:
a validation split carved from "train" (data.val_fraction), class subsets (data.classes), the
split evaluated every epoch.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from adaptformer.errors import DataError


@dataclass(frozen=True)
class DatasetKind:
    name: str
    # data config -> every class name, in label order (may read the dataset's files)
    class_names: Callable[[Any], List[str]]
    # (data config, split, transform) -> a map-style dataset of (transform(RGB PIL image), 0-d int64
    # label) for a split in `splits`, restricted to data.classes and relabelled 0..k-1 in that order
    read: Callable[[Any, str, Optional[Callable]], Any]
    # "val" too when the format brings a validation split; or data config -> the splits
    splits: Union[Tuple[str, ...], Callable[[Any], Tuple[str, ...]]] = ("train", "test")
    any_size: bool = False  # images come in any size: the default transform always resizes them
    # data config -> the class count without reading images (default: len(class_names))
    count: Optional[Callable[[Any], int]] = None
    # data config -> what the class ids count, for messages (default: the data.dataset name)
    counted_in: Optional[Callable[[Any], str]] = None
    order: int = 100  # where it is listed
    section: Optional[type] = None  # the dataclass of data.<name>.*, its own settings
    # (section, fail(key, message)) -> None: the section's rules, checked when the config loads
    check: Optional[Callable[[Any, Callable[[str, str], None]], None]] = None
    # data config -> "last" when the protocol tests the last epoch's weights, None: the best on the eval split
    choice: Optional[Callable[[Any], Optional[str]]] = None
    # (data config, train) -> the kind's own transform, used instead of data/transforms.py's image ones
    transforms: Optional[Callable[[Any, bool], Callable]] = None
    # data config -> the shape of one sample (default: an image, [3, img_size, img_size])
    shape: Optional[Callable[[Any], Tuple[int, ...]]] = None

    def splits_of(self, data_cfg) -> Tuple[str, ...]:
        return self.splits(data_cfg) if callable(self.splits) else self.splits

    def classes_of(self, data_cfg) -> str:
        return self.counted_in(data_cfg) if self.counted_in is not None else self.name

    def num_classes(self, data_cfg) -> int:
        return self.count(data_cfg) if self.count is not None else len(self.class_names(data_cfg))


def _discover() -> Dict[str, DatasetKind]:
    package = importlib.import_module(__package__)
    kinds = []
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            kinds += getattr(importlib.import_module(f"{__package__}.{info.name}"), "KINDS", [])
    return {k.name: k for k in sorted(kinds, key=lambda k: (k.order, k.name))}


KINDS: Dict[str, DatasetKind] = _discover()


def kind_of(data_cfg) -> DatasetKind:
    """The kind data.dataset names; a one-line DataError for any other value."""
    kind = KINDS.get(data_cfg.dataset)
    if kind is None:
        raise DataError(f"data.dataset must be one of {', '.join(KINDS)}, got {data_cfg.dataset!r}")
    return kind


def sample_shape(data_cfg) -> Tuple[int, ...]:
    """The shape of one sample of data.dataset: an image [3, H, W], or what the kind says (a clip)."""
    kind = KINDS.get(getattr(data_cfg, "dataset", None))  # a loader of an unregistered dataset: images
    return kind.shape(data_cfg) if kind is not None and kind.shape is not None else (3, data_cfg.img_size,
                                                                                      data_cfg.img_size)
