"""What a model would cost, estimated from its config before anything is built: every size key
bounded, then parameters and training memory compared with the machine's memory.

The estimate is a ViT's (the iFormer's stages are bounded by their largest width; a video ViT's
tokens count its frames): per block
(4 + 2 * mlp_ratio) * D^2 weights, and for the backward pass per image and block about
(10 + 2 * mlp_ratio) * N * D activations plus two heads * N^2 attention maps (N tokens).
It is meant to refuse the impossible (depth 100000, width 10^6), not to predict memory.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from adaptformer.errors import ConfigError

# Upper bounds on size keys of model.kwargs: far above every published ViT (ViT-22B: depth 48,
# width 6144, 48 heads), far below what makes building a model a memory error.
LIMITS = {"depth": 256, "depths": 256, "embed_dim": 16384, "embed_dims": 16384, "num_heads": 1024,
          "img_size": 4096, "patch_size": 4096, "mlp_ratio": 64, "in_chans": 64, "num_frames": 1024,
          "tubelet_size": 64}
BYTES_PER_PARAM_TRAINING = 16  # float32 weight, gradient and two optimizer moments


def _ints(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def machine_memory_bytes() -> int:
    """Physical memory, or the cgroup's limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            text = f.read(64).strip()
        if text.isdigit():
            total = min(total, int(text))
    except OSError:
        pass
    return total


def check_model_size(kwargs: Dict[str, Any], img_size: Optional[int], num_classes: int,
                     batch_size: Optional[int] = None, memory: Optional[int] = None,
                     video: bool = False) -> Dict[str, float]:
    """ConfigError naming the key for a size out of bounds, or with the estimate when the model
    (and, given `batch_size`, its training step) cannot fit `memory` (default: this machine's).
    `video`: a video ViT, whose tokens are (num_frames / tubelet_size) times an image's (VideoMAE's
    factories default to 16 frames in tubelets of 2) and which has no class token."""
    for key, limit in LIMITS.items():
        if key not in kwargs:
            continue
        for v in _ints(kwargs[key]):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= limit:
                raise ConfigError(f"model.kwargs.{key}: must be between 1 and {limit}, got {kwargs[key]!r}")
    size = kwargs.get("img_size", img_size) or 224
    patch = kwargs.get("patch_size", 16)
    if isinstance(patch, int) and isinstance(size, int) and patch > size:
        raise ConfigError(f"model.kwargs.patch_size: {patch} is larger than the image ({size} px)")
    if not 1 <= num_classes <= 1_000_000:
        raise ConfigError(f"model.num_classes: must be between 1 and 1000000, got {num_classes}")
    depth = sum(_ints(kwargs.get("depths", kwargs.get("depth", 12))))
    width = max(_ints(kwargs.get("embed_dims", kwargs.get("embed_dim", 768))))
    heads = max(_ints(kwargs.get("num_heads", 12)))
    ratio = float(kwargs.get("mlp_ratio", 4.0))
    tokens = (size // patch) ** 2 + 1 if isinstance(patch, int) and patch >= 1 else 197
    if video:
        steps = int(kwargs.get("num_frames", 16)) // max(1, int(kwargs.get("tubelet_size", 2)))
        tokens = max(1, steps) * (tokens - 1)
    params = depth * (4 + 2 * ratio) * width ** 2 + width * num_classes + tokens * width
    need = params * BYTES_PER_PARAM_TRAINING
    if batch_size:
        per_block = (10 + 2 * ratio) * tokens * width + 2 * heads * tokens ** 2
        need += batch_size * depth * per_block * 4
    memory = memory or machine_memory_bytes()
    if need > memory:
        what = f"training at batch {batch_size}" if batch_size else "its weights and optimizer state"
        raise ConfigError(f"model.kwargs: about {params / 1e6:,.0f} M parameters (depth {depth}, width {width}, "
                          f"{tokens} tokens); {what} would take about {need / 2**30:,.1f} GiB, more than this "
                          f"machine's {memory / 2**30:.1f} GiB")
    return {"params": params, "bytes": need}


__all__ = ["LIMITS", "check_model_size", "machine_memory_bytes"]
