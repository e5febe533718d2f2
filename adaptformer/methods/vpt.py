"""Visual prompt tuning (Jia et al., ECCV 2022): learnable tokens after the class token
(models/prompt.py). Only a backbone that runs its blocks on one token sequence has a place for
them (TunableModel.prompt_shape); the others say why not, in one line."""
from __future__ import annotations

from typing import List

import paddle.nn as nn

from ..config import ConfigError, MethodConfig
from ._backbone import tunable

TRAINS = ["prompt"]


def add_prompts(model: nn.Layer, cfg: MethodConfig) -> List[str]:
    backbone = tunable(model, "vpt")
    try:
        backbone.prompt_shape()
    except ValueError as e:
        raise ConfigError(f"method 'vpt' does not apply: {e}") from None
    backbone.add_prompts(cfg.vpt.num_tokens, deep=cfg.vpt.deep, dropout=cfg.vpt.dropout)
    return TRAINS
