"""Model factories looked up by name."""
from __future__ import annotations

from typing import Callable, Dict, List

_MODELS: Dict[str, Callable] = {}


def register_model(fn: Callable) -> Callable:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> List[str]:
    return sorted(_MODELS)


def create_model(name: str, **kwargs):
    """Build a registered model; keyword arguments override the factory's dimensions."""
    if name not in _MODELS:
        raise ValueError(f"unknown model '{name}' (known: {', '.join(list_models())})")
    return _MODELS[name](**kwargs)

