"""The modules each tuning method puts into a ViT, and the parameter patterns it trains."""
from __future__ import annotations

from typing import List, Optional

import paddle.nn as nn

from ..config import MethodConfig
from ..models.lora import LoRALinear


def _block_indices(model: nn.Layer, blocks: Optional[List[int]], key: str) -> List[int]:
    depth = len(model.blocks)
    indices = list(range(depth)) if blocks is None else list(blocks)
    for i in indices:
        if not 0 <= i < depth:
            raise ValueError(f"{key}: block index {i} is out of range for depth {depth}")
    return indices


def add_adaptformer(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    a = cfg.adaptformer
    model.add_adapters(
        blocks=_block_indices(model, a.blocks, "method.adaptformer.blocks"),
        bottleneck=a.bottleneck,
        scale=a.scale,
        learnable_scale=a.learnable_scale,
        dropout=a.dropout,
        position=a.position,
        adapter_input=a.adapter_input,
    )
    return ["adapter"]


def add_houlsby_adapters(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    # Houlsby's adapter is the sequential bottleneck with GELU, its own residual and no scale.
    model.add_adapters(
        blocks=_block_indices(model, cfg.adapter.blocks, "method.adapter.blocks"),
        bottleneck=cfg.adapter.bottleneck,
        scale=1.0,
        learnable_scale=False,
        dropout=0.0,
        position="sequential",
        activation="gelu",
    )
    return ["adapter"]


def add_prompts(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    model.add_prompts(cfg.vpt.num_tokens, deep=cfg.vpt.deep, dropout=cfg.vpt.dropout)
    return ["prompt"]


# Where each LoRA target lives in a block, and which slice of that layer's output it updates.
def _lora_site(block: nn.Layer, target: str):
    dim = block.attn.qkv.weight.shape[0]
    if target in ("q", "k", "v"):
        i = "qkv".index(target)
        return ("attn", "qkv", (i * dim, (i + 1) * dim))
    if target == "proj":
        return ("attn", "proj", None)
    return ("mlp", target, None)


def add_lora(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    lora = cfg.lora
    for i in _block_indices(model, lora.blocks, "method.lora.blocks"):
        block = model.blocks[i]
        sites = {}
        for target in lora.targets:
            parent, attr, part = _lora_site(block, target)
            sites.setdefault((parent, attr), {})[target] = part
        for (parent_name, attr), parts in sites.items():
            parent = getattr(block, parent_name)
            base = getattr(parent, attr)
            if isinstance(base, LoRALinear):
                raise ValueError(f"block {i}: {parent_name}.{attr} already has LoRA")
            out = base.weight.shape[1]
            spans = {t: (span if span is not None else (0, out)) for t, span in parts.items()}
            setattr(parent, attr, LoRALinear(base, spans, lora.rank, lora.alpha, lora.dropout))
    return [r"lora_\w+"]
