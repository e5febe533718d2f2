"""A model as a config describes it: the backbone by name, its pretrained weights, its method.

`build_model` is the one builder: training (engine/runner), a run's model for inference
(serve/trained), tuned weights (serve/tuned) and TaskBank (serve/tasks) all build here, so a
backbone is loaded and a method attached by the same rules wherever a model is used.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from adaptformer.config import Config, ConfigError, ModelConfig
from adaptformer.errors import one_line
from adaptformer.models import create_model
from adaptformer.models.budget import check_model_size
from adaptformer.weights import load_pretrained

MISSING_HINT = "train the pretraining config first, or pass -o model.pretrained=PATH"


def create_backbone(m: ModelConfig, img_size: int, batch_size=None):
    """The model `m` names, with random weights; `img_size` is the size of the images it will see.
    Its size is estimated first (with `batch_size`, the training step's too): what cannot fit the
    machine is refused before anything is built."""
    check_model_size(dict(m.kwargs), img_size, m.num_classes, batch_size, video=m.name.startswith("videomae_"))
    try:
        model = create_model(m.name, num_classes=m.num_classes, **m.kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.kwargs: {e}") from None
    _check_input_size(m, img_size, model)
    return model


def build_model(cfg: Config, load_backbone: bool = True, log=print, *, weights=None, source="model.pretrained",
                hint=MISSING_HINT, batch_size=None, lazy=False, before_method=None, error=ConfigError,
                where="method", log_method=True):
    """Backbone by name -> pretrained weights -> tuning method (inserts modules, freezes).

    The weights are `weights` when given, else cfg.model.pretrained when `load_backbone` (none
    for a model whose weights come next from a run checkpoint). `batch_size`: the training
    batch, for the memory estimate. `lazy`: the backbone's tensors are created uninitialised
    (paddle.LazyGuard), for a caller that puts its own in place (`before_method(model)`, run
    before the method changes the model's layout). A method that does not fit the backbone is
    `error(f"{where}: ...")`."""
    import paddle

    from adaptformer.methods import apply_method

    m = cfg.model if weights is None else dataclasses.replace(cfg.model, pretrained=weights)
    if lazy:
        with paddle.LazyGuard():
            model = create_backbone(m, cfg.data.img_size, batch_size)
    else:
        model = create_backbone(m, cfg.data.img_size, batch_size)
    _check_sample_shape(cfg, model)
    if (load_backbone or weights is not None) and m.pretrained:
        load_backbone_weights(model, m, cfg.data.mean, cfg.data.std, log, source=source, hint=hint)
    if before_method is not None:
        before_method(model)
    try:
        report = apply_method(model, cfg.method)
    except ValueError as e:
        raise error(f"{where}: {one_line(e)}") from None
    if log_method:
        log(str(report))
    return model


def load_backbone_weights(model, m: ModelConfig, mean, std, log=print, source="model.pretrained", hint=MISSING_HINT):
    """`m.pretrained` into `model`: the head re-initialised when the file has none of its shape
    (or when `m.reset_head`), the position embedding resized, `m.allow_missing` left as they are.
    `mean` / `std` are the input normalisation, compared with the one the file records."""
    if not os.path.isfile(m.pretrained):
        raise ConfigError(f"{source}: {m.pretrained} does not exist ({hint})")
    report = load_pretrained(
        model,
        m.pretrained,
        allow_missing=m.allow_missing,
        pos_embed_interpolation=m.pos_embed_interpolation,
        antialias=m.pos_embed_antialias,
    )
    log(str(report))
    _check_normalization(m.pretrained, mean, std, report.normalization, log)
    if m.reset_head:
        model.reset_classifier(m.num_classes)
        log(f"head re-initialised for {m.num_classes} classes (model.reset_head)")
    return report


def _check_input_size(m: ModelConfig, img_size: int, model) -> None:
    """Every backbone says which image sizes it cannot take and why (a ViT: any but its position
    embedding's; an iFormer: those that give a stage an odd grid): refused before the first step."""
    try:
        model.check_input_size(img_size)
    except ValueError as e:
        raise ConfigError(f"data.img_size is {img_size} but model {m.name} {e}") from None


def _check_sample_shape(cfg: Config, model) -> None:
    """The data's samples are what the model takes: images for an image backbone, clips of its
    num_frames for a video one."""
    from adaptformer.data.kinds import sample_shape

    data, takes = tuple(sample_shape(cfg.data)), tuple(model.input_shape(cfg.data.img_size, 1)[1:])
    if data != takes:
        def what(shape):
            return f"clips of {shape[1]} frames" if len(shape) == 4 else "images"
        raise ConfigError(f"data.dataset {cfg.data.dataset} gives {what(data)} {list(data)} but model {cfg.model.name} "
                          f"takes {what(takes)} {list(takes)}"
                          + (" (set data.video.num_frames and model.kwargs.num_frames alike)" if len(data) == len(takes)
                             else ""))


def _check_normalization(path: str, mean, std, expected, log) -> None:
    """A checkpoint that tells its input normalisation is compared with data.mean/std."""
    if expected is None:
        return
    file_mean, file_std = expected
    if not (np.allclose(mean, file_mean, atol=1e-3) and np.allclose(std, file_std, atol=1e-3)):
        log(
            f"warning: {path} was trained on inputs normalised with mean {list(file_mean)}, "
            f"std {list(file_std)}, but data.mean/std are {list(mean)} / {list(std)}"
        )
