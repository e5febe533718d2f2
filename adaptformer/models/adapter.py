"""The AdaptFormer module (Chen et al., NeurIPS 2022): a bottleneck
Linear(d->r) -> ReLU -> Dropout -> Linear(r->d), times a scale. With GELU, a
scale of 1 and the sequential position it is the Houlsby adapter.

The up-projection starts at zero, so a freshly adapted model computes exactly
the backbone's function. How it joins a block (`join`, called by every
tuning.TunableBlock, the ViT's and the iFormer's alike), with h the block's whole
MLP branch (stochastic depth and, on an iFormer, layer scale included):

    out = x + h + s * Up(Dropout(ReLU(Down(x))))        parallel, reading the stream x after
                                                        the mixer / attention (official wiring)
    out = x + h + s * Up(...(LN2(x)))                   parallel, adapter_input 'ln2'
    out = x + h + s * Up(...(h))                        sequential (Houlsby with GELU, s = 1)

The adapter branch gets neither stochastic depth nor the block's layer scale: it is a branch
of its own beside the MLP's, scaled by its own s.
"""
from __future__ import annotations

import math
from typing import Iterable, List, Optional

import paddle
import paddle.nn as nn

from adaptformer.models.linear import Linear

POSITIONS = ("parallel", "sequential")
INPUTS = ("stream", "ln2")
LAYERNORMS = ("none", "in")
# ReLU for AdaptFormer; GELU for the Houlsby adapter (the ModelScope card's variant).
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class AdaptFormerAdapter(nn.Layer):
    def __init__(
        self,
        dim: int,
        bottleneck: int = 64,
        scale: float = 0.1,
        learnable_scale: bool = True,
        dropout: float = 0.1,
        position: str = "parallel",
        adapter_input: str = "stream",
        activation: str = "relu",
        layernorm: str = "none",
    ):
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"adapter position must be one of {POSITIONS}, got {position!r}")
        if adapter_input not in INPUTS:
            raise ValueError(f"adapter input must be one of {INPUTS}, got {adapter_input!r}")
        if position == "sequential" and adapter_input != "stream":
            raise ValueError("a sequential adapter reads the MLP output; adapter_input 'ln2' applies to parallel only")
        if layernorm not in LAYERNORMS:
            raise ValueError(f"adapter layernorm must be one of {LAYERNORMS}, got {layernorm!r}")
        self.position = position
        self.adapter_input = adapter_input
        # The official code's adapter_layernorm_option "in": a LayerNorm of the adapter's own before
        # Down (V-PETL Bench's AdaptFormer recipe); "none" is the paper's default.
        self.norm = nn.LayerNorm(dim) if layernorm == "in" else None
        # Down: Kaiming-uniform with a=sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); biases and Up: zero.
        bound = 1.0 / math.sqrt(dim)
        self.down_proj = Linear(
            dim,
            bottleneck,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound)),
            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)),
        )
        if activation not in ACTIVATIONS:
            raise ValueError(f"adapter activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up_proj = Linear(
            bottleneck,
            dim,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)),
            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)),
        )
        if learnable_scale:
            self.scale = self.create_parameter([1], default_initializer=nn.initializer.Constant(scale))
        else:
            self.register_buffer("scale", paddle.to_tensor([scale], dtype="float32"), persistable=True)

    def forward(self, x):
        if self.norm is not None:
            x = self.norm(x)
        return scaled(self.up_proj(self.dropout(self.act(self.down_proj(x)))), self.scale)

    def join(self, x, normed, h):
        """The block's output from the stream x after its mixer, normed = LN2(x) and the MLP branch h."""
        if self.position == "sequential":
            return x + h + self(h)
        return x + h + self(normed if self.adapter_input == "ln2" else x)

    def extra_repr(self) -> str:
        return f"position={self.position}, input={self.adapter_input}" + (", layernorm=in" if self.norm else "")


def scaled(up, scale):
    """up * scale, computed in the scale's dtype (float32) when `up` comes in low precision under
    mixed precision: the scale's gradient sums B*N*D products, which in float16 times a loss
    scale of 2^16 is the first thing to overflow, and in bfloat16 loses most of its digits."""
    if up.dtype == scale.dtype:
        return up * scale
    with paddle.amp.auto_cast(enable=False):
        return (up.astype(scale.dtype) * scale).astype(up.dtype)


def insert_adapters(blocks: List[nn.Layer], indices: Optional[Iterable[int]] = None, **adapter_kwargs) -> None:
    """A fresh AdaptFormerAdapter, as wide as the block, in the adapter slot of each of
    `blocks[i]` for i in `indices` (default: all); nothing is inserted if one index is wrong."""
    indices = list(range(len(blocks))) if indices is None else list(indices)
    for i in indices:
        if not 0 <= i < len(blocks):
            raise ValueError(f"adapter block index {i} is out of range for depth {len(blocks)}")
        if blocks[i].adapter is not None:
            raise ValueError(f"block {i} already has an adapter")
    for i in indices:
        blocks[i].adapter = AdaptFormerAdapter(blocks[i].width, **adapter_kwargs)
