"""Transformer building blocks shared by the backbones."""
from __future__ import annotations

import warnings

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from adaptformer.models.linear import Linear

# Paddle 3.3's BatchNorm warns on every training forward that it tracks running statistics,
# which is what every BatchNorm does; the message tells a user nothing.
warnings.filterwarnings("ignore", message="When training, we now always track global mean", category=UserWarning)


class PatchEmbed(nn.Layer):
    """Image -> sequence of patch embeddings via a strided convolution.

    When img_size is not a multiple of patch_size the last rows/columns are never
    seen (the community CIFAR model: 32 px with patch 3 covers 30 px).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size * self.grid_size
        self.proj = nn.Conv2D(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        if x.shape[2] != self.img_size or x.shape[3] != self.img_size:
            raise ValueError(
                f"input is {x.shape[2]}x{x.shape[3]} pixels but the model expects {self.img_size}x{self.img_size}"
            )
        return self.proj(x).flatten(2).transpose([0, 2, 1])


class Attention(nn.Layer):
    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        b, n, c = x.shape
        # [b, n, heads, head_dim] is the layout scaled_dot_product_attention takes, so q, k
        # and v need no transposes; on CPU this was 1.8x faster in forward+backward than
        # softmax(q k^T) v over transposed views, with identical results (docs/benchmarks.md).
        # The scale is left to its default, 1/sqrt(head_dim): Paddle rules FlashAttention out for
        # any explicit scale, even one equal to the default (paddle/nn/functional/sdpa.py).
        q, k, v = self.project_qkv(x).reshape([b, n, 3, self.num_heads, self.head_dim]).unbind(2)
        dropout = self.attn_drop.p if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, training=self.training)
        return self.proj_drop(self.proj(x.reshape([b, n, c])))


    def project_qkv(self, x):
        """[b, n, 3 * dim]: q, k and v side by side (a LoRA wrapping self.qkv acts here)."""
        return self.qkv(x)


class Mlp(nn.Layer):
    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Layer):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = paddle.floor(keep + paddle.rand([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype))
        return x / keep * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class BatchNorm2D(nn.BatchNorm2D):
    """nn.BatchNorm2D, except when only one of its weight and bias trains (BitFit on a frozen
    backbone trains the bias): Paddle 3.3's batch_norm then computes no gradient for the one
    that trains (measured on CPU: bias.grad stays None when the weight is frozen, and the other
    way round; Paddle expects the pair to train together or not at all: PaddlePaddle/Paddle
    issue 32331, pull request 47634), so BitFit would silently leave it untouched. In that case
    the normalisation runs without affine parameters and weight and bias are applied after it
    (the same function, within float32 rounding). Otherwise, and for inference, it is Paddle's
    own kernel."""

    def forward(self, x):
        w, b = self.weight, self.bias
        if w is None or b is None or w.stop_gradient == b.stop_gradient or not paddle.is_grad_enabled():
            return super().forward(x)
        y = F.batch_norm(x, self._mean, self._variance, weight=None, bias=None, training=self.training,
                         momentum=self._momentum, epsilon=self._epsilon, data_format=self._data_format,
                         use_global_stats=self._use_global_stats)
        shape = [1, -1, 1, 1] if self._data_format == "NCHW" else [1, 1, 1, -1]
        return y * w.reshape(shape) + b.reshape(shape)
