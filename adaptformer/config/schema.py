"""The run and study schema: one dataclass per config section, and the keys with a fixed choice
of values. Methods' sections come from the method registry (methods/registry.py)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from adaptformer.data.kinds import KINDS as DATASET_KINDS
from adaptformer.errors import ConfigError

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
    from adaptformer.methods.registry import METHODS

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
    # Resize the shorter side to this many pixels, then RandomCrop(img_size) (VPT's FGVC recipe:
    # 256, then a random 224 crop); None = Resize((img_size, img_size)) as the CIFAR recipe does.
    train_resize: Optional[int] = None
    rrc_scale: List[float] = field(default_factory=lambda: [0.08, 1.0])  # fraction of the image area
    rrc_ratio: List[float] = field(default_factory=lambda: [3.0 / 4.0, 4.0 / 3.0])  # width / height


@dataclass
class DataConfig:
    dataset: str = "cifar10"  # a kind of data/kinds/: cifar10 | cifar100 | synthetic | folder (train/<class>/..., val/<class>/...)
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
    # How DataLoader workers hand batches over: true = shared memory (/dev/shm), false = pickled through
    # a pipe, auto = shared memory when training on a GPU, a pipe on the CPU (docs/data_loader.md).
    shared_memory: Any = "auto"

    def __post_init__(self) -> None:
        if not (self.shared_memory == "auto" or isinstance(self.shared_memory, bool)):
            raise ConfigError(f"data.shared_memory must be auto, true or false, got {self.shared_memory!r}")


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


def _with_kind_sections(base: type) -> type:
    """DataConfig with one sub-section per dataset kind that has settings (data.<kind>.*)."""
    fields = [(k.name, k.section, field(default_factory=k.section)) for k in DATASET_KINDS.values() if k.section]
    cls = dataclasses.make_dataclass("DataConfig", fields, bases=(base,))
    cls.__module__, cls.__doc__ = __name__, "The data section; data.<kind>.* are the kinds' own settings (data/kinds/)."
    return cls


DataConfig = _with_kind_sections(DataConfig)


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
    # Whose weights the final test evaluates: best (the best top-1 on the eval split: val when there
    # is one, else test, the paper's protocol) | last (the last epoch's) | auto (last for a VTAB-1k
    # final run, whose protocol makes no choice; best otherwise).
    select_epoch: str = "auto"
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
    # Keys for the choice runs only (dotted, as -o): VTAB-1k chooses with data.vtab.protocol search
    # (train800 / val200) and runs final (train800val200 / test) with the chosen value.
    overrides: Dict[str, Any] = field(default_factory=dict)


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


@dataclass
class SuiteConfig:
    """A benchmark suite (adaptformer/study/suite.py): for every task under data_root, one study of
    `methods`, each method's value of sweep.key chosen on the task's validation split."""

    name: str
    output_dir: str
    data_root: str  # holds one folder per task (VTAB-1k: <vtab-1k>/<task>/train800.txt ...)
    methods: List[StageConfig]  # name, a run config (relative to the suite file) and its overrides
    benchmark: str = "vtab"  # vtab | fgvc (adaptformer/study/benchmarks.py)
    # Task names or aliases (empty = all of the benchmark's), or {name, num_classes, group} for a task
    # of one's own (VTAB-1k's layout only).
    tasks: List[Any] = field(default_factory=list)
    seeds: List[int] = field(default_factory=list)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    # Pairs of methods compared on every task's test images: [[adaptformer, linear], ...]
    compare: List[List[str]] = field(default_factory=list)


# The `method:` sub-sections; each is read only when its method is chosen.
CHOICES = {
    "model.pos_embed_interpolation": ("bicubic", "bilinear"),
    "method.adaptformer.position": ("parallel", "sequential"),
    "method.adaptformer.adapter_input": ("stream", "ln2"),
    "method.adaptformer.layernorm": ("none", "in"),
    "data.dataset": tuple(DATASET_KINDS),  # data/kinds/: one module per kind
    "data.eval_split": ("val", "test"),
    "data.on_bad_image": ("error", "skip"),
    "optimizer.name": ("momentum", "sgd", "adamw", "adam"),
    "scheduler.name": ("cosine", "constant"),
    "train.select_epoch": ("auto", "best", "last"),
    "train.amp.dtype": ("float16", "bfloat16"),
    "train.amp.level": ("O1", "O2"),
}
