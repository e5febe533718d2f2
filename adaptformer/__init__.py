"""AdaptFormer and parameter-efficient fine-tuning of Vision Transformers in PaddlePaddle."""

__version__ = "0.1.0"

from adaptformer import runtime  # noqa: E402,F401  (the CPU defaults, before anything loads Paddle)
