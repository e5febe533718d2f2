"""A learned position embedding moved onto another patch grid (224 -> 384, or onto a CIFAR-sized model)."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import paddle
import paddle.nn.functional as F
from PIL import Image

MODES = ("bicubic", "bilinear")
_PIL_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def resize_pos_embed(
    pos_embed: np.ndarray,
    grid: Tuple[int, int],
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
    antialias: bool = True,
) -> np.ndarray:
    """[1, prefix + h*w, dim] -> [1, prefix + grid[0]*grid[1], dim]; the prefix (class) tokens are kept.

    `antialias=True` matches timm's default when it loads a checkpoint at another
    image size (torch's antialiased kernels, which follow PIL's); it is done with
    PIL, channel by channel. `antialias=False` is plain torch-style interpolation
    (half-pixel centres), done with Paddle.
    """
    if mode not in MODES:
        raise ValueError(f"position embedding interpolation must be one of {MODES}, got {mode!r}")
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[0, num_prefix_tokens:]
    old = int(round(np.sqrt(patches.shape[0])))
    if old * old != patches.shape[0]:
        raise ValueError(f"position embedding has {patches.shape[0]} patch positions, not a square grid")
    dim = patches.shape[1]
    maps = patches.reshape(old, old, dim).astype(np.float32)
    h, w = grid
    if antialias:
        resized = np.stack(
            [np.asarray(Image.fromarray(maps[:, :, c], mode="F").resize((w, h), _PIL_FILTERS[mode])) for c in range(dim)],
            axis=-1,
        )
    else:
        x = paddle.to_tensor(maps.transpose(2, 0, 1)[None])
        resized = F.interpolate(x, size=[h, w], mode=mode, align_corners=False).numpy()[0].transpose(1, 2, 0)
    return np.concatenate([prefix.astype(np.float32), resized.reshape(1, h * w, dim)], axis=1)
