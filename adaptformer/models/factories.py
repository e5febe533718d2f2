"""The named models. Each factory only sets dimensions (keyword arguments override them) and
imports its model's code when called, so the names are known without Paddle (config validation)."""
from __future__ import annotations

from adaptformer.models.registry import register_model


def _vit(defaults: dict, overrides: dict):
    from adaptformer.models.vit import VisionTransformer

    return VisionTransformer(**{**defaults, **overrides})


_TINY = dict(embed_dim=192, depth=12, num_heads=3)
_SMALL = dict(embed_dim=384, depth=12, num_heads=6)
_BASE = dict(embed_dim=768, depth=12, num_heads=12)
_LARGE = dict(embed_dim=1024, depth=24, num_heads=16)


@register_model
def vit_tiny_patch16_224(**kw):
    return _vit(dict(img_size=224, patch_size=16, **_TINY), kw)


@register_model
def vit_small_patch16_224(**kw):
    return _vit(dict(img_size=224, patch_size=16, **_SMALL), kw)


@register_model
def vit_base_patch16_224(**kw):
    return _vit(dict(img_size=224, patch_size=16, **_BASE), kw)


@register_model
def vit_large_patch16_224(**kw):
    return _vit(dict(img_size=224, patch_size=16, **_LARGE), kw)


# The community Paddle notebook's CIFAR model: ViT-B dims on 32x32 with 3x3 patches
# (a 10x10 grid, so the last 2 pixel rows and columns are never seen), no qkv bias, eps 1e-5.
_CIFAR_SEED = dict(img_size=32, qkv_bias=False, epsilon=1e-5)


@register_model
def vit_base_patch3_32(**kw):
    return _vit(dict(patch_size=3, **_BASE, **_CIFAR_SEED), kw)


# Same, with 4x4 patches: an 8x8 grid that sees every pixel.
@register_model
def vit_base_patch4_32(**kw):
    return _vit(dict(patch_size=4, **_BASE, **_CIFAR_SEED), kw)


# A CPU-sized CIFAR model for quick studies and smoke runs.
@register_model
def vit_tiny_patch4_32(**kw):
    return _vit(dict(patch_size=4, **_TINY, **_CIFAR_SEED), kw)


def _iformer(size: str, img_size: int):
    """iformer_<size> (224) or iformer_<size>_<img_size>: the Inception Transformer (models/iformer.py)."""
    name = f"iformer_{size}" if img_size == 224 else f"iformer_{size}_{img_size}"

    def build(**kw):
        from adaptformer.models.iformer import build_iformer

        return build_iformer(size, img_size, **kw)

    build.__name__ = build.__qualname__ = name
    return register_model(build)


for _size in ("small", "base", "large"):
    for _img_size in (224, 384):
        _iformer(_size, _img_size)


def _videomae(size: str, dims: dict):
    """videomae_vit_<size>_patch16_224: VideoMAE's video ViT (models/videomae.py), 16 frames in tubelets
    of 2 by default, its head initialised x 0.001 as VideoMAE's fine-tuning script does (init_scale)."""
    name = f"videomae_vit_{size}_patch16_224"

    def build(**kw):
        from adaptformer.models.videomae import VideoVisionTransformer

        defaults = dict(img_size=224, patch_size=16, num_frames=16, tubelet_size=2, head_init_scale=0.001, **dims)
        return VideoVisionTransformer(**{**defaults, **kw})

    build.__name__ = build.__qualname__ = name
    return register_model(build)


for _size, _dims in (("small", _SMALL), ("base", _BASE), ("large", _LARGE)):
    _videomae(_size, _dims)
