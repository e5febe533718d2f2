import numpy as np
import paddle
import pytest

from adaptformer import freeze
from adaptformer.config import MethodConfig
from adaptformer.methods.adaptformer import AdaptFormerConfig
from adaptformer.methods import apply_method
from adaptformer.models import create_model
from conftest import snapshot, train_steps


def tiny(**kw):
    return create_model("vit_tiny_patch4_32", depth=2, embed_dim=32, num_heads=2, num_classes=3, **kw)


def test_patterns_match_whole_name_components():
    m = tiny()
    m.add_adapters(bottleneck=4)
    names = freeze.matching_parameters(m, ["adapter"])
    assert names and all(".adapter." in n for n in names)
    assert freeze.matching_parameters(m, ["head"]) == ["head.weight", "head.bias"]
    # "norm" is a whole component: it matches the final norm, not norm1/norm2.
    assert freeze.matching_parameters(m, ["norm"]) == ["norm.weight", "norm.bias"]
    assert set(freeze.matching_parameters(m, [r"norm\d?"])) >= {"blocks.0.norm1.weight", "norm.weight"}
    assert all(n.endswith(".bias") for n in freeze.matching_parameters(m, ["bias"]))


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match="'adaptor' matches no parameter"):
        freeze.only_train(tiny(), ["adaptor"])


def test_frozen_parameters_stay_bit_identical_and_trainable_ones_move():
    m = tiny()
    trainable = set(apply_method(m, MethodConfig(name="adaptformer", adaptformer=AdaptFormerConfig(bottleneck=4, dropout=0.0))).trainable)
    # The up-projection starts at zero; after a step its gradient reaches the down-projection too.
    before = snapshot(m)
    opt = train_steps(m)
    after = snapshot(m)
    frozen = [n for n in before if n not in trainable]
    assert frozen and trainable
    for n in frozen:
        np.testing.assert_array_equal(before[n], after[n], err_msg=n)
    for n in trainable:
        assert not np.array_equal(before[n], after[n]), f"{n} did not change"
    # Only trainable parameters carry optimizer state.
    assert len(opt._parameter_list) == len(trainable)
    velocity = [k for k in opt.state_dict() if "velocity" in k]
    assert len(velocity) == len(trainable)


def test_linear_and_full_methods():
    m = tiny()
    assert apply_method(m, MethodConfig(name="linear")).trainable == ["head.weight", "head.bias"]
    assert freeze.summary(m).trainable == 32 * 3 + 3
    m2 = tiny()
    names = apply_method(m2, MethodConfig(name="full")).trainable
    assert len(names) == len(m2.parameters()) and freeze.summary(m2).percent == 100.0


def test_summary_counts_and_megabytes():
    m = tiny()
    m.add_adapters(bottleneck=4, learnable_scale=True)
    freeze.only_train(m, ["adapter", "head"])
    s = freeze.summary(m)
    per_block = (32 * 4 + 4) + (4 * 32 + 32) + 1
    assert s.trainable == 2 * per_block + 32 * 3 + 3
    assert s.total == sum(int(p.numel()) for p in m.parameters())
    assert s.trainable_mb == pytest.approx(s.trainable * 4 / 2**20)
    assert f"{s.trainable:,}" in str(s)


def test_train_mode_keeps_frozen_sublayers_in_eval():
    m = create_model("vit_tiny_patch4_32", depth=2, embed_dim=32, num_heads=2, num_classes=3,
                     drop_rate=0.3, attn_drop_rate=0.3)
    m.add_adapters(bottleneck=4, dropout=0.3)
    freeze.only_train(m, ["adapter", "head"])
    freeze.set_train_mode(m)
    block = m.blocks[0]
    assert not block.attn.training and not block.attn.attn_drop.training
    assert not block.mlp.drop.training
    assert block.adapter.training and block.adapter.dropout.training
    assert m.head.training
    freeze.train_all(m)
    freeze.set_train_mode(m)
    assert block.attn.attn_drop.training


# The ViT and a reduced iFormer: one rule for stochastic depth (models/tuning.TunableBlock).
BACKBONES = {
    "vit": dict(name="vit_tiny_patch4_32", depth=2, embed_dim=32, num_heads=2),
    "iformer": dict(name="iformer_small", img_size=32, depths=[1, 1, 1, 1], embed_dims=[16, 16, 24, 32],
                    num_heads=[4, 4, 3, 4], attention_heads=[1, 2, 1, 3], use_layer_scale=True),
}


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_frozen_branches_get_no_dropout_or_stochastic_depth_while_adapters_train(backbone):
    m = create_model(**BACKBONES[backbone], num_classes=3, drop_rate=0.3, attn_drop_rate=0.3, drop_path_rate=0.9)
    m.add_adapters(bottleneck=4, dropout=0.0)
    freeze.only_train(m, ["adapter", "head"])
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype("float32"))
    freeze.set_train_mode(m)
    np.testing.assert_array_equal(m(x).numpy(), m(x).numpy())
    freeze.train_all(m)
    freeze.set_train_mode(m)  # full fine-tuning: dropout and stochastic depth are back
    assert np.abs(m(x).numpy() - m(x).numpy()).max() > 1e-4
