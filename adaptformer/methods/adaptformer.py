"""AdaptFormer (Chen et al., NeurIPS 2022) and the Houlsby adapter: a bottleneck module in the
adapter slot of every chosen block (models/adapter.py: the layer and how it joins the block,
beside the MLP branch or after it). One mechanism for every backbone: the slot belongs to
models/tuning.TunableBlock, which the ViT's and the iFormer's blocks are."""
from __future__ import annotations

import dataclasses
from typing import List

import paddle.nn as nn

from ..config import MethodConfig
from ..models.adapter import insert_adapters
from ._backbone import chosen_blocks

TRAINS = ["adapter"]


def add_adaptformer(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    # Every setting of method.adaptformer but `blocks` is an AdaptFormerAdapter argument of the same name.
    settings = dataclasses.asdict(cfg.adaptformer)
    insert_adapters(*chosen_blocks(model, "adaptformer", settings.pop("blocks")), **settings)
    return TRAINS


def add_houlsby_adapters(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    # Houlsby's adapter is the sequential bottleneck with GELU, its own residual and no scale.
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
