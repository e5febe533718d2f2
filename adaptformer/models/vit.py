"""Vision Transformer; tuning methods reach it through models/tuning.py's protocol.

Parameter names follow timm / PaddleClas (patch_embed.proj, cls_token, pos_embed,
blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm, head), so their
checkpoints map onto this model key for key.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn
from paddle.distributed.fleet.utils import recompute

from adaptformer.models.layers import Attention, DropPath, Mlp, PatchEmbed
from adaptformer.models.linear import Linear
from adaptformer.models.prompt import PromptTokens
from adaptformer.models.tuning import LinearSite, TunableBlock, TunableModel, fused_qkv_sites

_trunc_normal = nn.initializer.TruncatedNormal(std=0.02)
_zeros = nn.initializer.Constant(0.0)
_ones = nn.initializer.Constant(1.0)


class Block(TunableBlock):
    """Pre-norm Transformer block:

        x   = x + DropPath(Attn(LN1(x)))
        out = x + DropPath(MLP(LN2(x)))

    An AdaptFormer / Houlsby adapter joins the MLP side through the slot every TunableBlock has
    (models/tuning.py, wiring in models/adapter.py).
    """

    ATTENTION = Attention  # a subclass may bring its own (models/videomae.py: separate q and v biases)

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        epsilon: float = 1e-6,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=epsilon)
        self.attn = self.ATTENTION(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, epsilon=epsilon)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def mixer_branch(self, x):
        return self.residual_branch(self.attn, self.norm1(x))

    def mlp_branch(self, normed):
        return self.residual_branch(self.mlp, normed)

    def linear_sites(self) -> Dict[str, LinearSite]:
        return {
            **fused_qkv_sites(self.attn),
            "proj": LinearSite(self.attn, "proj"),
            "fc1": LinearSite(self.mlp, "fc1"),
            "fc2": LinearSite(self.mlp, "fc2"),
        }


class TransformerBase(TunableModel, nn.Layer):
    """What the image ViT and the video ViT (models/videomae.py) share: their blocks, weight
    initialisation, the classifier head, and the block loop with prompts and recomputation."""

    head_init_scale = 1.0  # the new head's weights are multiplied by this (VideoMAE's init_scale)

    @staticmethod
    def make_blocks(block, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, epsilon, drop_rate, attn_drop_rate,
                    drop_path_rate) -> nn.LayerList:
        rates = np.linspace(0.0, drop_path_rate, depth).tolist()
        return nn.LayerList([block(embed_dim, num_heads, mlp_ratio, qkv_bias, epsilon, drop_rate, attn_drop_rate,
                                   rates[i]) for i in range(depth)])

    @staticmethod
    def _init_weights(layer: nn.Layer) -> None:
        if isinstance(layer, nn.Linear):
            _trunc_normal(layer.weight)
            if layer.bias is not None:
                _zeros(layer.bias)
        elif isinstance(layer, nn.LayerNorm):
            _ones(layer.weight)
            _zeros(layer.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one (0 = features only).

        With `head_norm` the head is BatchNorm1D without affine parameters (eps 1e-6)
        followed by the Linear layer: the MAE linear-probe head that AdaptFormer's
        image and video experiments use (parameters head.1.*, statistics head.0._mean/_variance).
        """
        self.num_classes = num_classes
        if num_classes <= 0:
            self.head = nn.Identity()
            return
        linear = Linear(self.embed_dim, num_classes)
        # VideoMAE draws std 0.02 and multiplies by init_scale: the same as drawing std 0.02 * init_scale.
        nn.initializer.TruncatedNormal(std=self.head_init_std * self.head_init_scale)(linear.weight)
        _zeros(linear.bias)
        if self.head_norm:
            norm = nn.BatchNorm1D(self.embed_dim, epsilon=1e-6, weight_attr=False, bias_attr=False)
            self.head = nn.Sequential(norm, linear)
        else:
            self.head = linear

    def init_tail(self, num_classes: int, head_norm: bool, head_init_std: float, head_init_scale: float = 1.0) -> None:
        """The end of a constructor: no prompts, no recomputation, the head's settings, the weights
        initialised and the head made."""
        self.prompt: Optional[PromptTokens] = None
        self.grad_checkpointing = False
        self.head_norm, self.head_init_std, self.head_init_scale = head_norm, head_init_std, head_init_scale
        self.apply(self._init_weights)
        self.reset_classifier(num_classes)

    def run_blocks(self, x):
        """The blocks in order, prompt tokens inserted before each and taken out after the last."""
        for i, block in enumerate(self.blocks):
            if self.prompt is not None:
                x = self.prompt.insert(x, i)
            x = recompute(block, x, use_reentrant=False) if self._recompute(x) else block(x)
        if self.prompt is not None:
            x = self.prompt.remove(x)  # features keep the [prefix, patches] layout
        return x

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Keep only each block's input for the backward pass and recompute the rest
        (train.recompute): the blocks keep one tensor each plus, during the backward
        pass, one block's activations."""
        self.grad_checkpointing = enable

    def _recompute(self, x) -> bool:
        # Only where a gradient flows in: a block whose input needs none (the first
        # block after a frozen embedding) has little to keep, and Paddle's recompute
        # would run it plainly anyway.
        return self.grad_checkpointing and paddle.is_grad_enabled() and not x.stop_gradient

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def tuning_blocks(self) -> List[Block]:
        return list(self.blocks)


