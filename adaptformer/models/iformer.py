"""Inception Transformer (iFormer): Si, Yu, Zhou, Wang, Yan, "Inception Transformer", NeurIPS 2022.

A four-stage hierarchical backbone whose token mixer splits the channels of every block
in two: a high-frequency part mixed locally (a max-pool path and a depthwise-convolution
path) and a low-frequency part mixed globally (self-attention on an average-pooled map,
upsampled back). The share of the attention path grows with depth ("frequency ramp").

The structure, the parameter names and every numerical choice follow the official PyTorch
implementation (sail-sg/iFormer, models/inception_transformer.py), so its released
checkpoints (iformer_small.pth, ...) load key for key with `load_pretrained` (PyTorch
Linear weights transposed, BatchNorm statistics renamed: the timm layout of
adaptformer/weights/layouts.py):

    patch_embed.{proj1,norm1,proj2,norm2}        stem: 3x3/2 conv, BN, GELU, 3x3/2 conv, BN
    pos_embed{1..4}        [1, g, g, C]          one learned embedding per stage (NHWC)
    patch_embed{2..4}.{proj,norm}                3x3/2 conv + BN between stages
    blocks{1..4}.N.norm1 / norm2                 LayerNorm (eps 1e-6)
    blocks{s}.N.attn.high_mixer.{conv1,proj1,proj2}
    blocks{s}.N.attn.low_mixer.qkv
    blocks{s}.N.attn.{conv_fuse,proj}
    blocks{s}.N.mlp.{fc1,fc2}
    blocks{3,4}.N.layer_scale_{1,2}              only in stages 3 and 4
    norm, head                                   LayerNorm, mean over tokens, Linear

Inside the stages tokens are kept as an NHWC map [batch, H, W, C] (LayerNorm and the MLP
act on the last axis); the mixer works in NCHW.

Input sizes: the position embeddings are interpolated (bilinear, half-pixel centres, no
antialiasing) to any other grid, as the official model does. Stages 1 and 2 pool by 2
and upsample by 2, so their grids must be even: square sizes that are multiples of 16
(32 for CIFAR, 224, 384, ...) always work. Unlike the official code, non-square inputs
are accepted too (the official LowMixer reshapes its tokens to a square).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from adaptformer.models.layers import BatchNorm2D, DropPath, Mlp
from adaptformer.models.linear import Linear
from adaptformer.models.tuning import LinearSite, TunableBlock, TunableModel, fused_qkv_sites

_trunc_normal = nn.initializer.TruncatedNormal(std=0.02)
_zeros = nn.initializer.Constant(0.0)
_ones = nn.initializer.Constant(1.0)

LN_EPS = 1e-6
# Average-pooling factor of the attention path per stage (the official model fixes these).
POOL_SIZES = (2, 2, 1, 1)
# Stages whose blocks carry layer scale when `use_layer_scale` (the official model: 3 and 4 only).
LAYER_SCALE_STAGES = (2, 3)


def _to_nchw(x):
    return x.transpose([0, 3, 1, 2])


def _to_nhwc(x):
    return x.transpose([0, 2, 3, 1])


def _halve(n: int) -> int:
    """Output size of a 3x3 convolution with stride 2 and padding 1."""
    return (n + 1) // 2


class FirstPatchEmbed(nn.Layer):
    """Stem: image [B, 3, H, W] -> NHWC map at 1/4 resolution through two strided 3x3 convolutions."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        mid = embed_dim // 2
        self.proj1 = nn.Conv2D(in_chans, mid, 3, stride=2, padding=1)
        self.norm1 = BatchNorm2D(mid)
        self.gelu1 = nn.GELU()
        self.proj2 = nn.Conv2D(mid, embed_dim, 3, stride=2, padding=1)
        self.norm2 = BatchNorm2D(embed_dim)

    def forward(self, x):
        x = self.gelu1(self.norm1(self.proj1(x)))
        return _to_nhwc(self.norm2(self.proj2(x)))


