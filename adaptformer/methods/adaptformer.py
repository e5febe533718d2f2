"""AdaptFormer (Chen et al., NeurIPS 2022): a bottleneck module, s * Up(ReLU(Down(x))), in the
adapter slot of every chosen block (models/adapter.py: the layer and how it joins the block,
beside the MLP branch or after it). One mechanism for every backbone: the slot belongs to
models/tuning.TunableBlock, which the ViT's and the iFormer's blocks are."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional

from adaptformer.methods.registry import MethodSpec

TRAINS = ["adapter"]


@dataclass
class AdaptFormerConfig:
    """AdaptFormer (Chen et al. 2022): s * Up(ReLU(Down(x))) beside (or after) each block's MLP."""

    bottleneck: int = 64
    scale: float = 0.1
    learnable_scale: bool = True
    dropout: float = 0.1
    position: str = "parallel"  # parallel | sequential
    adapter_input: str = "stream"  # stream (official) | ln2 (community notebook)
    layernorm: str = "none"  # none (paper) | in (the adapter's own LayerNorm before Down, V-PETL Bench)
    blocks: Optional[List[int]] = None  # block indices that get adapters; None = all


def attach(model, cfg) -> List[str]:
    from adaptformer.models.adapter import insert_adapters
    from adaptformer.methods._backbone import chosen_blocks

    # Every setting of method.adaptformer but `blocks` is an AdaptFormerAdapter argument of the same name.
    settings = dataclasses.asdict(cfg.adaptformer)
    insert_adapters(*chosen_blocks(model, "adaptformer", settings.pop("blocks")), **settings)
    return TRAINS


def adapter_layers():
    from adaptformer.models.adapter import AdaptFormerAdapter

    return (AdaptFormerAdapter,)


SPEC = MethodSpec("adaptformer", section=AdaptFormerConfig, positive=("bottleneck",), fractions=("dropout",),
                  slot="adapter", attach=attach, modules=adapter_layers, order=2)
