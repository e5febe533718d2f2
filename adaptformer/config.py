"""Typed experiment configuration: YAML files with `_base_` inheritance and
`-o section.key=value` overrides, validated against the dataclasses below.

Every error names the file (or `-o`) the offending key came from and what was
expected. The resolved config is the single source of truth for a run and is
saved next to its outputs.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import yaml

from .errors import InputFileError, one_line
from .files.yaml_reader import parse_yaml, read_yaml


from .errors import ConfigError  # noqa: F401  (raised here; defined with the other errors)


# --------------------------------------------------------------------------- schema


@dataclass
class ModelConfig:
    name: str = "vit_base_patch3_32"
    num_classes: int = 10
    # Backbone checkpoint loaded before the tuning method is applied (None = random init).
    pretrained: Optional[str] = None
    # Start the head afresh even when the checkpoint's head has the right shape (a new task).
    reset_head: bool = False
    # Name patterns of model tensors the checkpoint may lack (they keep their fresh init); a
    # missing head is always re-initialised, anything else missing is an error.
    allow_missing: List[str] = field(default_factory=list)
    # How a position embedding is moved onto another patch grid (timm's defaults).
    pos_embed_interpolation: str = "bicubic"  # bicubic | bilinear
    pos_embed_antialias: bool = True
    # Any VisionTransformer constructor argument overriding the factory's value.
    kwargs: Dict[str, Any] = field(default_factory=dict)


def _method_config_class() -> type:
    """method: name, trainable, and one section per method that has settings (methods/registry.py)."""
    from .methods.registry import METHODS

    fields = [("name", str, field(default="adaptformer")), ("trainable", List[str], field(default_factory=list))]
    fields += [(s.name, s.section, field(default_factory=s.section)) for s in METHODS.values() if s.section]
    cls = dataclasses.make_dataclass("MethodConfig", fields, namespace={
        "names": property(lambda self: [n.strip() for n in self.name.split("+")]),
        "__doc__": "One method or several joined by '+', e.g. \"adaptformer+vpt\"; `trainable`: extra "
                   "parameter patterns on top of the methods' own (freeze.py); one section per method's settings.",
    })
    cls.__module__ = __name__
    return cls


MethodConfig = _method_config_class()


@dataclass
class AugmentConfig:
    random_crop_padding: int = 4  # RandomCrop(img_size, padding); 0 = off
    hflip: float = 0.5  # probability; 0 = off
    color_jitter_p: float = 0.5  # probability of applying brightness+contrast jitter
    brightness: float = 0.1
    contrast: float = 0.1
    rotation: float = 15.0  # degrees; 0 = off
    # ImageNet-style training crop (MAE / AdaptFormer at 224): RandomResizedCrop(img_size, rrc_scale,
    # rrc_ratio, bicubic) instead of the resize; needs random_crop_padding: 0.
    random_resized_crop: bool = False
    rrc_scale: List[float] = field(default_factory=lambda: [0.08, 1.0])  # fraction of the image area
    rrc_ratio: List[float] = field(default_factory=lambda: [3.0 / 4.0, 4.0 / 3.0])  # width / height


@dataclass
class DataConfig:
    dataset: str = "cifar10"  # cifar10 | cifar100 | synthetic | folder (train/<class>/*.jpg, val/<class>/...)
    data_file: Optional[str] = None  # the original python archive (cifar-10-python.tar.gz)
    # CIFAR: a folder holding the archive under its original name; folder: the root of train/ and eval_split/.
    data_dir: Optional[str] = None
    eval_split: str = "val"  # folder only: the evaluation folder under data_dir (val | test)
    download: bool = True  # only when neither data_file nor data_dir is given
    classes: Optional[List[int]] = None  # keep these classes, relabelled 0..k-1 in this order
    img_size: int = 32
    mean: List[float] = field(default_factory=lambda: [0.5071, 0.4865, 0.4409])
    std: List[float] = field(default_factory=lambda: [0.1942, 0.1918, 0.1958])
    batch_size: int = 128
    eval_batch_size: Optional[int] = None  # None = batch_size
    num_workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Eval crop fraction crop_pct: Resize(int(img_size / crop_pct), bicubic) + CenterCrop(img_size)
    # (0.875: Resize 256 + CenterCrop 224); None = Resize((img_size, img_size)) as for training.
    eval_resize_crop: Optional[float] = None
    # Fraction of every class's training images held out as the validation split, on which the
    # best epoch is chosen; the test split is then evaluated once, at the end. 0 = no hold-out:
    # every epoch is evaluated on the test split and the best epoch is chosen there (the paper's protocol).
    val_fraction: float = 0.0
    val_seed: int = 0  # which images are held out (per class), independent of train.seed
    synthetic_train_size: int = 256
    synthetic_eval_size: int = 64
    synthetic_num_classes: int = 10
    # An image file that cannot be decoded: error (stop, naming the file) | skip (leave it out, logged once).
    on_bad_image: str = "error"


@dataclass
class OptimizerConfig:
    # momentum | sgd | adamw (decoupled weight decay) | adam (weight_decay as an L2 term in the gradient)
    name: str = "momentum"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip_norm: Optional[float] = None
    # Learning-rate multipliers by parameter-name pattern (freeze.py's patterns), e.g. {adapter: 10}:
    # those parameters train at lr x 10. Each pattern must match a trainable parameter.
    lr_mult: Dict[str, float] = field(default_factory=dict)


@dataclass
class SchedulerConfig:
    name: str = "cosine"  # cosine | constant; stepped every iteration
    warmup_steps: int = 0
    warmup_epochs: float = 0.0  # added to warmup_steps, converted with steps per epoch
    warmup_start_lr: float = 0.0
    min_lr: float = 0.0


@dataclass
class AmpConfig:
    """Mixed precision through paddle.amp. Takes effect on GPU only: Paddle's CPU
    build runs the same code in float32 (not yet measured on a GPU)."""

    enabled: bool = False
    dtype: str = "float16"  # float16 (dynamic loss scaling) | bfloat16 (no scaling)
    level: str = "O1"  # O1: listed ops in low precision; O2: parameters cast, float32 master weights
    init_loss_scaling: float = 65536.0  # float16 only


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 42
    output_dir: str = "output/run"
    label_smoothing: float = 0.0
    log_every: int = 20  # steps between VisualDL loss/lr points and progress lines
    eval_every: int = 1  # epochs
    # Micro-batches of data.batch_size per optimizer step: the effective batch is their product.
    accumulate_steps: int = 1
    # Recompute each Transformer block in the backward pass instead of keeping its
    # activations: less memory for about one more forward pass.
    recompute: bool = False
    # At the end, curves.png (loss and top-1 by epoch) and test_predictions.png (test images with
    # the predicted and true class) in output_dir: the figures the iFormer notebook drew.
    figures: bool = False
    amp: AmpConfig = field(default_factory=AmpConfig)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class StageConfig:
    name: str
    config: str  # path of a run config, relative to the study file
    pretrained_from: Optional[str] = None  # name of an earlier stage whose best checkpoint is the backbone
    overrides: Dict[str, Any] = field(default_factory=dict)  # dotted keys, as with -o
    # A committed result of this stage (relative to the study file), used instead of training it
    # while study.use_checkpoints is true; its sha256 is checked first. Its summary is read from
    # the file of the same name ending in .summary.json.
    checkpoint: Optional[str] = None
    checkpoint_sha256: Optional[str] = None


@dataclass
class SweepConfig:
    """Choose one run-config key per stage on the validation split: every stage in `stages` is
    trained once per value (first seed), and the value with the best validation top-1 is used
    for its seeded runs. The same grid for every stage."""

    key: Optional[str] = None  # dotted run-config key, e.g. optimizer.lr; None = no sweep
    values: List[Any] = field(default_factory=list)
    stages: List[str] = field(default_factory=list)  # empty = every stage that is not a backbone


@dataclass
class StudyConfig:
    name: str
    output_dir: str
    stages: List[StageConfig]
    # Per-stage keys applied to every stage before its own overrides.
    overrides: Dict[str, Any] = field(default_factory=dict)
    # Every stage that is not another stage's backbone runs once per seed (train.seed); empty =
    # once, with its config's seed.
    seeds: List[int] = field(default_factory=list)
    use_checkpoints: bool = True  # false: train stages that have a committed checkpoint too
    sweep: SweepConfig = field(default_factory=SweepConfig)
    # Pairs of stages compared image by image on the test split: [[adaptformer, linear], ...]
    compare: List[List[str]] = field(default_factory=list)


# The `method:` sub-sections; each is read only when its method is chosen.
CHOICES = {
    "model.pos_embed_interpolation": ("bicubic", "bilinear"),
    "method.adaptformer.position": ("parallel", "sequential"),
    "method.adaptformer.adapter_input": ("stream", "ln2"),
    "data.dataset": ("cifar10", "cifar100", "synthetic", "folder"),
    "data.eval_split": ("val", "test"),
    "data.on_bad_image": ("error", "skip"),
    "optimizer.name": ("momentum", "sgd", "adamw", "adam"),
    "scheduler.name": ("cosine", "constant"),
    "train.amp.dtype": ("float16", "bfloat16"),
    "train.amp.level": ("O1", "O2"),
}

# --------------------------------------------------------------------------- loading


def load_yaml(path: str) -> Dict[str, Any]:
    if not os.path.lexists(path):
        raise ConfigError(f"{path}: config file not found")
    try:
        data = read_yaml(path)
    except InputFileError as e:
        raise ConfigError(str(e)) from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty (or only comments); a config needs at least one section")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _merge(base: Dict, top: Dict) -> Dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _record_origin(d: Dict, origin: Dict[str, str], source: str, prefix: str) -> None:
    for k, v in d.items():
        origin[prefix + str(k)] = source
        if isinstance(v, dict):
            _record_origin(v, origin, source, f"{prefix}{k}.")


def _load_with_bases(path: str, origin: Dict[str, str], seen: tuple = (), done: Optional[Dict] = None) -> Dict[str, Any]:
    """`path` merged over its `_base_` files; each file is read and merged once however often it is
    named (`done`), so a diamond of bases costs no more than a chain."""
    path = os.path.normpath(path)
    if path in seen:
        raise ConfigError(f"{path}: _base_ inheritance loops back to itself")
    done = {} if done is None else done
    if path in done:
        merged, recorded = done[path]
        origin.update(recorded)
        return copy.deepcopy(merged)
    own_origin: Dict[str, str] = {}
    data = load_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a file path or a list of file paths")
    merged: Dict[str, Any] = {}
    for b in bases:
        base_path = os.path.join(os.path.dirname(path), b)
        merged = _merge(merged, _load_with_bases(base_path, own_origin, seen + (path,), done))
    _record_origin(data, own_origin, path, "")
    merged = _merge(merged, data)
    done[path] = (copy.deepcopy(merged), dict(own_origin))
    origin.update(own_origin)
    return merged


def parse_override(text: str) -> tuple:
    """'optimizer.lr=0.1' -> ('optimizer.lr', 0.1); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"-o {text}: expected key=value, e.g. -o optimizer.lr=0.1")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"-o {text}: empty key")
    value = parse_yaml(raw, f"-o {one_line(text)[:80]}") if raw.strip() else None
    return key, value


