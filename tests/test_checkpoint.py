import os
import re

import numpy as np
import paddle
import pytest

from adaptformer.weights.checkpoint import CheckpointError, load_checkpoint, read_resume_state, save_state
from adaptformer.models import create_model
from adaptformer.files.atomic import atomic_write


def tiny(num_classes=3, **kw):
    return create_model("vit_tiny_patch4_32", depth=2, embed_dim=32, num_heads=2, num_classes=num_classes, **kw)


def test_run_checkpoint_must_match_exactly(tmp_path):
    m = tiny()
    m.add_adapters(bottleneck=4)
    path = str(tmp_path / "run.pdparams")
    save_state(m.state_dict(), path)
    with pytest.raises(CheckpointError, match="unexpected blocks.0.adapter"):
        load_checkpoint(tiny(), path)
    other = tiny()
    other.add_adapters(bottleneck=4)
    load_checkpoint(other, path)
    np.testing.assert_array_equal(other.blocks[0].adapter.down_proj.weight.numpy(),
                                  m.blocks[0].adapter.down_proj.weight.numpy())


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "ckpt.pdparams"
    target.write_bytes(b"old")

    def crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(target), crash)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["ckpt.pdparams"]


def training_state():
    """What the trainer saves in last.pdckpt: nested, so paddle.save records tensors as (name, array)."""
    paddle.seed(0)
    model = tiny()
    sched = paddle.optimizer.lr.LinearWarmup(paddle.optimizer.lr.CosineAnnealingDecay(0.1, T_max=10), 3, 0.0, 0.1)
    opt = paddle.optimizer.AdamW(sched, parameters=model.parameters())
    model(paddle.randn([2, 3, 32, 32])).sum().backward()
    opt.step()
    sched.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "loss_scaler": {},
            "epoch": 1, "global_step": 3, "best": {"top1": 0.5, "epoch": 1}}


def assert_same_tree(got, want):
    assert type(got) is type(want)
    if isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same_tree(got[key], want[key])
    elif isinstance(want, paddle.Tensor):
        assert got.name == want.name and got.dtype == want.dtype
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    else:
        assert got == want


def test_read_state_returns_what_paddle_load_does(tmp_path):
    path = str(tmp_path / "last.pdckpt")
    save_state(training_state(), path)
    got = read_resume_state(path)
    assert_same_tree(got, paddle.load(path))
    assert got["optimizer"]["LR_Scheduler"]["LinearWarmup_LR"] == {"last_epoch": 0, "last_lr": 0.1}


@pytest.mark.parametrize("state, message", [
    ({"model": {}}, "not a resume checkpoint of this package (missing or wrong optimizer, loss_scaler, epoch"),
    ({**{k: {} for k in ("model", "optimizer", "loss_scaler", "best")}, "epoch": 1, "global_step": 1,
      "model": {"w": [1.0]}}, "model entries that are not tensors (w)"),
])
def test_resume_state_must_be_one_of_ours(tmp_path, state, message):
    path = str(tmp_path / "last.pdckpt")
    save_state(state, path)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        read_resume_state(path)
