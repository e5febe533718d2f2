"""A backbone as a config describes it: the model by name, then its pretrained weights.

Training (engine/runner.build_model) and tuned weights (tuned.build_tuned_model) both start
here, so a backbone is loaded by the same rules wherever it is used.
"""
from __future__ import annotations

import os

import numpy as np

from adaptformer.config import ConfigError, ModelConfig
from adaptformer.models import create_model
from adaptformer.models.budget import check_model_size
from adaptformer.weights import load_pretrained

MISSING_HINT = "train the pretraining config first, or pass -o model.pretrained=PATH"


def create_backbone(m: ModelConfig, img_size: int, batch_size=None):
    """The model `m` names, with random weights; `img_size` is the size of the images it will see.
    Its size is estimated first (with `batch_size`, the training step's too): what cannot fit the
    machine is refused before anything is built."""
    check_model_size(dict(m.kwargs), img_size, m.num_classes, batch_size)
    try:
        model = create_model(m.name, num_classes=m.num_classes, **m.kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.kwargs: {e}") from None
    _check_input_size(m, img_size, model)
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
    """A ViT's position embedding fixes the image size: another one would fail at the first step.
    A model that takes several sizes (iFormer) says itself which it cannot take."""
    check = getattr(model, "check_input_size", None)
    if check is not None:
        try:
            check(img_size)
        except ValueError as e:
            raise ConfigError(f"data.img_size: {e} (model {m.name})") from None
        return
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is None or img_size == patch_embed.img_size:
        return
    size, grid = patch_embed.img_size, patch_embed.grid_size
    raise ConfigError(
        f"data.img_size is {img_size} but model {m.name} takes {size}x{size} images "
        f"(patch {patch_embed.patch_size}, position embedding for {grid}x{grid} patches); set data.img_size: {size} "
        f"or model.kwargs.img_size: {img_size}"
    )


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