class PatchEmbed(nn.Layer):
    """Between stages: NHWC map -> NHWC map at half the resolution (3x3 stride-2 conv, BatchNorm)."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2D(in_chans, embed_dim, 3, stride=2, padding=1)
        self.norm = BatchNorm2D(embed_dim)

    def forward(self, x):
        return _to_nhwc(self.norm(self.proj(_to_nchw(x))))


class HighMixer(nn.Layer):
    """High-frequency mixer on `dim` channels (NCHW). The first half goes through a 1x1 conv to
    twice its width, a depthwise 3x3 conv and GELU; the second half through a 3x3 max pool
    (stride 1), a 1x1 conv to twice its width and GELU. Output: 2 * dim channels, conv path first."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2:
            raise ValueError(f"the high-frequency mixer splits its {dim} channels in halves: needs an even number")
        half = dim // 2
        self.half = half
        self.conv1 = nn.Conv2D(half, 2 * half, 1, bias_attr=False)
        self.proj1 = nn.Conv2D(2 * half, 2 * half, 3, padding=1, groups=2 * half, bias_attr=False)
        self.mid_gelu1 = nn.GELU()
        self.max_pool = nn.MaxPool2D(3, stride=1, padding=1)  # padded positions never win the max
        self.proj2 = nn.Conv2D(half, 2 * half, 1)
        self.mid_gelu2 = nn.GELU()

    def forward(self, x):
        conv = self.mid_gelu1(self.proj1(self.conv1(x[:, : self.half])))
        pool = self.mid_gelu2(self.proj2(self.max_pool(x[:, self.half :])))
        return paddle.concat([conv, pool], axis=1)


