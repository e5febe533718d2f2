import re

import numpy as np
import paddle
import pytest

from adaptformer.models import AdaptFormerAdapter, create_model, list_models, vit_base_patch16_224

TOL = 1e-5  # float32 round-off on outputs of order 1


def tiny(**kw):
    args = dict(depth=2, embed_dim=32, num_heads=2, num_classes=5)
    args.update(kw)
    return create_model("vit_tiny_patch4_32", **args)


def images(n=2, size=32, seed=0):
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype("float32"))


def randomise_adapters(model, seed=1):
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if "adapter" in name:
            p.set_value(rng.standard_normal(p.shape).astype("float32") * 0.2)


def test_shapes_of_features_head_and_pooling():
    m = tiny()
    m.eval()
    x = images(3)
    feats = m.forward_features(x)
    assert feats.shape == [3, 1 + 8 * 8, 32]
    assert m.forward_head(feats, pre_logits=True).shape == [3, 32]
    assert m(x).shape == [3, 5]
    avg = tiny(global_pool="avg")
    assert avg(x).shape == [3, 5]
    assert "fc_norm.weight" in dict(avg.named_parameters())


def test_reset_classifier_and_feature_only_model():
    m = tiny()
    m.reset_classifier(7)
    assert m(images()).shape == [2, 7]
    m.reset_classifier(0)
    assert m(images()).shape == [2, 32]
    assert tiny(num_classes=0)(images()).shape == [2, 32]


def test_seed_cifar_model_sees_a_10x10_grid_and_rejects_wrong_sizes():
    m = create_model("vit_base_patch3_32", num_classes=10, depth=1)
    assert m.patch_embed.num_patches == 100
    assert m.blocks[0].attn.qkv.bias is None  # the seed's qkv_bias=False
    assert m.blocks[0].norm1._epsilon == 1e-5
    with pytest.raises(ValueError, match="expects 32x32"):
        m(images(size=64))


@pytest.mark.parametrize("name", [n for n in list_models() if n.startswith("vit_")])  # iFormer: test_iformer.py
def test_each_factory_builds_the_architecture_its_name_says(name):
    widths = {"tiny": 192, "small": 384, "base": 768, "large": 1024}
    size, patch, img = re.fullmatch(r"vit_(\w+)_patch(\d+)_(\d+)", name).groups()
    m = create_model(name, depth=1, num_classes=0)  # one block: the dimensions without the cost
    assert (m.patch_embed.patch_size, m.patch_embed.img_size) == (int(patch), int(img))
    assert m.embed_dim == widths[size] and len(m.blocks) == 1
    m.eval()
    assert m(images(size=int(img))).shape == [2, widths[size]]


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'vit_huge_nonexistent' .known: iformer_base, .*vit_base_patch16_224"):
        create_model("vit_huge_nonexistent")


def test_vit_b16_parameter_counts_match_the_paper():
    m = vit_base_patch16_224(num_classes=0)
    assert sum(int(p.numel()) for p in m.parameters()) == 85_798_656
    m.add_adapters(bottleneck=64, learnable_scale=False)
    adapter = sum(int(p.numel()) for n, p in m.named_parameters() if ".adapter." in n)
    assert adapter == 1_189_632
    m2 = vit_base_patch16_224(num_classes=100)
    m2.add_adapters(bottleneck=64, learnable_scale=True)
    adapter2 = sum(int(p.numel()) for n, p in m2.named_parameters() if ".adapter." in n)
    assert adapter2 == 1_189_632 + 12
    assert sum(int(p.numel()) for n, p in m2.named_parameters() if n.startswith("head.")) == 76_900


@pytest.mark.parametrize("position,adapter_input", [("parallel", "stream"), ("parallel", "ln2"), ("sequential", "stream")])
def test_fresh_adapters_leave_the_function_unchanged(position, adapter_input):
    m = tiny()
    m.eval()
    x = images(4)
    before = m(x).numpy()
    m.add_adapters(position=position, adapter_input=adapter_input, scale=1.0)
    after = m(x).numpy()
    # Zero up-projection: exactly the backbone's output, not just close.
    np.testing.assert_array_equal(before, after)
    randomise_adapters(m)
    assert np.abs(m(x).numpy() - before).max() > 1e-3  # and the adapters are really wired in