def apply_overrides(data: Dict[str, Any], overrides: Dict[str, Any], origin: Dict[str, str], source: str) -> None:
    for key, value in overrides.items():
        parts = key.split(".")
        node = data
        for i, p in enumerate(parts[:-1]):
            if p not in node:
                origin.setdefault(".".join(parts[: i + 1]), source)  # a section only the override names
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source} {key}: '{p}' is a value, not a section")
            node = child
        node[parts[-1]] = value
        origin[key] = source
        if isinstance(value, dict):
            _record_origin(value, origin, source, key + ".")


# --------------------------------------------------------------------------- validation


def _where(origin: Dict[str, str], key: str, default: str) -> str:
    # The most specific recorded source of this key or of an enclosing section.
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        src = origin.get(".".join(parts[:i]))
        if src:
            return src
    return default


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str, where: str) -> Any:
    origin_tp = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin_tp is typing.Union and type(None) in args:
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key, where)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        raise AssertionError("sections are built by _build")
    if origin_tp in (list, List):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list of {_type_name(args[0])}, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin_tp in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        number = _as_float(value)
        if number is None:
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value
    raise AssertionError(f"unsupported schema type {tp} for {key}")


def _as_float(value: Any) -> Optional[float]:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _build(cls, data: Any, origin: Dict[str, str], default_src: str, prefix: str = ""):
    where = _where(origin, prefix.rstrip("."), default_src) if prefix else default_src
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            known = ", ".join(fields)
            raise ConfigError(
                f"{_where(origin, prefix + str(k), default_src)}: unknown key '{prefix}{k}' (known: {known})"
            )
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required key '{key}'")
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name], origin, default_src, key + ".")
        elif typing.get_origin(tp) in (list, List) and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            items = data[name]
            if not isinstance(items, list):
                raise ConfigError(f"{_where(origin, key, default_src)}: {key} must be a list")
            kwargs[name] = [
                _build(typing.get_args(tp)[0], item, origin, default_src, f"{key}[{i}].")
                for i, item in enumerate(items)
            ]
        else:
            value = _coerce(data[name], tp, key, _where(origin, key, default_src))
            allowed = CHOICES.get(key)
            if allowed and value not in allowed:
                raise ConfigError(
                    f"{_where(origin, key, default_src)}: {key} must be one of {', '.join(allowed)}, got {value!r}"
                )
            kwargs[name] = value
    return cls(**kwargs)