class LowMixer(nn.Layer):
    """Low-frequency mixer on `dim` channels (NCHW): average pool by `pool_size` (stride = kernel,
    no padding), multi-head self-attention over the pooled positions, nearest-neighbour
    upsampling by `pool_size` back to the input grid."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, pool_size: int = 2):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.pool_size = pool_size
        self.qkv = Linear(dim, 3 * dim, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        # exclusive=True is torch's count_include_pad=False (the official setting); with no
        # padding and floor mode every window lies inside the map, so it changes nothing.
        pooled = pool_size > 1
        self.pool = nn.AvgPool2D(pool_size, stride=pool_size, padding=0, exclusive=True) if pooled else nn.Identity()
        self.uppool = nn.Upsample(scale_factor=pool_size, mode="nearest") if pooled else nn.Identity()

    def forward(self, x):
        pooled = self.pool(x)
        b, c, h, w = pooled.shape
        tokens = pooled.flatten(2).transpose([0, 2, 1])  # [b, h*w, c], row-major positions
        q, k, v = self.qkv(tokens).reshape([b, h * w, 3, self.num_heads, self.head_dim]).unbind(2)
        dropout = self.attn_drop.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, training=self.training)
        # Heads concatenated along channels (channel = head * head_dim + d), back onto the grid.
        out = out.reshape([b, h * w, c]).transpose([0, 2, 1]).reshape([b, c, h, w])
        return self.uppool(out)


class Mixer(nn.Layer):
    """Inception token mixer on an NHWC map. Of the `dim` channels, the last
    attention_head * (dim // num_heads) go to the attention path (LowMixer), the first rest to
    the HighMixer; their outputs [high (2x wide), low] are fused as proj(y + dwconv3x3(y))."""

    def __init__(self, dim: int, num_heads: int, attention_head: int, pool_size: int,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        head_dim = dim // num_heads
        self.low_dim = attention_head * head_dim
        self.high_dim = dim - self.low_dim
        if not 0 < self.low_dim < dim:
            raise ValueError(
                f"attention_head {attention_head} x head_dim {head_dim} must leave channels to both mixers (dim {dim})"
            )
        self.high_mixer = HighMixer(self.high_dim)
        self.low_mixer = LowMixer(self.low_dim, attention_head, qkv_bias, attn_drop, pool_size)
        fused = self.low_dim + 2 * self.high_dim
        self.conv_fuse = nn.Conv2D(fused, fused, 3, padding=1, groups=fused, bias_attr=False)
        self.proj = nn.Conv2D(fused, dim, 1)
        self.proj_drop = nn.Dropout(proj_drop)

    def split(self, x) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """NCHW channels -> (high-frequency part, low-frequency part)."""
        return x[:, : self.high_dim], x[:, self.high_dim :]

    def forward(self, x):
        high, low = self.split(_to_nchw(x))
        y = paddle.concat([self.high_mixer(high), self.low_mixer(low)], axis=1)
        y = self.proj(y + self.conv_fuse(y))
        return _to_nhwc(self.proj_drop(y))


class Block(TunableBlock):
    """x + DropPath(ls1 * Mixer(LN(x))), then x + DropPath(ls2 * MLP(LN(x))) on an NHWC map;
    ls1 / ls2 (per-channel layer scale) exist only when `layer_scale` is a number. An adapter
    joins beside the whole MLP branch, outside layer scale (models/tuning.py, models/adapter.py)."""

    def __init__(self, dim: int, num_heads: int, attention_head: int, pool_size: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale: Optional[float] = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=LN_EPS)
        self.attn = Mixer(dim, num_heads, attention_head, pool_size, qkv_bias, attn_drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, epsilon=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.layer_scale_1 = self.layer_scale_2 = None
        if layer_scale is not None:
            init = nn.initializer.Constant(layer_scale)
            self.layer_scale_1 = self.create_parameter([dim], default_initializer=init)
            self.layer_scale_2 = self.create_parameter([dim], default_initializer=init)

    def mixer_branch(self, x):
        return self.residual_branch(self.attn, self.norm1(x), self.layer_scale_1)

    def mlp_branch(self, normed):
        return self.residual_branch(self.mlp, normed, self.layer_scale_2)

    def linear_sites(self) -> Dict[str, LinearSite]:
        # The attention path's fused qkv (q, k, v over the low-frequency channels) and the MLP; the
        # mixer's output projection is a 1x1 convolution, not a Linear layer.
        return {**fused_qkv_sites(self.attn.low_mixer), "fc1": LinearSite(self.mlp, "fc1"),
                "fc2": LinearSite(self.mlp, "fc2")}


class InceptionTransformer(TunableModel, nn.Layer):
    """iFormer. `attention_heads` holds one entry per block over all stages (the frequency ramp):
    the number of heads, of dim // num_heads channels each, that block gives to attention."""

    # Why VPT does not apply (models/tuning.py; methods/vpt.py says it in one line).
    NO_PROMPTS = ("iFormer's stages are convolution-shaped token grids (pooled attention, depthwise convolutions, "
                  "patch merging between stages), with no token sequence to add prompt tokens to; VPT applies to "
                  "ViT models")

    def __init__(
        self,
        img_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (96, 192, 320, 384),
        depths: Sequence[int] = (3, 3, 9, 3),
        num_heads: Sequence[int] = (3, 6, 10, 12),
        attention_heads: Optional[Sequence[int]] = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        use_layer_scale: bool = False,
        layer_scale_init_value: float = 1e-5,
    ):
        super().__init__()
        if not len(embed_dims) == len(depths) == len(num_heads) == 4:
            raise ValueError("iFormer has 4 stages: embed_dims, depths and num_heads need 4 entries each")
        depth = sum(depths)
        if attention_heads is None or len(attention_heads) != depth:
            raise ValueError(f"attention_heads needs one entry per block ({depth} for depths {list(depths)})")
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dims = list(embed_dims)
        self.embed_dim = self.num_features = embed_dims[-1]
        # Grids the position embeddings are stored for (the official img_size // 4, // 8, ...).
        self.grid_sizes = [img_size // 4 // 2**i for i in range(4)]
        rates = np.linspace(0.0, drop_path_rate, depth).tolist()  # stochastic depth, rising per block
        self.patch_embed = FirstPatchEmbed(in_chans, embed_dims[0])
        first = 0
        for s in range(4):
            n = s + 1
            if s > 0:
                setattr(self, f"patch_embed{n}", PatchEmbed(embed_dims[s - 1], embed_dims[s]))
            g = self.grid_sizes[s]
            pos = self.create_parameter([1, g, g, embed_dims[s]], default_initializer=_trunc_normal)
            self.add_parameter(f"pos_embed{n}", pos)
            scale = layer_scale_init_value if use_layer_scale and s in LAYER_SCALE_STAGES else None
            blocks = [
                Block(embed_dims[s], num_heads[s], attention_heads[i], POOL_SIZES[s], mlp_ratio, qkv_bias,
                      drop_rate, attn_drop_rate, rates[i], scale)
                for i in range(first, first + depths[s])
            ]
            setattr(self, f"blocks{n}", nn.Sequential(*blocks))
            first += depths[s]
        self.norm = nn.LayerNorm(embed_dims[-1], epsilon=LN_EPS)
        self.head = nn.Identity()
        self.apply(self._init_weights)
        self.reset_classifier(num_classes)

    @staticmethod
    def _init_weights(layer: nn.Layer) -> None:
        # As the official init: truncated normal (std 0.02) for Linear and conv weights, zero
        # biases, norms at one / zero (Paddle's default for LayerNorm and BatchNorm already).
        if isinstance(layer, (nn.Linear, nn.Conv2D)):
            _trunc_normal(layer.weight)
            if layer.bias is not None:
                _zeros(layer.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh Linear head for `num_classes` classes (0: none, the model returns pooled features)."""
        self.num_classes = num_classes
        if num_classes <= 0:
            self.head = nn.Identity()
            return
        self.head = Linear(self.num_features, num_classes)
        _trunc_normal(self.head.weight)
        _zeros(self.head.bias)

    @property
    def stages(self):
        """(patch embedding, position embedding, blocks) of each stage, in order."""
        embeds = [self.patch_embed, self.patch_embed2, self.patch_embed3, self.patch_embed4]
        pos = [self.pos_embed1, self.pos_embed2, self.pos_embed3, self.pos_embed4]
        blocks = [self.blocks1, self.blocks2, self.blocks3, self.blocks4]
        return list(zip(embeds, pos, blocks))

    def check_input_size(self, height: int, width: Optional[int] = None) -> None:
        """Raise ValueError for an image size the model cannot take: stages 1 and 2 pool by 2
        and upsample by 2, which gives their grid back only when it is even."""
        width = height if width is None else width
        grid = [_halve(_halve(height)), _halve(_halve(width))]
        for stage in (1, 2):
            if grid[0] % 2 or grid[1] % 2:
                raise ValueError(
                    f"cannot take it: a {height}x{width} image gives stage {stage} a {grid[0]}x{grid[1]} grid, which must be even "
                    "(stages 1-2 pool by 2 and upsample by 2); square sizes that are multiples of 16 work"
                )
            grid = [_halve(grid[0]), _halve(grid[1])]

    def position_embedding(self, pos, height: int, width: int):
        """A stage's embedding for a height x width grid: as stored when the grid is the one it
        was made for, else bilinearly interpolated (align_corners=False, no antialiasing)."""
        g = pos.shape[1]
        if (height, width) == (g, g):
            return pos
        return _to_nhwc(F.interpolate(_to_nchw(pos), size=[height, width], mode="bilinear", align_corners=False))

    def forward_features(self, x):
        """Tokens after the last stage and the final norm: [batch, h * w, num_features]."""
        if isinstance(x.shape[2], int) and isinstance(x.shape[3], int) and x.shape[2] > 0 and x.shape[3] > 0:
            self.check_input_size(x.shape[2], x.shape[3])
        for embed, pos, blocks in self.stages:
            x = embed(x)
            x = blocks(x + self.position_embedding(pos, x.shape[1], x.shape[2]))
        return self.norm(x.flatten(1, 2))

    def forward_head(self, x, pre_logits: bool = False):
        """Mean over the tokens (the official forward_features' output), then the head."""
        x = x.mean(axis=1)
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def tuning_blocks(self) -> List[Block]:
        return [block for _, _, blocks in self.stages for block in blocks]


# Per-size settings of the official factories (iformer_small / _base / _large): stage depths,
# widths, heads (head_dim 32 throughout) and, per block, the heads given to attention.
_SIZES = {
    "small": dict(depths=[3, 3, 9, 3], embed_dims=[96, 192, 320, 384], num_heads=[3, 6, 10, 12],
                  attention_heads=[1] * 3 + [3] * 3 + [7] * 4 + [9] * 5 + [11] * 3),
    "base": dict(depths=[4, 6, 14, 6], embed_dims=[96, 192, 384, 512], num_heads=[3, 6, 12, 16],
                 attention_heads=[1] * 4 + [3] * 6 + [8] * 7 + [10] * 7 + [15] * 6),
    "large": dict(depths=[4, 6, 18, 8], embed_dims=[96, 192, 448, 640], num_heads=[3, 6, 14, 20],
                  attention_heads=[1] * 4 + [3] * 6 + [10] * 9 + [12] * 9 + [19] * 8),
}


def build_iformer(size: str, default_img_size: int, **kw) -> "InceptionTransformer":
    """iformer_<size> (224) or iformer_<size>_<img_size> (models/factories.py registers the names):
    the official settings, which keyword arguments override. The 384 releases are the same
    networks with position embeddings stored for 384x384 inputs."""
    defaults = dict(img_size=default_img_size, use_layer_scale=True, layer_scale_init_value=1e-6, **_SIZES[size])
    return InceptionTransformer(**{**defaults, **kw})
