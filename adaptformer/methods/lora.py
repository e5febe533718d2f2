"""LoRA (Hu et al., ICLR 2022): every chosen block's Linear layers named by method.lora.targets
wrapped in models/lora.LoRALinear. Each block says where its targets are (TunableBlock.linear_sites:
q/k/v as slices of a fused qkv projection, proj, fc1, fc2); a target a block does not have is a
one-line error listing the ones it has."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from adaptformer.methods.registry import MethodSpec

TRAINS = [r"lora_\w+"]
TARGETS = ("q", "k", "v", "proj", "fc1", "fc2")


@dataclass
class LoRAConfig:
    """LoRA (Hu et al. 2021): W x + (alpha / rank) * B A x on chosen projections, B starting at zero."""

    rank: int = 8
    alpha: float = 8.0
    targets: List[str] = field(default_factory=lambda: ["q", "v"])  # of q, k, v, proj, fc1, fc2
    dropout: float = 0.0
    blocks: Optional[List[int]] = None


def check(section: LoRAConfig, fail) -> None:
    targets = section.targets
    if not targets or len(set(targets)) != len(targets) or any(t not in TARGETS for t in targets):
        fail("targets", f"must be distinct names from {list(TARGETS)}, got {targets}")


def attach(model, cfg) -> List[str]:
    from adaptformer.models.lora import LoRALinear
    from adaptformer.methods._backbone import chosen_blocks

    lora = cfg.lora
    blocks, indices = chosen_blocks(model, "lora", lora.blocks)
    for i in indices:
        block = blocks[i]
        sites = block.linear_sites()
        missing = [t for t in lora.targets if t not in sites]
        if missing:
            raise ValueError(f"method.lora.targets: {type(model).__name__} blocks have no Linear layer for "
                             f"{', '.join(repr(t) for t in missing)} (targets here: {', '.join(sites)})")
        by_layer = {}  # (parent, attribute) -> {target: output span}
        for target in lora.targets:
            site = sites[target]
            by_layer.setdefault((site.parent, site.attribute), {})[target] = site.span
        for (parent, attribute), parts in by_layer.items():
            base = getattr(parent, attribute)
            if isinstance(base, LoRALinear):
                where = next(n for n, layer in block.named_sublayers() if layer is parent)
                raise ValueError(f"block {i}: {where}.{attribute} already has LoRA")
            out = base.weight.shape[1]
            spans = {t: (span if span is not None else (0, out)) for t, span in parts.items()}
            setattr(parent, attribute, LoRALinear(base, spans, lora.rank, lora.alpha, lora.dropout))
    return TRAINS


def lora_layers():
    from adaptformer.models.lora import LoRALinear

    return (LoRALinear,)


SPEC = MethodSpec("lora", section=LoRAConfig, positive=("rank",), fractions=("dropout",), check=check,
                  attach=attach, modules=lora_layers, order=5)
