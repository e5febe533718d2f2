"""Tuning methods. Each inserts its modules into a (pretrained) model and names
what it trains; `apply_method` then freezes everything else through `freeze`.

One module per method holds its attach function (adaptformer.py, vpt.py, lora.py; linear
and bitfit only choose what trains). They reach a backbone only through the protocol of
models/tuning.py (tuning_blocks(), the blocks' adapter slot and linear_sites(),
prompt_shape()), which the ViT and the iFormer implement; any other model gets a one-line
error, as does a method a backbone has no place for.

    method.name   inserts                                   trains (besides the head)   ViT  iFormer
    full          -                                         everything                   yes  yes
    linear        -                                         nothing else                 yes  yes
    adaptformer   s * Up(ReLU(Down(x))) beside each MLP     the adapters                 yes  yes (1)
    vpt           prompt tokens (shallow or deep)           the prompts                  yes  no (2)
    adapter       h + Up(GELU(Down(h))) after each MLP      the adapters (Houlsby)       yes  yes (1)
    lora          (alpha/r) * B A x on q/k/v/proj/fc1/fc2    the low-rank factors         yes  yes (3)
    bitfit        -                                         every bias                   yes  yes (4)

    (1) beside / after the block's whole MLP branch, outside its layer scale (models/adapter.py)
    (2) no token sequence to put prompts in: a one-line error says so
    (3) q/k/v on the attention path's fused qkv (LowMixer), fc1, fc2; no 'proj' (a 1x1 conv there)
    (4) BatchNorm biases included (models.layers.BatchNorm2D gives them their gradient)

Several methods join with '+' ("adaptformer+vpt"); config.py says which
combinations are impossible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List

import paddle.nn as nn

from .. import freeze
from ..config import MethodConfig
from .adaptformer import add_adaptformer, add_houlsby_adapters
from .lora import add_lora
from .vpt import add_prompts

HEAD = ["head"]

# name -> function(model, cfg) inserting the method's modules and returning its trainable patterns.
INSERTS: Dict[str, Callable[[nn.Layer, MethodConfig], List[str]]] = {
    "linear": lambda model, cfg: [],
    "adaptformer": add_adaptformer,
    "vpt": add_prompts,
    "adapter": add_houlsby_adapters,
    "lora": add_lora,
    "bitfit": lambda model, cfg: ["bias"],
}


@dataclass
class MethodReport:
    method: str
    trainable: List[str]  # parameter names
    per_method: Dict[str, int]  # parameters that each method's own patterns select

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v:,}" for k, v in self.per_method.items())
        return f"method {self.method}: {parts}"


def apply_method(model: nn.Layer, cfg: MethodConfig) -> MethodReport:
    names = cfg.names
    if names == ["full"]:
        if cfg.trainable:
            raise ValueError("method.trainable has no effect with method 'full' (everything trains)")
        freeze.train_all(model)
        trainable = list(freeze.learnable_parameters(model))
        return MethodReport(cfg.name, trainable, {"full": _count(model, trainable)})
    unknown = [n for n in names if n not in INSERTS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r} (known: full, {', '.join(INSERTS)})")
    patterns = {n: INSERTS[n](model, cfg) for n in names}
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
