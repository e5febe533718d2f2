"""Choosing what trains: per-parameter `stop_gradient`, by name patterns.

A pattern is a regular expression matched against whole dot-separated parts of a
parameter's name: "adapter" matches blocks.3.adapter.up_proj.weight, "head"
matches head.weight, "bias" matches every *.bias, r"blocks\\.11" matches the
last block of a ViT-B. (Setting stop_gradient on a Layer object freezes nothing
in Paddle; it has to be set on each parameter.)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, List, Sequence

import paddle.nn as nn


def _matcher(pattern: str):
    return re.compile(rf"(?:^|\.)(?:{pattern})(?:\.|$)")


def name_matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether a dotted name matches any pattern, in the sense above."""
    return any(_matcher(p).search(name) for p in patterns)


def _statistics(model: nn.Layer) -> set:
    # Paddle keeps BatchNorm running statistics as parameters (not buffers); they are
    # updated by the forward pass and must never be handed to an optimizer.
    return {
        id(getattr(layer, name))
        for layer in model.sublayers(include_self=True)
        if isinstance(layer, (nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.SyncBatchNorm, nn.BatchNorm))
        for name in ("_mean", "_variance")
        if getattr(layer, name, None) is not None
    }


def learnable_parameters(model: nn.Layer) -> dict:
    """Name -> parameter for every parameter gradients can train (BatchNorm statistics left out)."""
    stats = _statistics(model)
    return {n: p for n, p in model.named_parameters() if id(p) not in stats}


def matching_parameters(model: nn.Layer, patterns: Iterable[str]) -> List[str]:
    return [n for n in learnable_parameters(model) if name_matches(n, patterns)]


def only_train(model: nn.Layer, patterns: Sequence[str]) -> List[str]:
    """Freeze every parameter except those matching a pattern; return the trainable names.

    A pattern that matches nothing is an error: a typo must not silently freeze
    what was meant to train.
    """
    names = learnable_parameters(model)
    for p in patterns:
        if not matching_parameters(model, [p]):
            raise ValueError(f"trainable pattern {p!r} matches no parameter of {type(model).__name__}")
    trainable = set(matching_parameters(model, patterns))
    for n, param in names.items():
        param.stop_gradient = n not in trainable
    return [n for n in names if n in trainable]


def train_all(model: nn.Layer) -> None:
    for p in learnable_parameters(model).values():
        p.stop_gradient = False


def trainable_named_parameters(model: nn.Layer) -> dict:
    """Name -> parameter for what an optimizer should see: frozen ones carry no optimizer state."""
    return {n: p for n, p in model.named_parameters() if not p.stop_gradient}


def trainable_parameters(model: nn.Layer) -> list:
    return list(trainable_named_parameters(model).values())


def frozen_sublayers(model: nn.Layer) -> List[str]:
    """Names of the outermost sub-layers whose learnable parameters are all frozen: set_train_mode
    keeps them, and everything below them, in eval mode. A layer with only statistics (an
    affine-free BatchNorm head) or none (a dropout) follows its parent."""
    stats = _statistics(model)
    frozen: List[str] = []
    for name, layer in model.named_sublayers():
        if any(name.startswith(f + ".") for f in frozen):
            continue
        params = [p for p in layer.parameters() if id(p) not in stats]
        if params and all(p.stop_gradient for p in params):
            frozen.append(name)
    return frozen


def set_train_mode(model: nn.Layer) -> None:
    """model.train(), except that sub-layers holding no trainable parameter run in
    eval mode: dropout inside a frozen attention or MLP stays off (as VPT keeps
    its frozen encoder in eval), while an adapter's own dropout is active."""
    model.train()
    layers = dict(model.named_sublayers())
    for name in frozen_sublayers(model):
        layers[name].eval()  # also every layer below it, e.g. the dropouts of a frozen Mlp


@dataclass
class ParameterSummary:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    @property
    def trainable_mb(self) -> float:
        # float32 bytes in MiB, the unit Paddle's summary calls "MB".
        return self.trainable * 4 / 2**20

    def __str__(self) -> str:
        return (
            f"trainable {self.trainable:,} / {self.total:,} parameters "
            f"({self.percent:.2f} %, {self.trainable_mb:.2f} MB)"
        )


def summary(model: nn.Layer, verbose: bool = False) -> ParameterSummary:
    total = trainable = 0
    for p in learnable_parameters(model).values():
        count = math.prod(p.shape)  # from the shape: a lazily built model (paddle.LazyGuard) has no values yet
        total += count
        if not p.stop_gradient:
            trainable += count
    result = ParameterSummary(trainable, total)
    if verbose:
        print(result)
    return result
