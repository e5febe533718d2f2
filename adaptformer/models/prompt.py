"""Visual prompt tuning's learnable tokens (Jia et al., ECCV 2022).

They sit after the class token (a ViT) or first (a video ViT, which has none) and before the
patch tokens: `prefix` tokens stay in front of them. Shallow: one set,
inserted before the first block. Deep: a fresh set before every block,
replacing the previous block's prompt outputs. Initialised uniformly in
+-sqrt(6 / (3 * patch_size**2 + dim)), as in VPT.
"""
from __future__ import annotations

import math

import paddle
import paddle.nn as nn


class PromptTokens(nn.Layer):
    def __init__(self, num_tokens: int, dim: int, depth: int, patch_size: int, deep: bool = True, dropout: float = 0.0,
                 prefix: int = 1):
        super().__init__()
        self.num_tokens = num_tokens
        self.prefix = prefix
        self.deep = deep
        bound = math.sqrt(6.0 / (3 * patch_size * patch_size + dim))
        self.tokens = self.create_parameter(
            [depth if deep else 1, num_tokens, dim], default_initializer=nn.initializer.Uniform(-bound, bound)
        )
        self.dropout = nn.Dropout(dropout)

    def insert(self, x, block_index: int):
        """x = [prefix, (old prompts,) patches] -> [prefix, prompts of this block, patches]."""
        if block_index > 0 and not self.deep:
            return x
        p = self.prefix
        rest = x[:, p + self.num_tokens:] if block_index > 0 else x[:, p:]
        prompts = self.dropout(self.tokens[block_index]).unsqueeze(0).expand([x.shape[0], -1, -1])
        return paddle.concat(([x[:, :p]] if p else []) + [prompts, rest], axis=1)

    def remove(self, x):
        p = self.prefix
        rest = x[:, p + self.num_tokens:]
        return paddle.concat([x[:, :p], rest], axis=1) if p else rest

    def extra_repr(self) -> str:
        return f"num_tokens={self.num_tokens}, deep={self.deep}, prefix={self.prefix}"
