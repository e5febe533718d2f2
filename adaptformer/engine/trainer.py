"""The training loop: per-step LR schedule, per-epoch evaluation, last/best
checkpoints, and a resume that reproduces the uninterrupted run.

Reproducibility: every epoch starts by reseeding Python, NumPy and Paddle from
(seed, epoch, rank) and reshuffles with a sampler seeded the same way, so the
random stream of epoch k does not depend on how the run got there. Resuming at
an epoch boundary therefore continues exactly as if never stopped.
"""
from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
import warnings
from typing import Dict, List, Optional

import numpy as np
import paddle
import paddle.nn as nn

from adaptformer import freeze
from adaptformer.errors import Interrupted, short_reason
from adaptformer.weights.checkpoint import CheckpointError, load_checkpoint, read_resume_state, save_state
from adaptformer.config import Config
from adaptformer.data import epoch_choice, eval_split
from adaptformer.engine import dist, memory
from adaptformer.engine.logger import RunLogger
from adaptformer.engine.metrics import ClassificationMeter
from adaptformer.engine import optim_state
from adaptformer.engine.optim import build_optimizer, build_scheduler
from adaptformer.engine.step import TrainStep, attention_kernels, decorate_for_amp, float32_logits, group_sizes, set_recompute

LAST = "last.pdckpt"  # model + optimizer + progress, for --resume


def resume_file(out: str) -> str:
    """The checkpoint --resume continues from, or a one-line error naming it."""
    path = os.path.join(out, LAST)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: nothing to resume (no checkpoint in train.output_dir)")
    return path
BEST = "best.pdparams"  # model weights of the best eval epoch


def epoch_seed(seed: int, epoch: int) -> int:
    """The sampler's shuffling seed for `epoch`: NumPy takes 32-bit seeds, so the combination wraps
    (unchanged for every seed below 429,000, so earlier runs reshuffle as before)."""
    return (seed * 10_007 + epoch) % 2**32


def seed_everything(seed: int, epoch: int = 0) -> None:
    s = (seed * 1_000_003 + epoch * 1_009 + dist.rank()) % (2**31)
    random.seed(s)
    np.random.seed(s)
    paddle.seed(s)


