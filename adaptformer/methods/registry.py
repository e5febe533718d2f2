"""The tuning methods: every module of this package that defines `SPEC` is one, and owns
everything about it (its config section and checks, how it attaches, the layers it adds, the
slot it fills). Adding a method is adding a module. Importing this needs no Paddle: config
validation reads it; each method's attach function imports what it needs when called.

    method.name   inserts                                   trains (besides the head)   ViT  iFormer
    full          -                                         everything                   yes  yes
    linear        -                                         nothing else                 yes  yes
    adaptformer   s * Up(ReLU(Down(x))) beside each MLP     the adapters                 yes  yes (1)
    vpt           prompt tokens (shallow or deep)           the prompts                  yes  no (2)
    adapter       h + Up(GELU(Down(h))) after each MLP      the adapters (Houlsby)       yes  yes (1)
    lora          (alpha/r) * B A x on q/k/v/proj/fc1/fc2    the low-rank factors         yes  yes (3)
    bitfit        -                                         every bias                   yes  yes (4)

    (1) beside / after the block's whole MLP branch, outside its layer scale (models/adapter.py)
    (2) no token sequence to put prompts in: a one-line error says so
    (3) q/k/v on the attention path's fused qkv (LowMixer), fc1, fc2; no 'proj' (a 1x1 conv there)
    (4) BatchNorm biases included (models.layers.BatchNorm2D gives them their gradient)

Methods reach a backbone only through the protocol of models/tuning.py (tuning_blocks(), the
blocks' adapter slot and linear_sites(), prompt_shape()). Several join with '+'
("adaptformer+vpt"), except the exclusive ones and two that fill the same slot.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

Fail = Callable[[str, str], None]  # fail(key within the section, message)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    section: Optional[type] = None  # its settings, under method.<name>
    positive: Tuple[str, ...] = ()  # settings that must be >= 1
    fractions: Tuple[str, ...] = ()  # settings in [0, 1)
    check: Optional[Callable[[Any, Fail], None]] = None  # further checks of the section
    exclusive: bool = False  # says alone what trains: cannot be joined with others
    slot: Optional[str] = None  # what it fills in every block; two methods cannot share one
    # (model, MethodConfig) -> the name patterns of what it trains; None for `full`
    attach: Optional[Callable[[Any, Any], List[str]]] = None
    modules: Callable[[], Tuple[type, ...]] = tuple  # the layer classes it inserts (what tuned weights hold)
    order: int = 100  # where it is listed


def _discover() -> Dict[str, MethodSpec]:
    package = importlib.import_module(__package__)
    specs = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in ("registry", "apply"):
            continue
        spec = getattr(importlib.import_module(f"{__package__}.{info.name}"), "SPEC", None)
        if isinstance(spec, MethodSpec):
            specs.append(spec)
    return {s.name: s for s in sorted(specs, key=lambda s: (s.order, s.name))}


METHODS: Dict[str, MethodSpec] = _discover()


def sections() -> List[str]:
    """The names of the methods that have settings (method.<name>.*)."""
    return [s.name for s in METHODS.values() if s.section is not None]


def method_layer_classes() -> Tuple[type, ...]:
    """Every layer class a method inserts (imports Paddle)."""
    return tuple(c for s in METHODS.values() for c in s.modules())
