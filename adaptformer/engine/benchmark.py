"""Speed and memory of one tuning method's training and evaluation steps.

Run as `python -m adaptformer.engine.benchmark -c CONFIG --method M ...` it measures
one method in a process of its own (so peak memory is that method's alone) and
prints one JSON line; tools/benchmark.py runs it once per method and compares.

The steps are the trainer's own (TrainStep: AMP, gradient accumulation,
recomputation as configured) on one fixed random batch of the config's size, so
data loading is not part of the time. Each timed step ends with a device
synchronisation.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Dict, List

import paddle
import paddle.nn as nn

from adaptformer import freeze
from adaptformer.config import Config, load_config
from adaptformer.models.vit import VisionTransformer
from adaptformer.engine import memory
from adaptformer.engine.flops import count_flops
from adaptformer.engine.optim import build_optimizer
from adaptformer.engine.runner import build_loaders, build_model
from adaptformer.engine.step import TrainStep, decorate_for_amp, set_recompute
from adaptformer.engine.trainer import seed_everything


def _timed(fn, repeats: int, warmup: int) -> List[float]:
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        fn()
        if memory.on_gpu():  # CPU kernels finish before they return
            paddle.device.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def architecture(model: nn.Layer, cfg: Config) -> Dict:
    """What a reference implementation needs to build the same network. bench/torch_vit.py
    builds ViTs only: for another backbone (iFormer) reference_wiring is false."""
    if not isinstance(model, VisionTransformer):
        return {"img_size": cfg.data.img_size, "model": type(model).__name__, "num_classes": cfg.model.num_classes,
                "reference_wiring": False}
    blocks = model.blocks
    adapter = blocks[0].adapter
    arch = {
        "img_size": cfg.data.img_size,
        "patch": model.patch_embed.patch_size,
        "dim": model.embed_dim,
        "depth": len(blocks),
        "heads": blocks[0].attn.num_heads,
        "mlp_ratio": blocks[0].mlp.fc1.weight.shape[1] / model.embed_dim,
        "num_classes": cfg.model.num_classes,
    }
    if adapter is not None:
        arch.update(bottleneck=adapter.down_proj.weight.shape[1], adapter_dropout=adapter.dropout.p)
    # bench/torch_vit.py builds one wiring: a parallel ReLU adapter reading the stream, in every block.
    adapters = [b.adapter for b in blocks]
    arch["reference_wiring"] = all(a is None for a in adapters) or all(
        a is not None and a.position == "parallel" and a.adapter_input == "stream" and isinstance(a.act, nn.ReLU)
        for a in adapters
    )
    return arch


def measure(cfg: Config, steps: int = 5, warmup: int = 2, eval_steps: int = 5) -> Dict:
    seed_everything(cfg.train.seed)
    with paddle.utils.unique_name.guard():
        model = build_model(cfg, load_backbone=False, log=lambda *a, **k: None, batch_size=cfg.data.batch_size)
    set_recompute(model, cfg)
    params = freeze.summary(model)
    flops = count_flops(model, cfg.data.img_size)
    optimizer = build_optimizer(cfg.optimizer, freeze.trainable_named_parameters(model), cfg.optimizer.lr)
    decorate_for_amp(model, optimizer, cfg.train.amp)
    step = TrainStep(model, optimizer, nn.CrossEntropyLoss(), cfg.train.amp)

    batch, accumulate = cfg.data.batch_size, cfg.train.accumulate_steps
    images = paddle.randn(model.input_shape(cfg.data.img_size, batch))
    labels = paddle.randint(0, cfg.model.num_classes, [batch])

    def train_step():
        for j in range(accumulate):
            step.forward_backward(images, labels, 1.0 / accumulate, sync=j == accumulate - 1)
        step.update()

    @paddle.no_grad()
    def eval_step():
        with step.autocast():
            model(images)

    freeze.set_train_mode(model)
    baseline = memory.current_mb()
    memory.reset_peak()
    train_times = _timed(train_step, steps, warmup)
    peak = memory.peak_mb()
    reserved = memory.peak_reserved_mb()
    model.eval()
    eval_times = _timed(eval_step, eval_steps, warmup)

    images_per_step = batch * accumulate
    train_s = statistics.median(train_times)
    return {
        "framework": "paddle",
        "version": paddle.__version__,
        "method": cfg.method.name,
        "batch": images_per_step,
        "trainable_params": params.trainable,
        "total_params": params.total,
        "train_step_s": train_times,
        "eval_step_s": eval_times,
        "train_images_per_s": images_per_step / train_s,
        "eval_images_per_s": batch / statistics.median(eval_times),
        "baseline_mb": baseline,
        "peak_mb": peak,
        "peak_reserved_mb": reserved,
        "train_memory_mb": None if peak is None or baseline is None else peak - baseline,
        "flops_per_step": flops.as_dict(images_per_step),
        "achieved_flops_per_s": flops.train * images_per_step / train_s,
        "device": paddle.device.get_device(),
        "amp": cfg.train.amp.enabled and memory.on_gpu(),
        "recompute": cfg.train.recompute,
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "stride_kernel": paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"],
        "architecture": architecture(model, cfg),
    }


def gemm_flops_per_s(n: int = 2048, repeats: int = 15) -> float:
    """The practical peak: float32 FLOP/s of one large square matrix product."""
    a, b = paddle.randn([n, n]), paddle.randn([n, n])
    times = _timed(lambda: paddle.matmul(a, b), repeats, warmup=3)
    return 2.0 * n**3 / statistics.median(times)


def loader_images_per_s(cfg: Config, batches: int = 20) -> Dict:
    """Images/s the config's training DataLoader delivers (decoding, augmentation,
    data.num_workers workers), to compare with the training step's appetite."""
    loader, _, _ = build_loaders(cfg)
    batches = min(batches, len(loader))
    it = iter(loader)
    next(it)  # workers start and fill their queues
    start, seen = time.perf_counter(), 0
    for _, (images, _labels) in zip(range(batches - 1), it):
        seen += images.shape[0]
    elapsed = time.perf_counter() - start
    return {"loader_images_per_s": seen / elapsed if seen else None, "num_workers": cfg.data.num_workers,
            "dataset": cfg.data.dataset}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Measure one method (used by tools/benchmark.py).")
    parser.add_argument("-c", "--config")
    parser.add_argument("--method")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--eval-steps", type=int, default=5)
    parser.add_argument("--gemm", action="store_true", help="measure the matrix-product peak instead")
    parser.add_argument("--loader", action="store_true", help="measure the config's training DataLoader instead")
    args = parser.parse_args(argv)
    if args.gemm:
        result = {"gemm_flops_per_s": gemm_flops_per_s(), "device": paddle.device.get_device()}
    elif args.loader:
        result = loader_images_per_s(load_config(args.config, args.override))
    else:
        cfg = load_config(args.config, args.override, method=args.method)
        result = measure(cfg, args.steps, args.warmup, args.eval_steps)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
