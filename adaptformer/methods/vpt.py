"""Visual prompt tuning (Jia et al., ECCV 2022): learnable tokens after the class token
(models/prompt.py). Only a backbone that runs its blocks on one token sequence has a place for
them (TunableModel.prompt_shape); the others say why not, in one line."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

from adaptformer.errors import ConfigError
from adaptformer.methods.registry import MethodSpec

TRAINS = ["prompt"]


@dataclass
class VPTConfig:
    """Visual prompt tuning (Jia et al. 2022): learnable tokens after the class token."""

    num_tokens: int = 10
    deep: bool = True  # deep: a fresh set before every block; shallow: before the first only
    dropout: float = 0.0  # on the prompt tokens


def attach(model, cfg) -> List[str]:
    from adaptformer.methods._backbone import tunable

    backbone = tunable(model, "vpt")
    try:
        backbone.prompt_shape()
    except ValueError as e:
        raise ConfigError(f"method 'vpt' does not apply: {e}") from None
    backbone.add_prompts(cfg.vpt.num_tokens, deep=cfg.vpt.deep, dropout=cfg.vpt.dropout)
    return TRAINS


def prompt_layers():
    from adaptformer.models.prompt import PromptTokens

    return (PromptTokens,)


SPEC = MethodSpec("vpt", section=VPTConfig, positive=("num_tokens",), fractions=("dropout",), attach=attach,
                  modules=prompt_layers, order=3)
