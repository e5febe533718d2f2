"""An image ViT's weights as a video ViT's (models/videomae.py with learnable_pos), for starting video
tuning from an image backbone (the CPU miniature starts from the committed CIFAR backbone).

The rule, on state dicts with this package's names and Paddle layout:
- patch_embed.proj.weight [D, C, p, p] -> [D, C, t, p, p], each of the t frames w / t, so that a clip
  of one image repeated embeds as that image does (the I3D inflation);
- pos_embed [1, 1 + G*G, D] -> [1, (T / t) * G*G, D]: the class token's row dropped, the patches' rows
  repeated for each of the T / t tubelet steps, which start alike and learn apart;
- time_embed [1, T / t, D] (new): zeros, one row per tubelet step added to all its tokens. With the
  rows above alike, a frozen copy is blind to frame order (a clip and its reverse give the same
  logits); methods that freeze the backbone train this (model kwargs time_embed: true);
- attn.qkv.bias [3D] -> attn.q_bias = its first D, attn.v_bias = its last D. k's bias is dropped: it
  adds q . b_k to every key's score alike, which softmax takes away, so attention is unchanged;
- norm (the image's final norm, before its class token) -> fc_norm (before the video's mean pooling);
- cls_token and the head are dropped: the video ViT pools its tokens and gets a new head.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from adaptformer.weights.checkpoint import CheckpointError


def inflate_image_vit(image: Dict[str, np.ndarray], num_frames: int, tubelet_size: int) -> Dict[str, np.ndarray]:
    if num_frames % tubelet_size:
        raise ValueError(f"num_frames {num_frames} is not a multiple of tubelet_size {tubelet_size}")
    for key in ("patch_embed.proj.weight", "pos_embed", "norm.weight", "norm.bias"):
        if key not in image:
            raise CheckpointError(f"not an image ViT with a class token and a final norm: it lacks {key}")
    out: Dict[str, np.ndarray] = {}
    for key, value in image.items():
        value = np.asarray(value)
        if key == "patch_embed.proj.weight":
            out[key] = np.repeat(value[:, :, None] / np.float32(tubelet_size), tubelet_size, axis=2).astype(value.dtype)
        elif key == "pos_embed":
            out[key] = np.tile(value[:, 1:], (1, num_frames // tubelet_size, 1))
        elif key.endswith(".attn.qkv.bias"):
            dim = value.shape[0] // 3
            prefix = key[: -len("qkv.bias")]
            out[prefix + "q_bias"], out[prefix + "v_bias"] = value[:dim], value[2 * dim:]
        elif key.startswith("norm."):
            out["fc_norm." + key[len("norm."):]] = value
        elif key == "cls_token" or key.startswith(("head.", "fc_norm.")):
            continue
        else:
            out[key] = value
    width = out["pos_embed"].shape[-1]
    out["time_embed"] = np.zeros((1, num_frames // tubelet_size, width), dtype=out["pos_embed"].dtype)
    return out
