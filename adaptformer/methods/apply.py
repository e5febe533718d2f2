"""apply_method: insert the chosen methods' modules (registry.py) and freeze everything else
through `freeze`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List

import paddle.nn as nn

from adaptformer import freeze
from adaptformer.methods.registry import METHODS

HEAD = ["head"]


@dataclass
class MethodReport:
    method: str
    trainable: List[str]  # parameter names
    per_method: Dict[str, int]  # parameters that each method's own patterns select

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v:,}" for k, v in self.per_method.items())
        return f"method {self.method}: {parts}"


def apply_method(model: nn.Layer, cfg) -> MethodReport:
    names = cfg.names
    if names == ["full"]:
        if cfg.trainable:
            raise ValueError("method.trainable has no effect with method 'full' (everything trains)")
        freeze.train_all(model)
        trainable = list(freeze.learnable_parameters(model))
        return MethodReport(cfg.name, trainable, {"full": _count(model, trainable)})
    unknown = [n for n in names if n not in METHODS or METHODS[n].attach is None]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r} (known: {', '.join(METHODS)})")
    patterns = {n: METHODS[n].attach(model, cfg) for n in names}
    trainable = freeze.only_train(model, [p for ps in patterns.values() for p in ps] + HEAD + list(cfg.trainable))
    head = freeze.matching_parameters(model, HEAD)
    per_method = {
        n: _count(model, [p for p in freeze.matching_parameters(model, ps) if p not in head])
        for n, ps in patterns.items()
        if ps
    }
    per_method["head"] = _count(model, head)
    return MethodReport(cfg.name, trainable, per_method)


def _count(model: nn.Layer, names: List[str]) -> int:
    params = dict(model.named_parameters())
    return sum(math.prod(params[n].shape) for n in names)  # from shapes: a lazily built model has no values yet
