"""Backbones and the AdaptFormer module.

    from adaptformer.models import create_model
    model = create_model("vit_base_patch16_224", num_classes=10)
    model.add_adapters(bottleneck=64, scale=0.1)

    iformer = create_model("iformer_small", num_classes=10)   # Inception Transformer (iformer.py)
"""
from adaptformer.models import factories as _factories  # noqa: F401  (registers the named models; needs no Paddle)
from adaptformer.models.factories import (
    vit_base_patch3_32,
    vit_base_patch4_32,
    vit_base_patch16_224,
    vit_large_patch16_224,
    vit_small_patch16_224,
    vit_tiny_patch4_32,
    vit_tiny_patch16_224,
)
from adaptformer.models.registry import create_model, list_models, register_model

# The model classes import Paddle: loaded on first use, so that the names above (and config
# validation, which checks model.name against them) do not load it.
_LAZY = {"AdaptFormerAdapter": ".adapter", "Block": ".vit", "VisionTransformer": ".vit",
         "InceptionTransformer": ".iformer", "load_pretrained": "..weights"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdaptFormerAdapter",
    "Block",
    "InceptionTransformer",
    "VisionTransformer",
    "create_model",
    "list_models",
    "load_pretrained",
    "register_model",
    "vit_base_patch3_32",
    "vit_base_patch4_32",
    "vit_base_patch16_224",
    "vit_large_patch16_224",
    "vit_small_patch16_224",
    "vit_tiny_patch4_32",
    "vit_tiny_patch16_224",
]
