"""Datasets driven by `DataConfig`: one module per kind in data/kinds/ (CIFAR-10/100 archives,
image folders, a synthetic set), their splits made the same way for all (splits.py), and the
transforms (transforms.py).

    from adaptformer.data import build_dataset
    train = build_dataset(cfg.data, "train")   # "train" | "val" | "test" | "eval"

The names below load Paddle on first use; importing the package does not.
"""
from adaptformer.data.normalization import (  # noqa: F401
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    NORMALIZATIONS,
)
from adaptformer.errors import DataError  # noqa: F401

_LAZY = {
    "build_dataset": "adaptformer.data.splits",
    "class_names": "adaptformer.data.splits",
    "epoch_choice": "adaptformer.data.splits",
    "eval_split": "adaptformer.data.splits",
    "has_test": "adaptformer.data.splits",
    "num_classes": "adaptformer.data.splits",
    "build_transforms": "adaptformer.data.transforms",
    "SyntheticImages": "adaptformer.data.kinds.synthetic",
}
__all__ = ["DataError", *_LAZY, "IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD", "NORMALIZATIONS"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
