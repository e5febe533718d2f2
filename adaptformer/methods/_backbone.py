"""The one check every attach function makes first: the model implements the tuning protocol
(models/tuning.py). Anything else gets a one-line error naming the method, never an AttributeError."""
from __future__ import annotations

from typing import List, Optional, Tuple

import paddle.nn as nn

from adaptformer.models.tuning import TunableModel, block_indices


def tunable(model: nn.Layer, method: str) -> TunableModel:
    if not isinstance(model, TunableModel):
        raise ValueError(f"method {method!r} needs a backbone with tuning blocks (models/tuning.py: ViT, iFormer); "
                         f"{type(model).__name__} has none")
    return model


def chosen_blocks(model: nn.Layer, method: str, blocks: Optional[List[int]]) -> Tuple[List[nn.Layer], List[int]]:
    """(every tuning block, the indices `blocks` names (None: all)), the indices checked with
    method.<method>.blocks named in errors."""
    all_blocks = tunable(model, method).tuning_blocks()
    return all_blocks, block_indices(len(all_blocks), blocks, f"method.{method}.blocks")
