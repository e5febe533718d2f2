"""VideoMAE's Vision Transformer for clips [B, 3, T, H, W] (Tong et al., NeurIPS 2022), the backbone
of AdaptFormer's video experiments.

As in VideoMAE's fine-tuning model (MCG-NJU/VideoMAE, modeling_finetune.py):
- tubelets of tubelet_size frames x patch_size^2 pixels embedded by one Conv3D (kernel = stride);
- a fixed sinusoid position table over all (T / tubelet) x (H / p) x (W / p) tokens: a buffer, not
  a parameter, and not in the state dict;
- no class token; attention with a bias-free fused qkv plus separate q_bias and v_bias (k has none);
- mean pooling of the tokens, then fc_norm, then the head (no final norm).

Parameter names follow VideoMAE's fine-tune files (patch_embed.proj, blocks.N.{norm1, attn.qkv,
attn.q_bias, attn.v_bias, attn.proj, norm2, mlp.fc1, mlp.fc2}, fc_norm, head), so they load key
for key (weights/layouts.py also reads its pre-training files and AdaptFormer's converted ones).
Methods attach as on the image ViT: its blocks are the image ViT's Block with this attention.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from adaptformer.models.layers import Attention
from adaptformer.models.vit import Block, TransformerBase


def sinusoid_table(positions: int, dim: int) -> np.ndarray:
    """[1, positions, dim] float32: angle pos / 10000^(2 * (j // 2) / dim), sine at even j, cosine at odd
    j (the Transformer's table, as VideoMAE computes it in float64 before its float32 cast)."""
    j = np.arange(dim)
    angle = np.arange(positions, dtype=np.float64)[:, None] / np.power(10000.0, 2 * (j // 2) / dim)[None, :]
    table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return table[None].astype(np.float32)


class TubeletEmbed(nn.Layer):
    """Clip [B, C, T, H, W] -> [B, (T / t) * (H / p) * (W / p), dim] by a Conv3D with kernel = stride = (t, p, p)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, num_frames: int = 16, tubelet_size: int = 2,
                 in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        if num_frames % tubelet_size:
            raise ValueError(f"num_frames {num_frames} is not a multiple of tubelet_size {tubelet_size}")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size, self.patch_size = img_size, patch_size
        self.num_frames, self.tubelet_size = num_frames, tubelet_size
        self.grid_size = img_size // patch_size
        self.num_patches = (num_frames // tubelet_size) * self.grid_size ** 2
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3D(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x):
        if x.ndim != 5:
            raise ValueError(f"expected clips [batch, channels, frames, height, width], got shape {list(x.shape)}")
        frames, height, width = x.shape[2:]
        if (frames, height, width) != (self.num_frames, self.img_size, self.img_size):
            raise ValueError(f"clips are {frames} frames of {height}x{width} pixels but the model takes "
                             f"{self.num_frames} frames of {self.img_size}x{self.img_size}")
        return self.proj(x).flatten(2).transpose([0, 2, 1])


class VideoAttention(Attention):
    """Attention whose fused qkv has no bias of its own: q and v have learned biases, k none."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__(dim, num_heads, qkv_bias=False, attn_drop=attn_drop, proj_drop=proj_drop)
        zeros = nn.initializer.Constant(0.0)
        self.q_bias = self.create_parameter([dim], default_initializer=zeros) if qkv_bias else None
        self.v_bias = self.create_parameter([dim], default_initializer=zeros) if qkv_bias else None

    def project_qkv(self, x):
        qkv = self.qkv(x)
        if self.q_bias is None:
            return qkv
        return qkv + paddle.concat([self.q_bias, paddle.zeros_like(self.v_bias), self.v_bias])


class VideoBlock(Block):
    ATTENTION = VideoAttention


class VideoVisionTransformer(TransformerBase):
    num_prefix_tokens = 0  # no class token: prompts go first

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        epsilon: float = 1e-6,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head_norm: bool = False,
        head_init_std: float = 0.02,
        head_init_scale: float = 1.0,
        learnable_pos: bool = False,
        time_embed: bool = False,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = self.num_features = embed_dim
        self.in_chans = in_chans
        self.patch_embed = TubeletEmbed(img_size, patch_size, num_frames, tubelet_size, in_chans, embed_dim)
        # Fixed, so not persistable: VideoMAE's files do not hold it and a tuned folder need not.
        self.register_buffer("pos_table", paddle.to_tensor(sinusoid_table(self.patch_embed.num_patches, embed_dim)),
                             persistable=False)
        # VideoMAE's use_learnable_pos_emb: a learned position embedding instead (an inflated image ViT's).
        self.pos_embed = self.create_parameter([1, self.patch_embed.num_patches, embed_dim],
                                               default_initializer=nn.initializer.TruncatedNormal(std=0.02)) \
            if learnable_pos else None
        # One row per tubelet step, added to all its tokens and starting at zero (TimeSformer's time
        # embedding): an image ViT inflated to video (weights/inflate.py) repeats its position rows over
        # time, so a frozen copy of it would see a clip and its reverse alike; trained, this tells them apart.
        self.time_embed = self.create_parameter([1, num_frames // tubelet_size, embed_dim],
                                                default_initializer=nn.initializer.Constant(0.0)) \
            if time_embed else None
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = self.make_blocks(VideoBlock, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, epsilon,
                                       drop_rate, attn_drop_rate, drop_path_rate)
        self.fc_norm = nn.LayerNorm(embed_dim, epsilon=epsilon)
        self.head = nn.Identity()
        self.init_tail(num_classes, head_norm, head_init_std, head_init_scale)

    def check_input_size(self, height: int, width: Optional[int] = None) -> None:
        width = height if width is None else width
        pe = self.patch_embed
        if (height, width) != (pe.img_size, pe.img_size):
            raise ValueError(f"takes clips of {pe.img_size}x{pe.img_size} frames (its position table is fixed for "
                             f"{pe.grid_size}x{pe.grid_size} patches); set data.img_size: {pe.img_size}")

    def input_shape(self, img_size: int, batch: Optional[int] = None) -> List[Optional[int]]:
        return [batch, self.in_chans, self.patch_embed.num_frames, img_size, img_size]

    def forward_features(self, x):
        """All tokens after the last block: [batch, num_patches, embed_dim]."""
        x = self.patch_embed(x)
        x = x + (self.pos_embed if self.pos_embed is not None else self.pos_table).astype(x.dtype)
        if self.time_embed is not None:  # tokens are in time-major order: each step's grid in turn
            x = x + paddle.repeat_interleave(self.time_embed, self.patch_embed.grid_size ** 2, axis=1).astype(x.dtype)
        if self.patch_embed.training:  # as the image ViT: off when the embedding is frozen
            x = self.pos_drop(x)
        return self.run_blocks(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = self.fc_norm(x.mean(axis=1))
        return x if pre_logits else self.head(x)

    def prompt_shape(self) -> Tuple[int, int, int]:
        return self.embed_dim, len(self.blocks), self.patch_embed.patch_size
