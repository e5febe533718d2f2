"""A run's own checkpoints.

- `save_state` writes atomically (temporary file + rename).
- `read_state` / `read_resume_state` read them back through the restricted reader
  (adaptformer/files/safe_pickle.py), never `paddle.load`: the files may come from anyone.
- `load_checkpoint` restores a run's own checkpoint: every key must match.

Pretrained backbones from other sources are read by `adaptformer.weights`.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np
import paddle
import paddle.nn as nn

from adaptformer.errors import CheckpointError, one_line
from adaptformer.files.safe_pickle import read_numpy_pickle
from adaptformer.files.atomic import atomic_write
from adaptformer.errors import short_list


def save_state(obj: Dict, path: str) -> None:
    atomic_write(path, lambda tmp: paddle.save(obj, tmp))


def require_file(path: str, expected: str) -> None:
    """One-line errors for a checkpoint path that is absent or a folder."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, expected {expected}")


def _named_tensor(name: str, array):
    """What paddle.load makes of a tensor paddle.save recorded as (name, array)."""
    tensor = paddle.to_tensor(array)
    tensor.name = name
    return tensor


def read_state(path: str) -> Dict:
    """A dict paddle.save wrote, bit for bit, with pickled code refused. Tensors paddle.save
    nested in dicts (last.pdckpt) come back as named Tensors, as paddle.load returns them;
    a flat state dict (best.pdparams) as NumPy arrays, which set_state_dict takes alike."""
    require_file(path, "a .pdparams file")
    return read_numpy_pickle(path, make_tensor=_named_tensor)


def require_tensors(state: Dict, path: str, what: str) -> None:
    bad = [k for k, v in state.items() if not isinstance(v, (np.ndarray, paddle.Tensor))]
    if bad:
        raise CheckpointError(f"{path}: {what} entries that are not tensors ({short_list(map(one_line, bad))})")


def read_resume_state(path: str) -> Dict:
    """A last.pdckpt written by the trainer: model, optimizer and progress, each of the expected kind."""
    state = read_state(path)
    kinds = {"model": dict, "optimizer": dict, "loss_scaler": dict, "epoch": int, "global_step": int, "best": dict}
    wrong = [k for k, kind in kinds.items() if not isinstance(state.get(k), kind)]
    if wrong:
        raise CheckpointError(f"{path}: not a resume checkpoint of this package (missing or wrong {', '.join(wrong)})")
    require_tensors(state["model"], path, "model")
    optimizer = {k: v for k, v in state["optimizer"].items() if k not in ("LR_Scheduler", "master_weights")}
    require_tensors(optimizer, path, "optimizer")
    return state


def _shape(value) -> tuple:
    return tuple(value.shape)


def load_checkpoint(model: nn.Layer, path: str, state: Optional[Dict] = None) -> None:
    """Strict: the file must hold exactly the model's tensors. `state` skips re-reading `path`.
    Each tensor is cast to the dtype the model holds it in: under AMP O2 the model is float16 or
    bfloat16 while its checkpoints are saved in float32 (and set_value asserts equal dtypes)."""
    state = read_state(path) if state is None else state
    model_state = model.state_dict()
    check_keys(state, model_state, path, "does not match the model built from the config")
    own = model.state_dict(use_hook=False)  # the tensors as held, not as saved (AMP's save_dtype hook)
    model.set_state_dict({k: in_dtype_of(v, own[k]) for k, v in state.items()})


def dtype_name(value) -> str:
    """'float32', 'bfloat16', ... of a NumPy array or a Paddle tensor."""
    return str(value.dtype).replace("paddle.", "")


def in_dtype_of(value, target):
    """`value` (an array or a tensor) unchanged when it has `target`'s dtype, else a cast tensor."""
    if dtype_name(value) == dtype_name(target):
        return value
    tensor = value if isinstance(value, paddle.Tensor) else paddle.to_tensor(value)
    return tensor.astype(target.dtype)


def key_mismatch(expected, found) -> str:
    """'missing a, b; unexpected c' for two key collections, '' when they hold the same keys."""
    missing = [k for k in expected if k not in found]
    unexpected = [one_line(k) for k in found if k not in expected]
    parts = [f"{label} {short_list(keys)}" for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    return "; ".join(parts)


def check_keys(state: Dict, expected: Dict, path: str, what: str) -> None:
    """`state` (read from `path`) holds tensors of exactly `expected`'s names and shapes; else a
    one-line error: the file `what` (the differing keys)."""
    mismatch = key_mismatch(expected, state)
    if mismatch:
        raise CheckpointError(f"{path}: {what} ({mismatch})")
    require_tensors(state, path, "model")
    for k, v in expected.items():
        if _shape(state[k]) != _shape(v):
            raise CheckpointError(f"{path}: '{k}' has shape {list(_shape(state[k]))}, the model expects {list(_shape(v))}")

