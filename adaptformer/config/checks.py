"""What a typed config must also satisfy: method names and settings (from the method registry),
the consistency of sections, model names, and bounds on every size."""
from __future__ import annotations

import math
import re
from typing import Dict, List

from adaptformer.errors import ConfigError
from adaptformer.config.build import _where
from adaptformer.config.schema import Config

def method_sections() -> List[str]:
    from adaptformer.methods.registry import sections

    return sections()


def _check_method(m, origin: Dict[str, str], fail) -> None:
    """method.name against the registry (methods/registry.py), then each chosen method's settings."""
    from adaptformer.methods.registry import METHODS

    names = m.names
    for n in names:
        if n not in METHODS:
            fail("method.name", f"has unknown method {n!r} (known: {', '.join(METHODS)}; join several with '+')")
    if len(set(names)) != len(names):
        fail("method.name", f"names a method twice: {m.name!r}")
    if len(names) > 1:
        slots: Dict[str, str] = {}
        for n in names:
            spec = METHODS[n]
            if spec.exclusive:
                fail("method.name", f"{n!r} cannot be combined with other methods, got {m.name!r}")
            if spec.slot in slots:
                fail("method.name", f"{slots[spec.slot]!r} and {n!r} both put a module in each block's {spec.slot} slot")
            if spec.slot:
                slots[spec.slot] = n
    for spec in METHODS.values():
        if spec.section is not None and spec.name not in names:
            for key in origin:
                if key.startswith(f"method.{spec.name}."):
                    fail(key, f"is a setting of method {spec.name!r}; method.name is {m.name!r}")
    for n in names:
        spec = METHODS[n]
        if spec.section is None:
            continue
        section = getattr(m, n)

        def fail_in(key: str, msg: str, n=n):
            fail(f"method.{n}.{key}", msg)

        for key in spec.positive:
            if getattr(section, key) < 1:
                fail_in(key, f"must be >= 1, got {getattr(section, key)}")
        for key in spec.fractions:
            if not 0.0 <= getattr(section, key) < 1.0:
                fail_in(key, f"must be in [0, 1), got {getattr(section, key)}")
        if spec.check is not None:
            spec.check(section, fail_in)


def _check_consistency(cfg: Config, origin: Dict[str, str], src: str) -> None:
    def fail(key: str, msg: str):
        raise ConfigError(f"{_where(origin, key, src)}: {key} {msg}")

    _check_method(cfg.method, origin, fail)
    if cfg.model.num_classes < 1:
        fail("model.num_classes", f"must be >= 1, got {cfg.model.num_classes}")
    if cfg.train.epochs < 1:
        fail("train.epochs", f"must be >= 1, got {cfg.train.epochs}")
    if cfg.train.accumulate_steps < 1:
        fail("train.accumulate_steps", f"must be >= 1, got {cfg.train.accumulate_steps}")
    if cfg.train.amp.init_loss_scaling <= 0:
        fail("train.amp.init_loss_scaling", f"must be > 0, got {cfg.train.amp.init_loss_scaling}")
    if cfg.data.batch_size < 1:
        fail("data.batch_size", f"must be >= 1, got {cfg.data.batch_size}")
    check_data(cfg.data, fail)
    _check_kind_sections(cfg.data, origin, fail)
    if cfg.data.classes is not None and len(cfg.data.classes) != cfg.model.num_classes:
        fail("model.num_classes", f"is {cfg.model.num_classes} but data.classes keeps {len(cfg.data.classes)} classes")
    if cfg.optimizer.lr <= 0:
        fail("optimizer.lr", f"must be > 0, got {cfg.optimizer.lr}")
    _check_model_name(cfg, fail)
    _check_ranges(cfg, fail)


