"""What tuning methods attach to: the protocol a backbone implements so that every method
(adaptformer/methods/) reaches it through one mechanism, whatever the backbone.

    model.tuning_blocks()      the residual blocks, in order (a ViT's blocks; an iFormer's
                               blocks1..4 one after another); method.<m>.blocks indexes this list
    model.prompt_shape()       (width, depth, patch size) of the prompt tokens VPT inserts, or a
                               ValueError saying why the backbone has no place for them
    block.forward              x = x + mixer_branch(x); out = x + mlp_branch(norm2(x)), with the
                               adapter slot (block.adapter) joining the MLP side (adapter.join)
    block.linear_sites()       {LoRA target: LinearSite} for the Linear layers LoRA may wrap

Each backbone's block says only what its two branches compute (attention or the inception
mixer, stochastic depth, layer scale) and where its Linear layers are; the adapter wiring, the
prompt insertion and the LoRA wrapping exist once, in the method's own layer and attach function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import paddle.nn as nn


@dataclass
class LinearSite:
    """A Linear layer LoRA may wrap: `getattr(parent, attribute)`, updated on the output slice
    `span` = [start, stop) (None: every output)."""

    parent: nn.Layer
    attribute: str
    span: Optional[Tuple[int, int]] = None


def fused_qkv_sites(parent: nn.Layer, attribute: str = "qkv") -> Dict[str, LinearSite]:
    """q, k and v as thirds of a fused [dim, 3 * dim] projection's outputs."""
    dim = getattr(parent, attribute).weight.shape[0]
    return {t: LinearSite(parent, attribute, (i * dim, (i + 1) * dim)) for i, t in enumerate("qkv")}


class TunableBlock(nn.Layer):
    """A pre-norm residual block in two steps, the form both the ViT's and the iFormer's take:

        x   = x + mixer_branch(x)                     attention (ViT) / inception mixer (iFormer)
        out = x + mlp_branch(norm2(x))                no adapter
        out = adapter.join(x, norm2(x), mlp_branch(norm2(x)))    with one (models/adapter.py)

    A subclass sets norm2, mlp and drop_path and defines mixer_branch, mlp_branch and linear_sites."""

    def __init__(self):
        super().__init__()
        self.adapter = None  # an AdaptFormerAdapter once a method inserts one (key: <block>.adapter.*)

    def mixer_branch(self, x):
        raise NotImplementedError

    def mlp_branch(self, normed):
        raise NotImplementedError

    def linear_sites(self) -> Dict[str, LinearSite]:
        raise NotImplementedError

    @property
    def width(self) -> int:
        """Channels of the stream the block reads and writes."""
        return self.norm2.weight.shape[0]

    def residual_branch(self, layer: nn.Layer, x, scale=None):
        """layer(x), times a layer scale if there is one, through stochastic depth. Stochastic
        depth follows the branch: a frozen branch kept in eval mode (freeze.set_train_mode) is
        never dropped, even while an adapter beside it trains."""
        y = layer(x)
        if scale is not None:
            y = scale * y
        return self.drop_path(y) if layer.training else y

    def forward(self, x):
        x = x + self.mixer_branch(x)
        normed = self.norm2(x)
        h = self.mlp_branch(normed)
        if self.adapter is None:
            return x + h
        return self.adapter.join(x, normed, h)


class TunableModel:
    """Mixin for a backbone: the blocks methods tune and, if it has one, the place for prompts.
    A backbone without prompt tokens sets NO_PROMPTS to the reason."""

    NO_PROMPTS: Optional[str] = None
    in_chans: int = 3
    num_prefix_tokens: int = 1  # tokens before the patches that prompts go after (a class token)

    def check_input_size(self, height: int, width: Optional[int] = None) -> None:
        """Raise ValueError(reason) for an image size the backbone cannot take, the reason read after
        "model <name>" (default: it takes any)."""

    def input_shape(self, img_size: int, batch: Optional[int] = None) -> List[Optional[int]]:
        """The shape of an input batch (batch None: any): images [B, C, H, W]. A backbone that
        takes another input (a video ViT: clips [B, C, T, H, W]) says so here; export, the FLOP
        counter and the benchmark ask this instead of assuming images."""
        return [batch, self.in_chans, img_size, img_size]

    def tuning_blocks(self) -> List[TunableBlock]:
        raise NotImplementedError

    def prompt_shape(self) -> Tuple[int, int, int]:
        """(token width, number of blocks, patch size) for PromptTokens."""
        why = self.NO_PROMPTS or "it does not say where they would go (prompt_shape)"
        raise ValueError(f"{type(self).__name__} has no place for prompt tokens: {why}")

    def add_adapters(self, blocks=None, **adapter_kwargs) -> None:
        """Insert fresh AdaptFormer modules into the given blocks (indices into tuning_blocks(),
        default: all), e.g. after loading a pretrained backbone. Zero-initialised up-projections
        keep the model's output unchanged until training moves them."""
        from adaptformer.models.adapter import insert_adapters

        insert_adapters(self.tuning_blocks(), blocks, **adapter_kwargs)

    def add_prompts(self, num_tokens: int, deep: bool = True, dropout: float = 0.0) -> None:
        """Visual prompt tuning: learnable tokens after the class token, if any (see prompt.py)."""
        from adaptformer.models.prompt import PromptTokens

        if getattr(self, "prompt", None) is not None:
            raise ValueError("the model already has prompt tokens")
        width, depth, patch_size = self.prompt_shape()
        self.prompt = PromptTokens(num_tokens, width, depth, patch_size, deep=deep, dropout=dropout,
                                   prefix=self.num_prefix_tokens)


def block_indices(depth: int, blocks: Optional[List[int]], key: str) -> List[int]:
    """`blocks` (None: all of them) checked against `depth`; `key` names the setting in errors."""
    indices = list(range(depth)) if blocks is None else list(blocks)
    for i in indices:
        if not 0 <= i < depth:
            raise ValueError(f"{key}: block index {i} is out of range for depth {depth}")
    return indices
