"""Put a converted checkpoint into a model, refusing anything that would leave it silently wrong.

- A head of another shape, or none in the file, is re-initialised and reported.
- A position embedding for another patch grid is resized and reported.
- Any other model tensor the file lacks is an error (it would stay random, and
  with full fine-tuning trainable) unless the caller lists it in `allow_missing`.
- A file tensor the model has no place for is an error, except the parts that
  belong to pretraining only (`IGNORED_BY_DEFAULT`) or ones the caller lists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle.nn as nn

from adaptformer.weights.checkpoint import CheckpointError
from adaptformer.freeze import name_matches
from adaptformer.errors import short_list
from adaptformer.weights.formats import read_checkpoint
from adaptformer.weights.layouts import to_model_names
from adaptformer.weights.resize import resize_pos_embed

# Heads of other tasks, the IN-21k releases' pre-logits layer, MAE's and VideoMAE's decoder and mask
# token, and VideoMAE's pre-training encoder norm (fc_norm replaces it when fine-tuning).
IGNORED_BY_DEFAULT = ("head", "pre_logits", r"decoder\w*", "mask_token", "encoder_to_decoder", "encoder_norm")


# Tensors a layout cannot hold, which its fine-tuning starts afresh like the head: VideoMAE's
# pre-training encoder ends in a norm the fine-tuning model replaces by fc_norm (pooled tokens).
NEW_IN = {"videomae_pretrain": ("fc_norm.",)}  # by the layout's first word (it may say more after a comma)


@dataclass
class LoadReport:
    path: str
    format: str = ""
    layout: str = ""
    loaded: List[str] = field(default_factory=list)
    reinitialised: List[str] = field(default_factory=list)  # head tensors absent or of another shape
    resized: List[str] = field(default_factory=list)  # position embeddings moved to the model's grid
    left_initialised: List[str] = field(default_factory=list)  # absent, allowed by the caller
    unexpected: List[str] = field(default_factory=list)  # in the file only, ignored
    normalization: Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]] = None

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.path} ({self.format}, {self.layout} layout)"]
        for label, keys in (
            ("re-initialised (head)", self.reinitialised),
            ("resized", self.resized),
            ("left initialised (allowed)", self.left_initialised),
            ("ignored", self.unexpected),
        ):
            if keys:
                lines.append(f"  {label}: {short_list(keys)}")
        if self.normalization:
            mean, std = self.normalization
            lines.append(f"  the checkpoint expects inputs normalised with mean {list(mean)}, std {list(std)}")
        return "\n".join(lines)


def load_pretrained(
    model: nn.Layer,
    path: str,
    allow_missing: Sequence[str] = (),
    ignore_unexpected: Sequence[str] = (),
    pos_embed_interpolation: str = "bicubic",
    antialias: bool = True,
) -> LoadReport:
    """Load a pretrained checkpoint of any supported format into `model` (see the module doc).

    `allow_missing` / `ignore_unexpected` are name patterns (regular expressions
    matched against whole dot-separated parts, as in `freeze`).
    """
    ckpt = read_checkpoint(path)
    tensors, layout = to_model_names(ckpt)
    report = LoadReport(path, ckpt.format, layout, normalization=ckpt.normalization)
    model_state = model.state_dict()
    parameters = dict(model.named_parameters())
    to_set: Dict[str, np.ndarray] = {}
    absent = []
    for key, target in model_state.items():
        shape = list(target.shape)
        if key not in tensors:
            if key.startswith("head.") or (key.startswith(NEW_IN.get(layout.split(",")[0], ("head.",)))
                                           and key in parameters):
                report.reinitialised.append(key)
            elif key.endswith("adapter.scale") and key not in parameters:
                pass  # a fixed adapter scale is a setting of the method, not a learned weight
            elif name_matches(key, allow_missing):
                report.left_initialised.append(key)
            else:
                absent.append(key)
            continue
        value = tensors[key]
        if list(value.shape) != shape:
            if key.startswith("head."):
                report.reinitialised.append(key)
                continue
            if key == "pos_embed" and value.ndim == 3 and value.shape[2] == shape[2]:
                value = _resize(model, value, pos_embed_interpolation, antialias, path)
                report.resized.append(f"pos_embed {list(tensors[key].shape)} -> {shape}")
            else:
                raise CheckpointError(
                    f"{path}: '{key}' has shape {list(value.shape)}, {type(model).__name__} expects {shape} "
                    "(a checkpoint of another architecture?)"
                )
        to_set[key] = value.astype(_numpy_dtype(target), copy=False)
    if absent:
        raise CheckpointError(
            f"{path}: lacks {len(absent)} tensors of {type(model).__name__} ({short_list(absent)}), "
            f"which would stay randomly initialised ({ckpt.format} file, {layout} layout)"
        )
    extra = [k for k in tensors if k not in model_state]
    refused = [k for k in extra if not name_matches(k, (*IGNORED_BY_DEFAULT, *ignore_unexpected))]
    if refused:
        raise CheckpointError(
            f"{path}: holds {len(refused)} tensors {type(model).__name__} has no place for ({short_list(refused)}); "
            "a different architecture, or modules to add before loading"
        )
    report.unexpected = extra
    report.loaded = list(to_set)
    model.set_state_dict({**model_state, **to_set})  # re-initialised keys keep their fresh values
    return report


def _numpy_dtype(tensor) -> str:
    return str(tensor.dtype).replace("paddle.", "")


def _resize(model, value, mode, antialias, path):
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is None:
        raise CheckpointError(f"{path}: cannot resize pos_embed for {type(model).__name__} (no patch_embed.grid_size)")
    try:
        return resize_pos_embed(value, (grid, grid), num_prefix_tokens=1, mode=mode, antialias=antialias)
    except ValueError as e:
        raise CheckpointError(f"{path}: pos_embed: {e}") from None
