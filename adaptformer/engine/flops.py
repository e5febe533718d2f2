"""Floating-point operations of one training step, counted from the model's own layers.

One forward pass of a single image, with hooks on every matrix product, gives each
product's shape and whether the backward pass needs its input gradient (the input
is not stop_gradient) and its weight gradient (the weight is trainable). Then, for a
product of 2*M*K*N forward FLOPs, the backward costs the same again for the input
gradient and again for the weight gradient, each only when needed. So a frozen
backbone skips the weight-gradient half, and layers before the first trainable
parameter skip the backward entirely.

Counted: Linear layers (and LoRA's factors), convolutions (grouped and depthwise ones by
their groups), the two matrix products of attention (a ViT's, and an iFormer's over its
average-pooled positions). Not counted: normalisation, activations, softmax, pooling,
upsampling, residual adds and the optimizer update, a few percent of a ViT's total. A
multiply-add is 2 FLOPs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np
import paddle
import paddle.nn as nn

from adaptformer import freeze
from adaptformer.models.iformer import LowMixer
from adaptformer.models.layers import Attention
from adaptformer.models.lora import LoRALinear


@dataclass
class FlopCount:
    """FLOPs per image; scale by the batch size for a step."""

    forward: float
    backward_input: float  # gradients with respect to activations
    backward_weight: float  # gradients with respect to trainable weights
    recompute: float = 0.0  # forward passes repeated by train.recompute

    @property
    def backward(self) -> float:
        return self.backward_input + self.backward_weight

    @property
    def train(self) -> float:
        return self.forward + self.backward + self.recompute

    def as_dict(self, batch: int = 1) -> Dict[str, float]:
        return {
            "forward": self.forward * batch,
            "backward_input": self.backward_input * batch,
            "backward_weight": self.backward_weight * batch,
            "recompute": self.recompute * batch,
            "train": self.train * batch,
        }


def _needs_grad(t) -> bool:
    return not t.stop_gradient


def _trainable(*params) -> bool:
    return any(p is not None and not p.stop_gradient for p in params)


class _Counter:
    def __init__(self):
        self.forward = self.backward_input = self.backward_weight = 0.0
        self.by_prefix: Dict[str, float] = {}  # forward FLOPs per sub-layer name, for recompute

    def product(self, name: str, flops: float, input_grad: bool, weight_grad: bool, operands: int = 1) -> None:
        """`operands`: how many of the product's inputs are activations needing a gradient."""
        self.forward += flops
        self.backward_input += operands * flops if input_grad else 0.0
        self.backward_weight += flops if weight_grad else 0.0
        self.by_prefix[name] = self.by_prefix.get(name, 0.0) + flops

    def hook(self, name: str, layer: nn.Layer):
        def linear(layer, inputs, output):
            x = inputs[0]
            rows = float(np.prod(x.shape[:-1]))
            d_in, d_out = layer.weight.shape
            self.product(name, 2 * rows * d_in * d_out, _needs_grad(x), _trainable(layer.weight))

        def lora(layer, inputs, output):
            linear(layer, inputs, output)
            x = inputs[0]
            rows = float(np.prod(x.shape[:-1]))
            d_in = layer.weight.shape[0]
            for part, (start, stop) in layer.parts.items():
                a, b = layer._factors(part)
                # x @ A needs x's gradient only if x needs one; (xA) @ B always does when A trains.
                self.product(name, 2 * rows * d_in * layer.rank, _needs_grad(x), _trainable(a))
                up_flops = 2 * rows * layer.rank * (stop - start)
                self.product(name, up_flops, _needs_grad(x) or _trainable(a), _trainable(b))

        def conv(layer, inputs, output):
            x = inputs[0]
            kernel = float(np.prod(layer.weight.shape[1:]))  # in_channels / groups * kh * kw
            self.product(name, 2 * float(np.prod(output.shape)) * kernel, _needs_grad(x), _trainable(layer.weight))

        def attention(layer, inputs, output):
            b, n, c = inputs[0].shape
            # q @ k^T and attn @ v: both operands of each are activations.
            grad = _needs_grad(inputs[0]) or _trainable(*layer.qkv.parameters())
            self.product(name, 2 * 2.0 * b * n * n * c, grad, False, operands=2)

        def pooled_attention(layer, inputs, output):
            b, c, h, w = inputs[0].shape  # NCHW; attention runs over the pooled grid
            n = (h // layer.pool_size) * (w // layer.pool_size)
            grad = _needs_grad(inputs[0]) or _trainable(*layer.qkv.parameters())
            self.product(name, 2 * 2.0 * b * n * n * c, grad, False, operands=2)

        if isinstance(layer, LoRALinear):
            return lora
        if isinstance(layer, nn.Linear):
            return linear
        if isinstance(layer, (nn.Conv3D, nn.Conv2D, nn.Conv1D)):  # Conv3D: a video ViT's tubelet embedding
            return conv
        if isinstance(layer, Attention):
            return attention
        if isinstance(layer, LowMixer):
            return pooled_attention
        return None


def count_flops(model: nn.Layer, img_size: int) -> FlopCount:
    """FLOPs per image (per clip for a video model) of a training step of `model` as it is set up now (trainable
    parameters, train/eval modes of its parts, recomputation)."""
    counter = _Counter()
    recomputed = set()
    handles = []
    for name, layer in model.named_sublayers():
        hook = counter.hook(name, layer)
        if hook is not None:
            handles.append(layer.register_forward_post_hook(hook))
    blocks = getattr(model, "blocks", None)
    if getattr(model, "grad_checkpointing", False) and blocks is not None:
        for i, block in enumerate(blocks):
            def mark(layer, inputs, prefix=f"blocks.{i}."):
                if _needs_grad(inputs[0]):
                    recomputed.add(prefix)
            handles.append(block.register_forward_pre_hook(mark))
    was_training = model.training
    freeze.set_train_mode(model)
    try:
        with paddle.set_grad_enabled(True):
            model(paddle.zeros(model.input_shape(img_size, 1)))
    finally:
        for h in handles:
            h.remove()
        if not was_training:
            model.eval()
    again = sum(f for name, f in counter.by_prefix.items() if any(name.startswith(p) for p in recomputed))
    return FlopCount(counter.forward, counter.backward_input, counter.backward_weight, again)
