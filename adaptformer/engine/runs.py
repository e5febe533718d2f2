"""Which trained run a tool works on: a config, a checkpoint, or the most recent run under output/."""
from __future__ import annotations

import glob
import os
from typing import Optional, Sequence, Tuple

from adaptformer.weights.checkpoint import CheckpointError
from adaptformer.config import load_config
from adaptformer.engine.trainer import BEST

RUNS = "output"
QUICK_START = ("python tools/train.py -c configs/cpu/study_cifar10_split.yaml "
               "-o data.data_file=../shared/data/cifar10-subset/cifar-10-python.tar.gz")


def most_recent_checkpoint(folder: str) -> Optional[str]:
    """The newest best.pdparams under `folder` (any depth), or None."""
    found = glob.glob(os.path.join(folder, "**", BEST), recursive=True)
    return max(found, key=os.path.getmtime) if found else None


def resolve_run(config: Optional[str] = None, checkpoint: Optional[str] = None, overrides: Sequence[str] = (),
                runs: str = RUNS, verb: str = "using", log=print) -> Tuple[str, str]:
    """(config path, checkpoint path) of the run to use: `checkpoint` (default: best.pdparams in
    the config's train.output_dir, else the most recent one under `runs`) and `config` (default:
    the config.yaml saved beside the checkpoint). One-line CheckpointError when either is missing."""
    if checkpoint is None and config:
        checkpoint = os.path.join(load_config(config, overrides).train.output_dir, BEST)
    elif checkpoint is None:
        checkpoint = most_recent_checkpoint(runs)
        if checkpoint is None:
            raise CheckpointError(f"no trained run under {os.path.abspath(runs)}: train first ({QUICK_START}) "
                                  "or pass --checkpoint PATH")
        log(f"{verb} the most recent run: {checkpoint}")
    if not os.path.isfile(checkpoint):
        raise CheckpointError(f"no checkpoint at {checkpoint}: train first (python tools/train.py -c "
                              f"{config or 'CONFIG'}) or pass --checkpoint PATH")
    config = config or os.path.join(os.path.dirname(checkpoint), "config.yaml")
    if not os.path.isfile(config):
        raise CheckpointError(f"{checkpoint}: no config.yaml beside it; pass -c CONFIG")
    return config, checkpoint
