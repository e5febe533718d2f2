"""The Houlsby adapter (Houlsby et al., ICML 2019, as the ModelScope card uses it): the sequential
bottleneck h + Up(GELU(Down(h))) after each chosen block's MLP, its own residual and no scale;
the same layer and slot as AdaptFormer's (models/adapter.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from adaptformer.methods.adaptformer import TRAINS, adapter_layers
from adaptformer.methods.registry import MethodSpec


@dataclass
class HoulsbyAdapterConfig:
    """Adapter (Houlsby et al. 2019, as the ModelScope card uses it): h + Up(GELU(Down(h))) after the MLP."""

    bottleneck: int = 10  # the card's adapter_length
    blocks: Optional[List[int]] = None


def attach(model, cfg) -> List[str]:
    from adaptformer.models.adapter import insert_adapters
    from adaptformer.methods._backbone import chosen_blocks

    insert_adapters(
        *chosen_blocks(model, "adapter", cfg.adapter.blocks),
        bottleneck=cfg.adapter.bottleneck,
        scale=1.0,
        learnable_scale=False,
        dropout=0.0,
        position="sequential",
        activation="gelu",
    )
    return TRAINS


SPEC = MethodSpec("adapter", section=HoulsbyAdapterConfig, positive=("bottleneck",), slot="adapter",
                  attach=attach, modules=adapter_layers, order=4)
