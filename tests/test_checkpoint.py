import os

import numpy as np
import paddle
import pytest

from adaptformer.checkpoint import CheckpointError, load_checkpoint, load_pretrained, save_state
from adaptformer.models import create_model
from adaptformer.utils import atomic_write


def tiny(num_classes=3, **kw):
    return create_model("vit_tiny_patch4_32", depth=2, embed_dim=32, num_heads=2, num_classes=num_classes, **kw)


def test_pretrained_backbone_loads_and_a_head_of_another_size_is_reinitialised(tmp_path):
    src = tiny(num_classes=100)
    path = str(tmp_path / "pre.pdparams")
    save_state(src.state_dict(), path)
    dst = tiny(num_classes=10)
    fresh_head = dst.head.weight.numpy().copy()
    report = load_pretrained(dst, path)
    assert report.reinitialised == ["head.weight", "head.bias"]
    np.testing.assert_array_equal(dst.blocks[1].mlp.fc2.weight.numpy(), src.blocks[1].mlp.fc2.weight.numpy())
    np.testing.assert_array_equal(dst.head.weight.numpy(), fresh_head)
    assert "head.weight" in str(report)


def test_missing_backbone_key_is_an_error_never_a_random_layer(tmp_path):
    state = tiny().state_dict()
    del state["blocks.1.attn.qkv.weight"]
    path = str(tmp_path / "partial.pdparams")
    save_state(state, path)
    with pytest.raises(CheckpointError, match=r"lacks 1 backbone tensors .*blocks\.1\.attn\.qkv\.weight"):
        load_pretrained(tiny(), path)


def test_backbone_shape_mismatch_and_unexpected_keys(tmp_path):
    path = str(tmp_path / "wide.pdparams")
    save_state(create_model("vit_tiny_patch4_32", depth=2, embed_dim=64, num_heads=2, num_classes=3).state_dict(), path)
    with pytest.raises(CheckpointError, match="has shape"):
        load_pretrained(tiny(), path)
    extra = tiny().state_dict()
    extra["blocks.0.extra.weight"] = paddle.zeros([2])
    save_state(extra, path)
    assert load_pretrained(tiny(), path).unexpected == ["blocks.0.extra.weight"]


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


def test_unreadable_files_give_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_pretrained(tiny(), str(tmp_path / "nope.pdparams"))
    with pytest.raises(CheckpointError, match="is a directory"):
        load_pretrained(tiny(), str(tmp_path))
    good = str(tmp_path / "good.pdparams")
    save_state(tiny().state_dict(), good)
    truncated = str(tmp_path / "truncated.pdparams")
    with open(good, "rb") as f, open(truncated, "wb") as g:
        g.write(f.read()[:200])
    with pytest.raises(CheckpointError, match="not a readable Paddle checkpoint"):
        load_pretrained(tiny(), truncated)


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