class Trainer:
    def __init__(
        self,
        cfg: Config,
        model: nn.Layer,
        train_loader,
        eval_loader,
        class_names: List[str],
        logger: Optional[RunLogger] = None,
        backbone_fingerprint: Optional[str] = None,
    ):
        self.cfg = cfg
        self.model = model
        self.train_loader = train_loader
        self.eval_loader = eval_loader
        self.class_names = class_names
        self.out = cfg.train.output_dir
        self.logger = logger or RunLogger(self.out, enabled=dist.is_main(), log_every=cfg.train.log_every)
        set_recompute(model, cfg)
        # The float32 backbone's fingerprint, taken before AMP O2 casts it (tuned folders name it).
        self.backbone_fingerprint = backbone_fingerprint
        # Steps count optimizer updates: one per train.accumulate_steps micro-batches.
        self.steps_per_epoch = math.ceil(len(train_loader) / cfg.train.accumulate_steps)
        self.scheduler = build_scheduler(cfg.optimizer, cfg.scheduler, self.steps_per_epoch, cfg.train.epochs)
        self.optimizer = build_optimizer(cfg.optimizer, freeze.trainable_named_parameters(model), self.scheduler)
        decorate_for_amp(model, self.optimizer, cfg.train.amp)
        self.net = paddle.DataParallel(model) if dist.world_size() > 1 else model
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
        self.step = TrainStep(self.net, self.optimizer, self.loss_fn, cfg.train.amp)
        if cfg.train.amp.enabled and not memory.on_gpu():
            self.logger.info(f"train.amp: Paddle's AMP takes effect on a GPU only; on {paddle.device.get_device()} "
                             "the run computes in float32")
        self.start_epoch = 1
        self.epoch = 1  # the epoch running (for the interrupt message)
        self._interrupted = False  # set by Ctrl-C during fit, acted on between steps
        self.global_step = 0
        self.best = {"top1": -1.0, "epoch": 0}  # the epoch whose weights best.pdparams holds
        self.choice = epoch_choice(cfg.data, cfg.train.select_epoch)  # "last": every evaluated epoch replaces it

    # ------------------------------------------------------------------ state
    def state(self, epoch: int) -> Dict:
        return {
            "model": self.model.state_dict(),
            # keyed by parameter names (engine/optim_state.py); holds the LR schedule's position too
            "optimizer": optim_state.to_portable(self.optimizer.state_dict(), self.model),
            "optimizer_keys": optim_state.FORMAT,
            "loss_scaler": self.step.state_dict(),
            "epoch": epoch,
            "global_step": self.global_step,
            "best": dict(self.best),
            "backbone_fingerprint": self.backbone_fingerprint,
        }

    def resume(self) -> None:
        path = resume_file(self.out)
        self.logger.check_records()  # a damaged metrics.jsonl is refused before anything is restored
        state = read_resume_state(path)  # a weights-only file is refused here
        load_checkpoint(self.model, path, state=state["model"])  # every key and shape must match
        with warnings.catch_warnings():
            # LinearWarmup stores its inner schedule under an extra key, restores it,
            # and still warns that the key was "unused" (checked by the resume test).
            warnings.filterwarnings("ignore", message="There are some unused values in state_dict")
            optimizer = state["optimizer"]
            if state.get("optimizer_keys") == optim_state.FORMAT:
                optimizer = optim_state.from_portable(optimizer, self.model, path)
            # else: a checkpoint of an earlier version, keyed by the generated names of its own process
            try:
                self.optimizer.set_state_dict(optimizer)
            except (AssertionError, KeyError, TypeError, ValueError, AttributeError) as e:
                raise CheckpointError(f"{path}: its optimizer state does not fit this run's optimizer "
                                      f"({short_reason(e)})") from None
        self.step.set_state_dict(state.get("loss_scaler", {}))
        self.start_epoch = int(state["epoch"]) + 1
        self.global_step = int(state["global_step"])
        self.best = dict(state["best"])
        if isinstance(state.get("backbone_fingerprint"), str):
            self.backbone_fingerprint = state["backbone_fingerprint"]
        self.logger.truncate_records(int(state["epoch"]))
        self.logger.info(f"resumed from {path} at epoch {state['epoch']} (step {self.global_step})")

    # ------------------------------------------------------------------ loop
    def fit(self) -> Dict:
        # Ctrl-C only sets a flag, checked between steps: a KeyboardInterrupt raised inside Paddle's
        # backward pass comes out as an OSError from C++. A second Ctrl-C interrupts at once.
        self._interrupted = False

        def on_sigint(signum, frame):
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True

        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, on_sigint) if in_main_thread else None
        try:
            return self._fit()
        except KeyboardInterrupt:
            last = os.path.join(self.out, LAST)
            kept = f"last checkpoint kept: {last}" if os.path.exists(last) else "no checkpoint was saved yet"
            raise Interrupted(f"interrupted at epoch {self.epoch}, step {self.global_step}; {kept}") from None
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous)
            self.logger.close()

    def _check_interrupt(self) -> None:
        if self._interrupted:
            raise KeyboardInterrupt

    def _fit(self) -> Dict:
        cfg = self.cfg.train
        history = []
        for epoch in range(self.start_epoch, cfg.epochs + 1):
            self.epoch = epoch
            seed_everything(cfg.seed, epoch)
            sampler = self.train_loader.batch_sampler
            if hasattr(sampler, "set_epoch"):
                # DistributedBatchSampler shuffles with RandomState(epoch): fold the seed in.
                sampler.set_epoch(epoch_seed(cfg.seed, epoch))
            start = time.time()
            self._check_interrupt()
            train_stats = self.train_one_epoch(epoch)
            epoch_time = time.time() - start
            record = {"epoch": epoch, "step": self.global_step, "lr": self.optimizer.get_lr(), "epoch_time_s": epoch_time}
            record.update({f"train_{k}": v for k, v in train_stats.items()})
            self.logger.scalars({"train/epoch_loss": train_stats["loss"], "train/epoch_top1": train_stats["top1"]}, epoch)
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                eval_stats = self.evaluate().result()
                record.update({f"eval_{k}": v for k, v in eval_stats.items()})
                self.logger.scalars({f"eval/{k}": v for k, v in eval_stats.items() if k != "num_samples"}, epoch)
                if eval_stats["top1"] > self.best["top1"] or self.choice == "last":
                    self.best = {"top1": eval_stats["top1"], "top5": eval_stats.get("top5"), "epoch": epoch}
                    if dist.is_main():
                        save_state(self.model.state_dict(), os.path.join(self.out, BEST))
                self.logger.info(
                    f"epoch {epoch}: {eval_split(self.cfg.data)} top1 {eval_stats['top1']:.4f}"
                    + (f" top5 {eval_stats['top5']:.4f}" if "top5" in eval_stats else "")
                    + f" loss {eval_stats['loss']:.4f} (best {self.best['top1']:.4f} @ {self.best['epoch']}), "
                    f"{epoch_time:.1f} s"
                )
            if dist.is_main():
                save_state(self.state(epoch), os.path.join(self.out, LAST))
            self.logger.record(record)
            history.append(record)
        self.logger.close()
        dist.barrier()
        return {"best": self.best, "history": history}

    def train_one_epoch(self, epoch: int) -> Dict[str, float]:
        freeze.set_train_mode(self.model)
        meter = ClassificationMeter(len(self.class_names), topk=(1,))
        steps = self.steps_per_epoch
        self.logger.start_epoch(epoch, self.cfg.train.epochs, steps)
        groups = group_sizes(len(self.train_loader), self.cfg.train.accumulate_steps)
        step, in_group, skipped = 0, 0, 0
        for images, labels in self.train_loader:
            labels = labels.reshape([-1]).astype("int64")
            in_group += 1
            last = in_group == groups[step]
            if self.global_step == 0 and in_group == 1:
                with attention_kernels() as kernels:  # logged once per run: FlashAttention or not
                    loss, logits = self.step.forward_backward(images, labels, 1.0 / groups[step], sync=last)
                if kernels:
                    self.logger.info(f"attention: Paddle's scaled_dot_product_attention runs "
                                     f"{', '.join(sorted(set(kernels)))} ({paddle.device.get_device()})")
            else:
                loss, logits = self.step.forward_backward(images, labels, 1.0 / groups[step], sync=last)
            loss_value = float(loss)
            if not np.isfinite(loss_value):
                raise FloatingPointError(
                    f"loss became {loss_value} at epoch {epoch} step {step + 1}; lower optimizer.lr "
                    f"({self._kept_checkpoint(epoch)})"
                )
            meter.update(logits.numpy(), labels.numpy(), loss_value * labels.shape[0])
            if not last:
                continue
            self._check_interrupt()
            lr = self.optimizer.get_lr()
            if self.step.update():
                self.scheduler.step()
            else:  # overflowing float16 gradients: the scaler skipped it, so the schedule waits too
                skipped += 1
            self.global_step += 1
            step, in_group = step + 1, 0
            self.logger.step(step, steps, {"loss": loss_value, "lr": lr})
            if self.global_step % self.logger.log_every == 0:
                self.logger.scalars({"train/loss": loss_value, "train/lr": lr}, self.global_step)
        meter.all_reduce()
        result = meter.result()
        if skipped:
            self.logger.info(f"epoch {epoch}: {skipped} of {steps} updates skipped by the float16 loss scaler "
                             f"(overflow); loss scale now {float(self.step.scaler.get_loss_scaling()):g}")
        return {"loss": result["loss"], "top1": result["top1"], "skipped_steps": skipped}

    def _kept_checkpoint(self, failed_epoch: int) -> str:
        if failed_epoch > 1 and os.path.exists(os.path.join(self.out, LAST)):
            return f"{os.path.join(self.out, LAST)} of epoch {failed_epoch - 1} is kept"
        return "no checkpoint was saved yet"

    def evaluate(self) -> ClassificationMeter:
        with self.step.autocast():
            return evaluate_model(self.model, self.eval_loader, len(self.class_names))


@paddle.no_grad()
def view_averaged_logits(model: nn.Layer, inputs):
    """model(inputs); for samples that come as several views ([B, V, ...] with one more dimension than
    the model takes: a video's temporal clips x spatial crops), the mean of the V views' logits."""
    layer = getattr(model, "_layers", model)  # through paddle.DataParallel
    takes = getattr(layer, "input_shape", None)
    if takes is None or inputs.ndim != len(takes(inputs.shape[-1])) + 1:
        return model(inputs)
    batch, views = inputs.shape[:2]
    logits = model(inputs.reshape([batch * views] + list(inputs.shape[2:])))
    return logits.reshape([batch, views, -1]).astype("float32").mean(axis=1)


def evaluate_model(model: nn.Layer, loader, num_classes: int) -> ClassificationMeter:
    """Counts over the whole eval set, summed across processes."""
    model.eval()
    meter = ClassificationMeter(num_classes)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    for images, labels in loader:
        labels = labels.reshape([-1]).astype("int64")
        logits = float32_logits(view_averaged_logits(model, images))
        meter.update(logits.numpy(), labels.numpy(), float(loss_fn(logits, labels)))
    meter.all_reduce()
    return meter
