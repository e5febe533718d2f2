import os
import signal
import subprocess
import sys

import pytest
import yaml

import adaptformer  # noqa: F401,I001  (CPU environment before paddle loads)
import numpy as np
import paddle
from adaptformer import freeze

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# A ViT small enough that a training step takes milliseconds.
TINY_MODEL = {"name": "vit_tiny_patch4_32", "kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2}}


def tiny_run_config(tmp_path, name="run", **sections):
    """Write a complete, fast run config (synthetic data unless overridden) and return its path."""
    cfg = {
        "model": {**TINY_MODEL, "num_classes": 4},
        "method": {"name": "adaptformer", "adaptformer": {"bottleneck": 4, "dropout": 0.0}},
        "data": {
            "dataset": "synthetic",
            "synthetic_train_size": 64,
            "synthetic_eval_size": 24,
            "synthetic_num_classes": 4,
            "batch_size": 16,
            "num_workers": 0,
        },
        "optimizer": {"name": "momentum", "lr": 0.05},
        "scheduler": {"name": "cosine", "warmup_steps": 2},
        "train": {"epochs": 2, "output_dir": str(tmp_path / name / "out"), "log_every": 2},
    }
    for section, values in sections.items():
        # A method section replaces the default one: adapter keys are invalid for other methods.
        cfg[section] = values if section == "method" else {**cfg.get(section, {}), **values}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def run_tool(args, cwd=ROOT, timeout=600):
    """Run a command the way a user would; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tiny_config(tmp_path):
    return lambda name="run", **sections: tiny_run_config(tmp_path, name, **sections)


@pytest.fixture(autouse=True)
def no_dataloader_workers_in_process():
    """Paddle's worker DataLoader installs a process-wide SIGCHLD handler that can raise inside any
    later test; tests that need workers run them in a child process."""
    before = signal.getsignal(signal.SIGCHLD)
    yield
    after = signal.getsignal(signal.SIGCHLD)
    signal.signal(signal.SIGCHLD, before)
    assert after == before, "this test started DataLoader workers inside the pytest process"


def snapshot(model):
    return {n: p.numpy().copy() for n, p in model.named_parameters()}


def train_steps(model, steps=4, lr=0.1, size=32):
    """A few Momentum steps on random size x size images with labels 0..2; returns the optimizer."""
    opt = paddle.optimizer.Momentum(lr, parameters=freeze.trainable_parameters(model), weight_decay=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x = paddle.to_tensor(rng.standard_normal((4, 3, size, size)).astype("float32"))
        y = paddle.to_tensor(rng.integers(0, 3, 4))
        freeze.set_train_mode(model)
        loss = paddle.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
    return opt


def crash_in_epoch(monkeypatch, epoch: int):
    """Make training raise KeyboardInterrupt as `epoch` starts (a simulated crash); returns the real
    Trainer.train_one_epoch, to put back before resuming."""
    from adaptformer.engine.trainer import Trainer

    original = Trainer.train_one_epoch

    def crash(self, e):
        if e == epoch:
            raise KeyboardInterrupt("simulated crash")
        return original(self, e)

    monkeypatch.setattr(Trainer, "train_one_epoch", crash)
    return original
