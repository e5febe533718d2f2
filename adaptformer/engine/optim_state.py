"""Optimizer state keyed by the model's parameter names, not by Paddle's generated tensor names.

Paddle keys an optimizer's state by generated names (`linear_25.w_0_moment1_0`), which depend on
the order layers were built in. A resumed transfer run builds them in another order: the fresh run
replaced the pretrained head (model.reset_head) before the method's layers were made, the resumed
one loads its head from the checkpoint, so every layer after it gets another generated name and
Adam's moments of the head were once loaded into an adapter. A checkpoint therefore stores
`<structured name>:<accumulator>` keys (`head.weight:moment1_0`), mapped back to this model's
generated names when it is read.
"""
from __future__ import annotations

from typing import Dict, Tuple

import paddle.nn as nn

from adaptformer.errors import CheckpointError

FORMAT = "parameter_names"  # the checkpoint's "optimizer_keys": how its optimizer state is keyed
SEPARATOR = ":"
_AS_IS = ("LR_Scheduler",)
_MASTER = "master_weights"  # AMP O2's float32 copies: {generated name: tensor}


def _generated_to_structured(model: nn.Layer) -> Dict[str, str]:
    return {p.name: name for name, p in model.named_parameters()}


def _split(key: str, names: Dict[str, str]) -> Tuple[str, str]:
    """(structured name, accumulator suffix) of a Paddle optimizer key `<generated>_<suffix>`."""
    for generated in sorted(names, key=len, reverse=True):  # linear_25.w_0 before linear_2.w_0
        if key.startswith(generated + "_"):
            return names[generated], key[len(generated) + 1:]
    raise KeyError(key)


def to_portable(state: Dict, model: nn.Layer) -> Dict:
    """The optimizer's state_dict() with keys by `model`'s parameter names."""
    names = _generated_to_structured(model)
    out = {}
    for key, value in state.items():
        if key in _AS_IS:
            out[key] = value
        elif key == _MASTER:
            out[key] = {names[k]: v for k, v in value.items()}
        else:
            structured, suffix = _split(key, names)
            out[f"{structured}{SEPARATOR}{suffix}"] = value
    return out


def from_portable(state: Dict, model: nn.Layer, path: str) -> Dict:
    """A portable state with `model`'s generated names again; a key naming a parameter the model does
    not have (or does not train) is a one-line CheckpointError."""
    generated = {name: p.name for name, p in model.named_parameters()}

    def current(structured: str) -> str:
        if structured not in generated:
            raise CheckpointError(f"{path}: its optimizer state has '{structured}', which this run's model lacks")
        return generated[structured]

    out = {}
    for key, value in state.items():
        if key in _AS_IS:
            out[key] = value
        elif key == _MASTER:
            out[key] = {current(k): v for k, v in value.items()}
        else:
            structured, sep, suffix = key.rpartition(SEPARATOR)
            if not sep:
                raise CheckpointError(f"{path}: optimizer key {key!r} is not '<parameter>{SEPARATOR}<state>'")
            out[f"{current(structured)}_{suffix}"] = value
    return out