class VisionTransformer(TransformerBase):
    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
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
        global_pool: str = "token",
        head_norm: bool = False,
        head_init_std: float = 0.02,
    ):
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
        self.num_classes = num_classes
        self.embed_dim = self.num_features = embed_dim
        self.global_pool = global_pool
        self.in_chans = in_chans
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = self.create_parameter([1, 1, embed_dim], default_initializer=_zeros)
        self.pos_embed = self.create_parameter(
            [1, self.patch_embed.num_patches + 1, embed_dim], default_initializer=_trunc_normal
        )
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = self.make_blocks(Block, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, epsilon, drop_rate,
                                       attn_drop_rate, drop_path_rate)
        # Token pooling reads the final norm; mean pooling uses its own norm (MAE fine-tuning layout).
        self.norm = nn.LayerNorm(embed_dim, epsilon=epsilon) if global_pool == "token" else nn.Identity()
        self.fc_norm = nn.LayerNorm(embed_dim, epsilon=epsilon) if global_pool == "avg" else nn.Identity()
        self.head = nn.Identity()
        self.init_tail(num_classes, head_norm, head_init_std)

    def check_input_size(self, height: int, width: Optional[int] = None) -> None:
        """Raise ValueError for an image size the model cannot take: the position embedding
        fixes it (resize it when loading weights, model.kwargs.img_size)."""
        width = height if width is None else width
        pe = self.patch_embed
        if (height, width) != (pe.img_size, pe.img_size):
            raise ValueError(
                f"takes {pe.img_size}x{pe.img_size} images (patch {pe.patch_size}, position embedding for "
                f"{pe.grid_size}x{pe.grid_size} patches); set data.img_size: {pe.img_size} or model.kwargs.img_size: {height}"
            )

    def forward_features(self, x):
        """All tokens after the last block: [batch, 1 + num_patches, embed_dim]."""
        x = self.patch_embed(x)
        cls = self.cls_token.expand([x.shape[0], -1, -1])
        x = paddle.concat([cls, x], axis=1) + self.pos_embed
        if self.patch_embed.training:  # like stochastic depth: off when the embedding is frozen
            x = self.pos_drop(x)
        return self.norm(self.run_blocks(x))

    def forward_head(self, x, pre_logits: bool = False):
        x = x[:, 1:].mean(axis=1) if self.global_pool == "avg" else x[:, 0]
        x = self.fc_norm(x)
        return x if pre_logits else self.head(x)

    def prompt_shape(self) -> Tuple[int, int, int]:
        return self.embed_dim, len(self.blocks), self.patch_embed.patch_size
