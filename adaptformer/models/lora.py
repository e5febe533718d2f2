"""LoRA (Hu et al., ICLR 2022) on a ViT's Linear layers.

`LoRALinear` takes over an `nn.Linear`'s own weight and bias (so parameter names
such as blocks.0.attn.qkv.weight do not change) and adds low-rank updates,
(alpha / rank) * B A x, on chosen slices of its output: the fused qkv
projection gets separate updates for q, k and/or v. B starts at zero, so a
freshly wrapped layer computes exactly what the Linear did. `merge_lora` folds
the updates into the weights and gives back plain Linear layers for inference;
`unmerge_lora` puts the LoRALinear layers back.
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from adaptformer.models.linear import Linear


class LoRALinear(nn.Layer):
    def __init__(self, base: nn.Linear, parts: Dict[str, Tuple[int, int]], rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        in_features, out_features = base.weight.shape
        self.weight = base.weight
        self.bias = base.bias
        self.rank = rank
        self.scaling = alpha / rank
        self.parts = dict(sorted(parts.items(), key=lambda kv: kv[1][0]))  # output order
        self.dropout = nn.Dropout(dropout)
        self.out_features = out_features
        bound = 1.0 / math.sqrt(in_features)  # A: Kaiming-uniform with a = sqrt(5), as nn.Linear's default
        for name, (start, stop) in self.parts.items():
            if not 0 <= start < stop <= out_features:
                raise ValueError(f"LoRA part {name} [{start}, {stop}) is outside the {out_features} outputs")
            a = self.create_parameter([in_features, rank], default_initializer=nn.initializer.Uniform(-bound, bound))
            b = self.create_parameter([rank, stop - start], default_initializer=nn.initializer.Constant(0.0))
            self.add_parameter(f"lora_{name}_A", a)
            self.add_parameter(f"lora_{name}_B", b)

    def _across_outputs(self, part, zeros):
        """Concatenate part(name) for each updated slice, in output order, with zeros(width)
        for the outputs no slice covers."""
        pieces, end = [], 0
        for name, (start, stop) in self.parts.items():
            if start > end:
                pieces.append(zeros(start - end))
            pieces.append(part(name))
            end = stop
        if end < self.out_features:
            pieces.append(zeros(self.out_features - end))
        return paddle.concat(pieces, axis=-1)

    def _factors(self, name):
        return getattr(self, f"lora_{name}_A"), getattr(self, f"lora_{name}_B")

    def delta_weight(self):
        """The [in, out] update the low-rank factors add to the weight."""
        rows = self.weight.shape[0]
        return self._across_outputs(
            lambda name: self._factors(name)[0] @ self._factors(name)[1] * self.scaling,
            lambda width: paddle.zeros([rows, width], dtype=self.weight.dtype),
        )

    def forward(self, x):
        h = self.dropout(x)
        update = self._across_outputs(
            lambda name: (h @ self._factors(name)[0]) @ self._factors(name)[1] * self.scaling,
            lambda width: paddle.zeros([*h.shape[:-1], width], dtype=h.dtype),
        )
        return F.linear(x, self.weight, self.bias) + update

    def extra_repr(self) -> str:
        return f"parts={list(self.parts)}, rank={self.rank}, scaling={self.scaling:g}"


# Where a merged Linear keeps the LoRALinear it replaced (outside the layer's registries, so
# the merged model's state dict and sub-layers are those of a plain ViT).
_MERGED_FROM = "_merged_from_lora"


def _merged_linear(lora: LoRALinear, reversible: bool) -> Linear:
    """The package's Linear (as in every ViT block) holding W + delta in a weight of its own and
    the LoRALinear's own bias object, so a frozen bias stays frozen and a trained one trains."""
    in_features, out_features = lora.weight.shape
    linear = Linear(in_features, out_features, bias_attr=False)
    with paddle.no_grad():
        linear.weight.set_value(lora.weight + lora.delta_weight())
    linear.weight.stop_gradient = lora.weight.stop_gradient
    linear.bias = lora.bias
    object.__setattr__(linear, _MERGED_FROM, lora if reversible else None)
    return linear


def _replace_children(model: nn.Layer, replace) -> int:
    """setattr(parent, name, replace(child)) wherever that gives a layer; returns how many."""
    count = 0
    for parent in model.sublayers(include_self=True):
        for name, child in list(parent.named_children()):
            new = replace(child)
            if new is not None:
                setattr(parent, name, new)
                count += 1
    return count


def merge_lora(model: nn.Layer, reversible: bool = True) -> int:
    """Replace every LoRALinear in `model` by a plain Linear holding W + delta; returns how many.

    Parameter names stay those of the original model, so the result saves and loads as
    a plain ViT checkpoint. The original weight W is not changed (a backbone shared by several
    tasks stays intact); unless `reversible` is false, each merged layer keeps the LoRALinear it
    replaced, W and factors included, for `unmerge_lora` (that memory is freed only without it)."""
    return _replace_children(
        model, lambda child: _merged_linear(child, reversible) if isinstance(child, LoRALinear) else None
    )


def unmerge_lora(model: nn.Layer) -> int:
    """Put back the LoRALinear layers `merge_lora` replaced: the same objects, so W, the factors
    and the bias are restored exactly (a change made to a merged weight afterwards is dropped).
    Returns how many."""
    if any(is_merged(layer) and layer.__dict__[_MERGED_FROM] is None for layer in model.sublayers()):
        raise ValueError("the model was merged with merge_lora(reversible=False): its LoRA layers are gone")
    return _replace_children(model, lambda child: child.__dict__.get(_MERGED_FROM))


def is_merged(layer: nn.Layer) -> bool:
    """Whether `layer` is a Linear that merge_lora made."""
    return _MERGED_FROM in layer.__dict__
