"""Backbones and the AdaptFormer module.

    from adaptformer.models import create_model
    model = create_model("vit_base_patch16_224", num_classes=10)
    model.add_adapters(bottleneck=64, scale=0.1)
"""
from . import factories as _factories  # noqa: F401  (registers the named models)
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
from .registry import create_model, list_models, register_model
from .vit import Block, VisionTransformer
from ..weights import load_pretrained  # noqa: E402  (the loader belongs with the models users build)

__all__ = [
    "AdaptFormerAdapter",
    "Block",
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
