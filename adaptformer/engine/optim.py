"""Optimizer and per-step learning-rate schedule from the config."""
from __future__ import annotations

import math
from typing import Any, Dict, List

import paddle

from adaptformer import freeze
from adaptformer.config import ConfigError, OptimizerConfig, SchedulerConfig


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


def parameter_groups(cfg: OptimizerConfig, named: Dict[str, Any]) -> List:
    """The parameters, or with optimizer.lr_mult, groups whose `learning_rate` multiplies the
    scheduled learning rate (Paddle's parameter groups); the first matching pattern wins."""
    if not cfg.lr_mult:
        return list(named.values())
    groups: Dict[float, List] = {}
    used = set()
    for name, param in named.items():
        pattern = next((p for p in cfg.lr_mult if freeze.name_matches(name, [p])), None)
        used.add(pattern)
        groups.setdefault(1.0 if pattern is None else float(cfg.lr_mult[pattern]), []).append(param)
    unused = [p for p in cfg.lr_mult if p not in used]
    if unused:
        raise ConfigError(f"optimizer.lr_mult: patterns {unused} match no trainable parameter")
    return [{"params": params, "learning_rate": mult} for mult, params in groups.items()]


def build_optimizer(cfg: OptimizerConfig, named: Dict[str, Any], scheduler) -> paddle.optimizer.Optimizer:
    """Only the given (trainable) parameters, by name, get optimizer state."""
    if not named:
        raise ValueError("no trainable parameters: check method and method.trainable")
    bad = {p: m for p, m in cfg.lr_mult.items() if not (isinstance(m, (int, float)) and math.isfinite(m) and m > 0)}
    if bad:
        raise ConfigError(f"optimizer.lr_mult: multipliers must be positive numbers, got {bad}")
    parameters = parameter_groups(cfg, named)
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
    if cfg.name == "adam":  # the iFormer seed notebook's: L2 weight decay on every parameter it trains
        beta1, beta2 = cfg.betas
        return paddle.optimizer.Adam(
            scheduler, beta1, beta2, parameters=parameters, weight_decay=cfg.weight_decay or None, grad_clip=clip
        )
    raise ValueError(f"unknown optimizer '{cfg.name}'")
