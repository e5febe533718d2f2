"""Weights for a ViT or an iFormer drawn from a seed, the same in NumPy for PyTorch/timm and for
Paddle, so a full-size golden test needs only the seed, the names and the reference logits (a few
KB), not a checkpoint of 80-330 MB. Linear/conv weights ~ N(0, 1/fan_in), biases N(0, 0.2^2),
LayerNorm and BatchNorm weights 1 + N(0, 0.2^2), class token and position embeddings N(0, 0.5^2),
BatchNorm running means N(0, 0.2^2) and variances exp(N(0, 0.4^2)), layer scales 1 + N(0, 0.2^2)
(far from their 1e-6 init, so the blocks that carry them count); PyTorch names and layouts
(Linear weights [out, in], BatchNorm running_mean / running_var)."""
from typing import Dict, List, Tuple

import numpy as np


def seeded_weights(names_shapes: List[Tuple[str, Tuple[int, ...]]], seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in names_shapes:
        draw = rng.standard_normal(shape).astype(np.float32)
        leaf = name.rsplit(".", 1)[-1]
        owner = name.rsplit(".", 2)[-2] if "." in name else ""
        if name == "cls_token" or name.startswith("pos_embed"):  # iFormer: pos_embed1 .. pos_embed4
            out[name] = 0.5 * draw
        elif leaf == "running_mean":
            out[name] = 0.2 * draw
        elif leaf == "running_var":
            out[name] = np.exp(0.4 * draw)
        elif leaf.startswith("layer_scale"):
            out[name] = 1.0 + 0.2 * draw
        elif leaf == "bias":
            out[name] = 0.2 * draw
        elif owner.startswith("norm"):
            out[name] = 1.0 + 0.2 * draw
        else:
            out[name] = draw / np.float32(np.sqrt(np.prod(shape[1:])))
    return out


def seeded_images(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)
