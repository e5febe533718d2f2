"""Per-channel (RGB) normalisation constants of common pretrained checkpoints.

A checkpoint expects its inputs normalised the way it was trained: compare a
config's data.mean / data.std with these (e.g. torchvision and MAE weights use
IMAGENET; Google's original JAX ViT weights use INCEPTION, i.e. pixels in [-1, 1]).
The CIFAR statistics that DataConfig defaults to are in adaptformer/config/schema.py.
"""
from __future__ import annotations

from typing import Dict, Tuple

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
INCEPTION_MEAN: Tuple[float, float, float] = (0.5, 0.5, 0.5)
INCEPTION_STD: Tuple[float, float, float] = (0.5, 0.5, 0.5)

# name -> (mean, std)
NORMALIZATIONS: Dict[str, Tuple[Tuple[float, ...], Tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "inception": (INCEPTION_MEAN, INCEPTION_STD),
}
