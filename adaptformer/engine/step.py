"""One optimizer step as the trainer and the benchmark run it: forward and backward
under paddle.amp, gradients summed over micro-batches, then a (loss-scaled) update.

Gradient accumulation: micro-batch j of a group of g contributes loss_j / g, so a
group of equal micro-batches gives the gradient of one batch g times as large.
Under DataParallel the gradient all-reduce runs on the group's last micro-batch only.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Tuple

import paddle
import paddle.nn as nn

from adaptformer.config import AmpConfig, Config, ConfigError


class TrainStep:
    def __init__(self, net: nn.Layer, optimizer: paddle.optimizer.Optimizer, loss_fn, amp: AmpConfig):
        self.net = net
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.amp = amp
        # Loss scaling guards float16 gradients against underflow; bfloat16 has float32's range.
        self.scaler = paddle.amp.GradScaler(
            enable=amp.enabled and amp.dtype == "float16", init_loss_scaling=amp.init_loss_scaling
        )

    def autocast(self):
        return paddle.amp.auto_cast(enable=self.amp.enabled, level=self.amp.level, dtype=self.amp.dtype)

    def forward_backward(self, images, labels, weight: float = 1.0, sync: bool = True) -> Tuple:
        """Adds weight * d(loss)/d(params) to the gradients; returns (loss, logits).
        sync=False skips the DataParallel all-reduce (a group's earlier micro-batches)."""
        skip_all_reduce = not sync and isinstance(self.net, paddle.DataParallel)
        with self.net.no_sync() if skip_all_reduce else contextlib.nullcontext():
            with self.autocast():
                logits = self.net(images)
                loss = self.loss_fn(logits, labels)
            self.scaler.scale(loss * weight if weight != 1.0 else loss).backward()
        return loss, logits

    def update(self) -> None:
        """Apply the summed gradients (skipped by the scaler if they overflowed) and clear them."""
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.clear_grad()

    def state_dict(self) -> Dict:
        return self.scaler.state_dict() if self.scaler.is_enable() else {}

    def set_state_dict(self, state: Dict) -> None:
        if state and self.scaler.is_enable():
            self.scaler.load_state_dict(state)


def decorate_for_amp(model: nn.Layer, optimizer, amp: AmpConfig) -> None:
    """O2 casts the parameters to the low-precision dtype and keeps float32 master
    weights in the optimizer; checkpoints are still saved in float32."""
    if amp.enabled and amp.level == "O2":
        paddle.amp.decorate(models=model, optimizers=optimizer, level="O2", dtype=amp.dtype, save_dtype="float32")


def group_sizes(num_batches: int, accumulate_steps: int):
    """Micro-batches per optimizer step over an epoch: full groups, then the remainder."""
    full, rest = divmod(num_batches, accumulate_steps)
    return [accumulate_steps] * full + ([rest] if rest else [])


def set_recompute(model: nn.Layer, cfg: Config) -> None:
    if not cfg.train.recompute:
        return
    if not hasattr(model, "set_grad_checkpointing"):
        raise ConfigError(f"train.recompute: model {cfg.model.name} cannot recompute its blocks")
    model.set_grad_checkpointing(True)
