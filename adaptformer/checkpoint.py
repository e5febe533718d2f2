"""Reading and writing model weights.

- `save_state` writes atomically (temporary file + rename).
- `load_pretrained` puts a backbone checkpoint into a model before a tuning
  method is applied: a head of another class count is re-initialised and
  reported; a backbone key the checkpoint lacks, or one of another shape, is an
  error, so no layer is silently left random (and later trainable).
- `load_checkpoint` restores a run's own checkpoint: every key must match.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import paddle
import paddle.nn as nn

from .utils import atomic_write

HEAD_PREFIXES = ("head.",)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model."""


@dataclass
class LoadReport:
    path: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # in the model, not in the file (re-initialised heads only)
    unexpected: List[str] = field(default_factory=list)  # in the file, not in the model (ignored)
    reinitialised: List[str] = field(default_factory=list)  # head keys of another shape

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.path}"]
        for label, keys in (
            ("missing (kept freshly initialised)", self.missing),
            ("unexpected (ignored)", self.unexpected),
            ("shape mismatch, re-initialised", self.reinitialised),
        ):
            if keys:
                lines.append(f"  {label}: {_short(keys)}")
        return "\n".join(lines)


def _short(keys: List[str], limit: int = 6) -> str:
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def save_state(obj: Dict, path: str) -> None:
    atomic_write(path, lambda tmp: paddle.save(obj, tmp))


def read_state(path: str) -> Dict:
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, expected a .pdparams file")
    try:
        state = paddle.load(path)
    except Exception as e:  # paddle raises many kinds on a damaged file
        raise CheckpointError(f"{path}: not a readable Paddle checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def _shape(value) -> tuple:
    return tuple(value.shape)


def load_pretrained(model: nn.Layer, path: str) -> LoadReport:
    state = read_state(path)
    report = LoadReport(path)
    model_state = model.state_dict()
    to_set = {}
    errors = []
    for key, target in model_state.items():
        is_head = key.startswith(HEAD_PREFIXES)
        if key not in state:
            if is_head:
                report.missing.append(key)
            else:
                errors.append(key)
            continue
        if _shape(state[key]) != _shape(target):
            if is_head:
                report.reinitialised.append(key)
                continue
            raise CheckpointError(
                f"{path}: '{key}' has shape {list(_shape(state[key]))}, the model expects {list(_shape(target))}"
            )
        to_set[key] = state[key]
    if errors:
        raise CheckpointError(
            f"{path}: lacks {len(errors)} backbone tensors of {type(model).__name__} ({_short(errors)}); "
            "they would stay randomly initialised"
        )
    report.unexpected = [k for k in state if k not in model_state]
    report.loaded = list(to_set)
    model.set_state_dict({**model_state, **to_set})  # re-initialised keys keep their fresh values
    return report


def load_checkpoint(model: nn.Layer, path: str, state: Optional[Dict] = None) -> None:
    """Strict: the file must hold exactly the model's tensors. `state` skips re-reading `path`."""
    state = read_state(path) if state is None else state
    model_state = model.state_dict()
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {_short(unexpected)}")
        raise CheckpointError(f"{path}: does not match the model built from the config ({'; '.join(parts)})")
    for k, v in model_state.items():
        if _shape(state[k]) != _shape(v):
            raise CheckpointError(f"{path}: '{k}' has shape {list(_shape(state[k]))}, the model expects {list(_shape(v))}")
    model.set_state_dict(state)

