"""One optimizer step as the trainer and the benchmark run it: forward and backward
under paddle.amp, gradients summed over micro-batches, then a (loss-scaled) update.

Gradient accumulation: micro-batch j of a group of g contributes loss_j / g, so a
group of equal micro-batches gives the gradient of one batch g times as large.
Under DataParallel the gradient all-reduce runs on the group's last micro-batch only.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Dict, List, Tuple

import paddle
import paddle.nn as nn

from adaptformer.config import AmpConfig, Config, ConfigError


def autocast(amp: AmpConfig):
    """The run's mixed precision: its steps, its evaluations and its final test all run under it
    (under O2 the weights are float16/bfloat16, so float32 images must be cast for them too)."""
    return paddle.amp.auto_cast(enable=amp.enabled, level=amp.level, dtype=amp.dtype)


def float32_logits(logits):
    """Logits as the loss, the meter and .numpy() need them: a bfloat16 tensor's .numpy() gives
    its uint16 bit patterns, and argsort over those ranks classes wrongly."""
    return logits if logits.dtype == paddle.float32 else logits.astype("float32")


class TrainStep:
    def __init__(self, net: nn.Layer, optimizer: paddle.optimizer.Optimizer, loss_fn, amp: AmpConfig):
        self.net = net
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.amp = amp
        # Loss scaling guards float16 gradients against underflow; bfloat16 has float32's range.
        # The scale halves on every overflow (PyTorch's default; Paddle's waits for two), so an
        # update skipped by the scaler is the one after which the scale went down (update()).
        self.scaler = paddle.amp.GradScaler(
            enable=amp.enabled and amp.dtype == "float16", init_loss_scaling=amp.init_loss_scaling,
            decr_every_n_nan_or_inf=1,
        )

    def autocast(self):
        return autocast(self.amp)

    def forward_backward(self, images, labels, weight: float = 1.0, sync: bool = True) -> Tuple:
        """Adds weight * d(loss)/d(params) to the gradients; returns (loss, logits).
        sync=False skips the DataParallel all-reduce (a group's earlier micro-batches)."""
        skip_all_reduce = not sync and isinstance(self.net, paddle.DataParallel)
        with self.net.no_sync() if skip_all_reduce else contextlib.nullcontext():
            with self.autocast():
                logits = float32_logits(self.net(images))
                loss = self.loss_fn(logits, labels)
            self.scaler.scale(loss * weight if weight != 1.0 else loss).backward()
        return loss, logits

    def update(self) -> bool:
        """Apply the summed gradients and clear them; False when the scaler skipped the update
        because they overflowed (the caller then leaves the LR schedule where it is)."""
        before = self.scaler.get_loss_scaling() if self.scaler.is_enable() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.clear_grad()
        return before is None or float(self.scaler.get_loss_scaling()) >= float(before)

    def state_dict(self) -> Dict:
        return self.scaler.state_dict() if self.scaler.is_enable() else {}

    def set_state_dict(self, state: Dict) -> None:
        if state and self.scaler.is_enable():
            self.scaler.load_state_dict(state)


def decorate_for_amp(model: nn.Layer, optimizer, amp: AmpConfig) -> None:
    """O2 casts the parameters to the low-precision dtype and keeps float32 master weights in the
    optimizer; checkpoints are still saved in float32. The layers that train whole (a method's
    layers, the head) are left in float32: what is tuned and saved is then the weights
    themselves, not float32 copies of rounded ones, and the adapter's scale stays float32."""
    if amp.enabled and amp.level == "O2":
        paddle.amp.decorate(models=model, optimizers=optimizer, level="O2", dtype=amp.dtype, save_dtype="float32",
                            excluded_layers=trained_whole(model))


def trained_whole(model: nn.Layer) -> List[nn.Layer]:
    """The layers whose own parameters all train, unless that is every layer (full fine-tuning)."""
    owning = [layer for layer in model.sublayers(include_self=True) if layer.parameters(include_sublayers=False)]
    whole = [layer for layer in owning if all(not p.stop_gradient for p in layer.parameters(include_sublayers=False))]
    return [] if len(whole) == len(owning) else whole


# Paddle's scaled_dot_product_attention logs the kernel it picks at debug level on this logger.
SDPA_LOGGER = "paddle.nn.functional.sdpa"


@contextlib.contextmanager
def attention_kernels():
    """Collects the kernels Paddle's scaled_dot_product_attention picks while the block runs
    ('flash_attn', 'mem_efficient' or 'math'): the list yielded fills in as calls are made."""
    chosen: List[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith("Selected backend:"):
                chosen.append(message.split(":", 1)[1].strip())

    logger = logging.getLogger(SDPA_LOGGER)
    level, handlers, propagate = logger.level, logger.handlers[:], logger.propagate
    # Only the catcher sees the debug records while it listens (Paddle's own handler would print them).
    logger.handlers, logger.propagate = [Catch(logging.DEBUG)], False
    logger.setLevel(logging.DEBUG)
    try:
        yield chosen
    finally:
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


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
