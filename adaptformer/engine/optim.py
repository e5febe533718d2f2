"""Optimizer and per-step learning-rate schedule from the config."""
from __future__ import annotations

from typing import List

import paddle

from ..config import OptimizerConfig, SchedulerConfig


def build_scheduler(opt: OptimizerConfig, sched: SchedulerConfig, steps_per_epoch: int, epochs: int):
    total = steps_per_epoch * epochs
    warmup = min(total, sched.warmup_steps + int(round(sched.warmup_epochs * steps_per_epoch)))
    if sched.name == "cosine":
        main = paddle.optimizer.lr.CosineAnnealingDecay(opt.lr, T_max=max(1, total - warmup), eta_min=sched.min_lr)
    else:
        main = opt.lr
    if warmup > 0:
        return paddle.optimizer.lr.LinearWarmup(main, warmup, sched.warmup_start_lr, opt.lr)
    if isinstance(main, float):
        return paddle.optimizer.lr.LambdaDecay(opt.lr, lambda step: 1.0)
    return main


def build_optimizer(cfg: OptimizerConfig, parameters: List, scheduler) -> paddle.optimizer.Optimizer:
    """Only the given (trainable) parameters get optimizer state."""
    if not parameters:
        raise ValueError("no trainable parameters: check method and method.trainable")
    clip = paddle.nn.ClipGradByGlobalNorm(cfg.grad_clip_norm) if cfg.grad_clip_norm else None
    if cfg.name == "momentum":
        return paddle.optimizer.Momentum(
            scheduler, cfg.momentum, parameters=parameters, weight_decay=cfg.weight_decay or None, grad_clip=clip
        )
    if cfg.name == "sgd":
        return paddle.optimizer.SGD(scheduler, parameters=parameters, weight_decay=cfg.weight_decay or None, grad_clip=clip)
    if cfg.name == "adamw":
        beta1, beta2 = cfg.betas
        return paddle.optimizer.AdamW(
            scheduler, beta1, beta2, parameters=parameters, weight_decay=cfg.weight_decay, grad_clip=clip
        )
    raise ValueError(f"unknown optimizer '{cfg.name}'")
