"""Training and evaluation."""
from .runner import build_loaders, build_model, evaluate, train
from .trainer import Trainer, evaluate_model

__all__ = ["Trainer", "build_loaders", "build_model", "evaluate", "evaluate_model", "train"]
