"""Training and evaluation."""
from adaptformer.engine.runner import build_loaders, build_model, evaluate, train
from adaptformer.engine.trainer import Trainer, evaluate_model

__all__ = ["Trainer", "build_loaders", "build_model", "evaluate", "evaluate_model", "train"]