def check_data(data, fail) -> None:
    """The rules of a data section, whether it came from a file (load_config) or was built in
    code (data/transforms.py checks it again there): fail(key, message) raises."""
    if len(data.mean) != 3 or len(data.std) != 3:
        fail("data.mean", f"and data.std must each hold 3 values (RGB), got {data.mean} and {data.std}")
    if not all(math.isfinite(v) and abs(v) <= 1e3 for v in data.mean):
        fail("data.mean", f"must hold finite values of pixel scale (0..1), got {data.mean}")
    if not all(math.isfinite(v) and MIN_STD <= v <= 1e3 for v in data.std):
        fail("data.std", f"must hold values between {MIN_STD} and 1000 (pixels are divided by them), got {data.std}")
    if data.classes is not None and (len(set(data.classes)) != len(data.classes) or not data.classes):
        fail("data.classes", f"must be a non-empty list of distinct class ids, got {data.classes}")
    if data.img_size < 1:
        fail("data.img_size", f"must be >= 1, got {data.img_size}")
    aug = data.augment
    for key in ("hflip", "color_jitter_p"):
        if not 0.0 <= getattr(aug, key) <= 1.0:
            fail(f"data.augment.{key}", f"is a probability and must be in [0, 1], got {getattr(aug, key)}")
    for key in ("random_crop_padding", "brightness", "contrast", "rotation"):
        if getattr(aug, key) < 0:
            fail(f"data.augment.{key}", f"must be >= 0 (0 = off), got {getattr(aug, key)}")
    if aug.random_resized_crop and aug.random_crop_padding != 0:
        fail(
            "data.augment.random_crop_padding",
            f"must be 0 when data.augment.random_resized_crop is true, got {aug.random_crop_padding}",
        )
    if aug.train_resize is not None and (aug.random_resized_crop or aug.train_resize < data.img_size):
        fail("data.augment.train_resize", f"must be >= data.img_size ({data.img_size}) and goes without "
             f"random_resized_crop, got {aug.train_resize}")
    if len(aug.rrc_scale) != 2 or not 0 < aug.rrc_scale[0] <= aug.rrc_scale[1] <= 1:
        fail("data.augment.rrc_scale", f"must be [min, max] with 0 < min <= max <= 1, got {list(aug.rrc_scale)}")
    if len(aug.rrc_ratio) != 2 or not 0 < aug.rrc_ratio[0] <= aug.rrc_ratio[1]:
        fail("data.augment.rrc_ratio", f"must be [min, max] with 0 < min <= max, got {list(aug.rrc_ratio)}")
    if data.eval_resize_crop is not None and not 0 < data.eval_resize_crop <= 1:
        fail("data.eval_resize_crop", f"is a crop fraction and must be in (0, 1], got {data.eval_resize_crop}")
    if not 0.0 <= data.val_fraction < 1.0:
        fail("data.val_fraction", f"is a fraction of the training images and must be in [0, 1), got {data.val_fraction}")


def _check_kind_sections(data, origin: Dict[str, str], fail) -> None:
    """data.<kind>.* only for the kind data.dataset names, then that kind's own rules."""
    from adaptformer.data.kinds import KINDS

    for kind in KINDS.values():
        if kind.section is None:
            continue
        if kind.name != data.dataset:
            for key in origin:
                if key.startswith(f"data.{kind.name}."):
                    fail(key, f"is a setting of data.dataset {kind.name}; data.dataset is {data.dataset!r}")
        elif kind.check is not None:
            kind.check(getattr(data, kind.name), lambda key, msg, n=kind.name: fail(f"data.{n}.{key}", msg))


def _check_model_name(cfg: Config, fail) -> None:
    from adaptformer.models.registry import list_models  # the registry fills when adaptformer.models is imported

    known = list_models()
    if cfg.model.name not in known:
        fail("model.name", f"is not a known model: {cfg.model.name!r} (known: {', '.join(known)})")


MAX_SEED = 2**32 - 1
MIN_STD = 1e-3  # pixel values are on a 0..1 scale; a smaller std makes inputs overflow to inf / NaN
MIN_EVAL_CROP = 0.25  # timm's crop_pct values run from 0.875 to 1; 0.25 resizes to 4x the input