def method_sections() -> List[str]:
    from .methods.registry import sections

    return sections()


def _check_method(m, origin: Dict[str, str], fail) -> None:
    """method.name against the registry (methods/registry.py), then each chosen method's settings."""
    from .methods.registry import METHODS

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
    if len(cfg.data.mean) != 3 or len(cfg.data.std) != 3:
        fail("data.mean", "and data.std must each hold 3 values (RGB)")
    if not all(math.isfinite(v) and abs(v) <= 1e3 for v in cfg.data.mean):
        fail("data.mean", f"must hold finite values of pixel scale (0..1), got {cfg.data.mean}")
    if not all(math.isfinite(v) and MIN_STD <= v <= 1e3 for v in cfg.data.std):
        fail("data.std", f"must hold values between {MIN_STD} and 1000 (pixels are divided by them), got {cfg.data.std}")
    if cfg.data.classes is not None:
        if len(set(cfg.data.classes)) != len(cfg.data.classes) or not cfg.data.classes:
            fail("data.classes", f"must be a non-empty list of distinct class ids, got {cfg.data.classes}")
        if len(cfg.data.classes) != cfg.model.num_classes:
            fail(
                "model.num_classes",
                f"is {cfg.model.num_classes} but data.classes keeps {len(cfg.data.classes)} classes",
            )
    aug = cfg.data.augment
    if aug.random_resized_crop and aug.random_crop_padding != 0:
        fail(
            "data.augment.random_crop_padding",
            f"must be 0 when data.augment.random_resized_crop is true, got {aug.random_crop_padding}",
        )
    if len(aug.rrc_scale) != 2 or not 0 < aug.rrc_scale[0] <= aug.rrc_scale[1] <= 1:
        fail("data.augment.rrc_scale", f"must be [min, max] with 0 < min <= max <= 1, got {aug.rrc_scale}")
    if len(aug.rrc_ratio) != 2 or not 0 < aug.rrc_ratio[0] <= aug.rrc_ratio[1]:
        fail("data.augment.rrc_ratio", f"must be [min, max] with 0 < min <= max, got {aug.rrc_ratio}")
    if cfg.data.eval_resize_crop is not None and not 0 < cfg.data.eval_resize_crop <= 1:
        fail("data.eval_resize_crop", f"is a crop fraction and must be in (0, 1], got {cfg.data.eval_resize_crop}")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        fail("data.val_fraction", f"is a fraction of the training images and must be in [0, 1), got {cfg.data.val_fraction}")
    if cfg.optimizer.lr <= 0:
        fail("optimizer.lr", f"must be > 0, got {cfg.optimizer.lr}")
    _check_model_name(cfg, fail)
    _check_ranges(cfg, fail)