def _np_layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _reference_block(block, x, position, adapter_input):
    """The official AdaptFormer block computed in NumPy from the block's weights."""
    import math

    P = {n: p.numpy() for n, p in block.named_parameters()}
    eps = block.norm1._epsilon
    erf = np.vectorize(math.erf)

    def lin(v, name):
        return v @ P[name + ".weight"] + (P[name + ".bias"] if name + ".bias" in P else 0)

    h = _np_layer_norm(x, P["norm1.weight"], P["norm1.bias"], eps)
    b, n, c = h.shape
    heads = block.attn.num_heads
    qkv = lin(h, "attn.qkv").reshape(b, n, 3, heads, c // heads).transpose(2, 0, 3, 1, 4)
    att = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) * (c // heads) ** -0.5
    att = np.exp(att - att.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    x = x + lin((att @ qkv[2]).transpose(0, 2, 1, 3).reshape(b, n, c), "attn.proj")
    normed = _np_layer_norm(x, P["norm2.weight"], P["norm2.bias"], eps)
    f = lin(normed, "mlp.fc1")
    mlp = lin(0.5 * f * (1 + erf(f / math.sqrt(2))), "mlp.fc2")
    scale = block.adapter.scale.numpy()

    def adapter(v):
        return lin(np.maximum(lin(v, "adapter.down_proj"), 0), "adapter.up_proj") * scale

    if position == "sequential":
        return x + mlp + adapter(mlp)
    return x + mlp + adapter(normed if adapter_input == "ln2" else x)


@pytest.mark.parametrize("position,adapter_input", [("parallel", "stream"), ("parallel", "ln2"), ("sequential", "stream")])
def test_block_matches_the_official_formula(position, adapter_input):
    m = tiny()
    m.add_adapters(position=position, adapter_input=adapter_input, scale=0.1)
    randomise_adapters(m)
    m.eval()
    x = np.random.default_rng(3).standard_normal((2, 5, 32)).astype("float32")
    got = m.blocks[0](paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(got, _reference_block(m.blocks[0], x.astype("float64"), position, adapter_input),
                               rtol=0, atol=TOL)


def test_adapter_initialisation():
    a = AdaptFormerAdapter(96, bottleneck=8, scale=0.1)
    w = a.down_proj.weight.numpy()
    assert w.shape == (96, 8)  # Paddle Linear: [in, out]
    assert np.abs(w).max() <= 1 / np.sqrt(96) + 1e-7 and w.std() > 0
    assert not a.down_proj.bias.numpy().any()
    assert not a.up_proj.weight.numpy().any() and not a.up_proj.bias.numpy().any()
    assert a.scale.numpy().tolist() == pytest.approx([0.1])
    assert not a.scale.stop_gradient  # learnable by default
    fixed = AdaptFormerAdapter(96, bottleneck=8, scale=0.1, learnable_scale=False)
    assert "scale" not in dict(fixed.named_parameters()) and "scale" in fixed.state_dict()


def test_adapter_dropout_is_off_in_eval_and_on_in_train():
    m = tiny()
    m.add_adapters(dropout=0.5, scale=1.0)
    randomise_adapters(m)
    x = images(2)
    m.eval()
    np.testing.assert_array_equal(m(x).numpy(), m(x).numpy())
    m.train()
    paddle.seed(0)
    a = m(x).numpy()
    b = m(x).numpy()
    assert np.abs(a - b).max() > 1e-4


def test_add_adapters_to_chosen_blocks_and_errors():
    m = tiny(depth=3)
    m.add_adapters(blocks=[0, 2])
    assert [b.adapter is not None for b in m.blocks] == [True, False, True]
    with pytest.raises(ValueError, match="already has an adapter"):
        m.add_adapters(blocks=[2])
    with pytest.raises(ValueError, match="out of range"):
        m.add_adapters(blocks=[3])
    with pytest.raises(ValueError, match="parallel only"):
        tiny().add_adapters(position="sequential", adapter_input="ln2")


def test_drop_path_rates_are_linearly_spaced():
    m = tiny(depth=3, drop_path_rate=0.2)
    assert [b.drop_path.drop_prob for b in m.blocks] == pytest.approx([0.0, 0.1, 0.2])