def _check_ranges(cfg: Config, fail) -> None:
    """Values of the right type that would fail (or silently misbehave) only once training runs."""
    at_least = {
        "train.eval_every": (cfg.train.eval_every, 1),
        "train.log_every": (cfg.train.log_every, 1),
        "data.num_workers": (cfg.data.num_workers, 0),
        "data.img_size": (cfg.data.img_size, 1),
        "scheduler.warmup_steps": (cfg.scheduler.warmup_steps, 0),
        "scheduler.warmup_epochs": (cfg.scheduler.warmup_epochs, 0),
        "scheduler.warmup_start_lr": (cfg.scheduler.warmup_start_lr, 0),
        "scheduler.min_lr": (cfg.scheduler.min_lr, 0),
        "optimizer.weight_decay": (cfg.optimizer.weight_decay, 0),
    }
    if cfg.data.eval_batch_size is not None:
        at_least["data.eval_batch_size"] = (cfg.data.eval_batch_size, 1)
    for key, (value, low) in at_least.items():
        if value < low:
            fail(key, f"must be >= {low}, got {value}")
    if not 0 <= cfg.train.label_smoothing < 1:
        fail("train.label_smoothing", f"must be in [0, 1), got {cfg.train.label_smoothing}")
    if not 0 <= cfg.optimizer.momentum < 1:
        fail("optimizer.momentum", f"must be in [0, 1), got {cfg.optimizer.momentum}")
    betas = cfg.optimizer.betas
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        fail("optimizer.betas", f"must be [beta1, beta2], each in [0, 1), got {betas}")
    if cfg.optimizer.grad_clip_norm is not None and cfg.optimizer.grad_clip_norm <= 0:
        fail("optimizer.grad_clip_norm", f"must be > 0 (or null for no clipping), got {cfg.optimizer.grad_clip_norm}")
    # Sizes: each bounded, so a typo cannot ask for gigabytes (model sizes: models/budget.py).
    at_most = {
        "train.seed": (cfg.train.seed, 0, MAX_SEED),  # NumPy's seeds are 32-bit
        "data.val_seed": (cfg.data.val_seed, 0, MAX_SEED),
        "data.img_size": (cfg.data.img_size, 1, 4096),
        "data.synthetic_train_size": (cfg.data.synthetic_train_size, 1, 1_000_000),
        "data.synthetic_eval_size": (cfg.data.synthetic_eval_size, 1, 1_000_000),
        "data.batch_size": (cfg.data.batch_size, 1, 65_536),
        "data.num_workers": (cfg.data.num_workers, 0, 256),
        "train.epochs": (cfg.train.epochs, 1, 100_000),
    }
    for key, (value, low, high) in at_most.items():
        if not low <= value <= high:
            fail(key, f"must be between {low} and {high}, got {value}")
    paths = {"train.output_dir": cfg.train.output_dir, "data.data_dir": cfg.data.data_dir,
             "data.data_file": cfg.data.data_file, "model.pretrained": cfg.model.pretrained}
    for key, value in paths.items():
        if isinstance(value, str) and ("\0" in value or not value.strip()):
            fail(key, f"must be a path (no NUL byte, not blank), got {value!r}")
    if cfg.data.eval_resize_crop is not None and cfg.data.eval_resize_crop < MIN_EVAL_CROP:
        fail("data.eval_resize_crop", f"must be at least {MIN_EVAL_CROP} (the image is resized to img_size / crop "
             f"before the centre crop), got {cfg.data.eval_resize_crop}")
    for key, patterns in (("method.trainable", cfg.method.trainable), ("optimizer.lr_mult", list(cfg.optimizer.lr_mult))):
        for pattern in patterns:
            try:
                re.compile(pattern)
            except (re.error, RecursionError, OverflowError) as e:
                fail(key, f"holds {pattern!r}, not a valid regular expression ({e})")