def _check_model_name(cfg: Config, fail) -> None:
    from .models.registry import list_models  # the registry fills when adaptformer.models is imported

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


# --------------------------------------------------------------------------- public API


def load_config(
    path: str,
    overrides: Optional[List[str]] = None,
    extra: Optional[Dict[str, Any]] = None,
    method: Optional[str] = None,
) -> Config:
    """Read a run config; `extra` (dotted keys) is applied before the `-o` overrides.
    `method` replaces method.name and drops the file's settings of other methods
    (one file describing several methods, as the benchmark uses it)."""
    origin: Dict[str, str] = {}
    data = _load_with_bases(path, origin)
    if "study" in data:
        raise ConfigError(f"{path}: this is a study config; run it with tools/train.py -c {path}")
    if extra:
        apply_overrides(data, extra, origin, f"{path} (study overrides)")
    if method is not None:
        chosen = [n.strip() for n in method.split("+")]
        section = data.setdefault("method", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: method must be a mapping, got {section!r}")
        for name in method_sections():
            if name not in chosen and section.pop(name, None) is not None:
                for key in [k for k in origin if k.startswith(f"method.{name}.")]:
                    del origin[key]
        apply_overrides(data, {"method.name": method}, origin, "--method")
    parsed = dict(parse_override(o) for o in (overrides or []))
    apply_overrides(data, parsed, origin, "-o")
    cfg = _build(Config, data, origin, path)
    _check_consistency(cfg, origin, path)
    return cfg


def is_study(path: str) -> bool:
    return "study" in load_yaml(path)


def split_study_overrides(overrides: Optional[List[str]]) -> tuple:
    """(-o study.KEY=VALUE as a dict, the other -o strings, which go to every stage's run config)."""
    study, runs = {}, []
    for o in overrides or []:
        key, value = parse_override(o)
        if key.startswith("study."):
            study[key[len("study."):]] = value
        else:
            runs.append(o)
    return study, runs


def load_study(path: str, overrides: Optional[Dict[str, Any]] = None) -> StudyConfig:
    """A study file; `overrides` are its own keys (without the study. prefix) from -o."""
    origin: Dict[str, str] = {}
    data = _load_with_bases(path, origin)
    unknown = set(data) - {"study"}
    if unknown:
        raise ConfigError(f"{path}: a study file holds only a 'study:' section, found {sorted(unknown)}")
    if overrides:
        apply_overrides(data, {f"study.{k}": v for k, v in overrides.items()}, origin, "-o")
    study = _build(StudyConfig, data["study"], origin, path, prefix="study.")
    names = [s.name for s in study.stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: study.stages names must be distinct, got {names}")
    for i, s in enumerate(study.stages):
        if s.pretrained_from is not None and s.pretrained_from not in names[:i]:
            raise ConfigError(
                f"{path}: stage '{s.name}' has pretrained_from '{s.pretrained_from}', "
                f"which is not an earlier stage ({names[:i]})"
            )
    for pair in study.compare:
        if len(pair) != 2 or any(n not in names for n in pair):
            raise ConfigError(f"{path}: study.compare entries must be two stage names from {names}, got {pair}")
    bad = [n for n in study.sweep.stages if n not in names]
    if bad or (study.sweep.key is not None and not study.sweep.values):
        raise ConfigError(f"{path}: study.sweep needs values and stage names from {names}, got stages {bad or []}")
    return study


def from_dict(data: Dict[str, Any], source: str) -> Config:
    """A Config from plain data, e.g. sections saved beside tuned weights (absent sections and
    keys take their defaults), validated as load_config validates a file; errors name `source`."""
    origin: Dict[str, str] = {}
    if isinstance(data, dict):
        _record_origin(data, origin, source, "")
    cfg = _build(Config, data, origin, source)
    _check_consistency(cfg, origin, source)
    return cfg


def to_dict(cfg) -> Dict[str, Any]:
    data = dataclasses.asdict(cfg)
    if isinstance(cfg, Config):
        # Settings of methods not chosen are errors, so a saved config must not carry them.
        chosen = cfg.method.names
        data["method"] = {k: v for k, v in data["method"].items() if k not in method_sections() or k in chosen}
    return data


def save_config(cfg: Config, path: str) -> None:
    from .utils import atomic_write_text

    atomic_write_text(path, dump(cfg))


def dump(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def saved_config_matches(path: str, cfg: Config, ignored: Sequence[str] = ()) -> bool:
    """Whether the config a run saved at `path` is `cfg`, apart from the `ignored` dotted keys.
    The saved file is loaded like any config, so keys added since that run compare at their defaults."""
    saved, planned = yaml.safe_load(dump(load_config(path))), yaml.safe_load(dump(cfg))
    for key in ignored:
        section, name = key.split(".", 1)
        for d in (saved, planned):
            if isinstance(d.get(section), dict):
                d[section].pop(name, None)
    return saved == planned
