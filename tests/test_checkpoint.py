import os

import numpy as np
import pytest

from adaptformer.checkpoint import CheckpointError, load_checkpoint, save_state
from adaptformer.models import create_model
from adaptformer.utils import atomic_write


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
