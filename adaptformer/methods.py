"""Tuning methods: each inserts its modules into a (pretrained) model, then
chooses what trains through `freeze`. Returns the trainable parameter names."""
from __future__ import annotations

from typing import Callable, Dict, List

import paddle.nn as nn

from . import freeze
from .config import MethodConfig

HEAD = ["head"]


def _full(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    if cfg.trainable:
        raise ValueError("method.trainable has no effect with method 'full' (everything trains)")
    freeze.train_all(model)
    return [n for n, _ in model.named_parameters()]


def _linear(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    return freeze.only_train(model, HEAD + list(cfg.trainable))


def _adaptformer(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    model.add_adapters(
        blocks=cfg.blocks,
        bottleneck=cfg.bottleneck,
        scale=cfg.scale,
        learnable_scale=cfg.learnable_scale,
        dropout=cfg.dropout,
        position=cfg.position,
        adapter_input=cfg.adapter_input,
    )
    return freeze.only_train(model, ["adapter"] + HEAD + list(cfg.trainable))


METHODS: Dict[str, Callable[[nn.Layer, MethodConfig], List[str]]] = {
    "full": _full,
    "linear": _linear,
    "adaptformer": _adaptformer,
}


def apply_method(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    if cfg.name not in METHODS:
        raise ValueError(f"unknown method '{cfg.name}' (known: {', '.join(METHODS)})")
    return METHODS[cfg.name](model, cfg)
