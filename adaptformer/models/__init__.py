"""Backbones and the AdaptFormer module.

    from adaptformer.models import create_model
    model = create_model("vit_base_patch16_224", num_classes=10)
    model.add_adapters(bottleneck=64, scale=0.1)

    iformer = create_model("iformer_small", num_classes=10)   # Inception Transformer (iformer.py)
"""
from . import factories as _factories  # noqa: F401  (registers the named models)
from . import iformer as _iformer  # noqa: F401  (registers iformer_small/base/large and their _384 variants)
from .adapter import AdaptFormerAdapter
from .factories import (
    vit_base_patch3_32,
    vit_base_patch4_32,
    vit_base_patch16_224,
    vit_large_patch16_224,
    vit_small_patch16_224,
    vit_tiny_patch4_32,
    vit_tiny_patch16_224,
)
from .iformer import InceptionTransformer
from .registry import create_model, list_models, register_model
from .vit import Block, VisionTransformer
from ..weights import load_pretrained  # noqa: E402  (the loader belongs with the models users build)

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
