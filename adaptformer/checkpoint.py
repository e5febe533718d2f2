"""A run's own checkpoints.

- `save_state` writes atomically (temporary file + rename).
- `load_checkpoint` restores a run's own checkpoint: every key must match.

Pretrained backbones from other sources are read by `adaptformer.weights`.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import paddle
import paddle.nn as nn

from .utils import atomic_write, short_list


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model."""


def save_state(obj: Dict, path: str) -> None:
    atomic_write(path, lambda tmp: paddle.save(obj, tmp))


def require_file(path: str, expected: str) -> None:
    """One-line errors for a checkpoint path that is absent or a folder."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, expected {expected}")


def read_state(path: str) -> Dict:
    require_file(path, "a .pdparams file")
    try:
        state = paddle.load(path)
    except Exception as e:  # paddle raises many kinds on a damaged file
        raise CheckpointError(f"{path}: not a readable Paddle checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def _shape(value) -> tuple:
    return tuple(value.shape)


def load_checkpoint(model: nn.Layer, path: str, state: Optional[Dict] = None) -> None:
    """Strict: the file must hold exactly the model's tensors. `state` skips re-reading `path`."""
    state = read_state(path) if state is None else state
    model_state = model.state_dict()
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected {short_list(unexpected)}")
        raise CheckpointError(f"{path}: does not match the model built from the config ({'; '.join(parts)})")
    for k, v in model_state.items():
        if _shape(state[k]) != _shape(v):
            raise CheckpointError(f"{path}: '{k}' has shape {list(_shape(state[k]))}, the model expects {list(_shape(v))}")
    model.set_state_dict(state)

