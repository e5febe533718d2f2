"""The tuning-method suite: parameter counts in closed form, initial outputs, what trains, LoRA merging."""
import copy

import numpy as np
import paddle
import pytest

from adaptformer import freeze
from adaptformer.weights.checkpoint import load_checkpoint, save_state
from adaptformer.config import MethodConfig
from adaptformer.methods.adaptformer import AdaptFormerConfig
from adaptformer.methods.adapter import HoulsbyAdapterConfig
from adaptformer.methods.lora import LoRAConfig
from adaptformer.methods.vpt import VPTConfig
from adaptformer.methods import apply_method
from adaptformer.models import create_model
from adaptformer.models.linear import Linear
from adaptformer.models.lora import LoRALinear, merge_lora, unmerge_lora
from conftest import snapshot, train_steps

# ViT-B/16: width d, depth L, MLP width 4d, patch 16.
D, L, H = 768, 12, 3072


@pytest.fixture(scope="module")
def vit_b16():
    return create_model("vit_base_patch16_224", num_classes=100)


def method(name, **sections):
    return MethodConfig(name=name, **sections)


@pytest.mark.parametrize(
    "cfg, expected",
    [
        (method("adaptformer", adaptformer=AdaptFormerConfig(bottleneck=64, learnable_scale=False)), {"adaptformer": 1_189_632}),
        (method("adaptformer"), {"adaptformer": L * (2 * D * 64 + 64 + D + 1)}),
        (method("adaptformer", adaptformer=AdaptFormerConfig(layernorm="in", learnable_scale=False)),
         {"adaptformer": 1_189_632 + L * 2 * D}),  # V-PETL's adapter LayerNorm: weight and bias of width d
        (method("vpt", vpt=VPTConfig(num_tokens=10, deep=True)), {"vpt": 92_160}),
        (method("vpt", vpt=VPTConfig(num_tokens=10, deep=False)), {"vpt": 10 * D}),
        (method("adapter", adapter=HoulsbyAdapterConfig(bottleneck=10)), {"adapter": L * (2 * D * 10 + 10 + D)}),
        (method("lora", lora=LoRAConfig(rank=8, targets=["q", "v"])), {"lora": 294_912}),
        (method("lora", lora=LoRAConfig(rank=4, targets=["q", "k", "v", "proj", "fc1", "fc2"])),
         {"lora": L * 4 * (4 * 2 * D + 2 * (D + H))}),
        # Every bias: qkv, proj, fc1, fc2, two LayerNorms per block, the patch embedding and the final norm.
        (method("bitfit"), {"bitfit": L * (3 * D + D + H + D + 2 * D) + D + D}),
        (method("adaptformer+vpt", vpt=VPTConfig(num_tokens=10)), {"adaptformer": L * (2 * D * 64 + 64 + D + 1), "vpt": 92_160}),
    ],
    ids=["adaptformer-64", "adaptformer-learnable-scale", "adaptformer-64-layernorm-in", "vpt-deep-10", "vpt-shallow-10", "houlsby-10",
         "lora-r8-qv", "lora-r4-all", "bitfit", "adaptformer+vpt"],
)
def test_trainable_parameters_match_closed_forms_on_vit_b16(vit_b16, cfg, expected):
    model = copy.deepcopy(vit_b16)
    report = apply_method(model, cfg)
    assert report.per_method == {**expected, "head": D * 100 + 100}
    assert freeze.summary(model).trainable == sum(report.per_method.values())


def tiny(**kw):
    paddle.seed(3)
    model = create_model("vit_tiny_patch4_32", depth=2, embed_dim=32, num_heads=2, num_classes=3, **kw)
    for p in model.parameters():  # non-trivial weights everywhere, biases included
        p.set_value(paddle.randn(p.shape) * 0.2 + (1.0 if p.ndim == 1 and "norm" in p.name else 0.0))
    model.eval()
    return model


X = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype("float32"))


@pytest.mark.parametrize("name", ["adaptformer", "adapter", "lora", "bitfit", "linear", "adaptformer+lora"])
def test_a_fresh_method_leaves_the_backbone_output_unchanged(name):
    model = tiny()
    before = model(X).numpy()
    cfg = method(name, lora=LoRAConfig(rank=4, targets=["q", "k", "v", "proj", "fc1", "fc2"]))
    apply_method(model, cfg)
    model.eval()
    np.testing.assert_allclose(model(X).numpy(), before, atol=1e-6, rtol=0)


def test_vpt_inserts_tokens_after_cls_and_keeps_the_feature_layout():
    model = tiny()
    plain = model.forward_features(X).numpy()
    apply_method(model, method("vpt", vpt=VPTConfig(num_tokens=5, deep=True)))
    model.eval()
    feats = model.forward_features(X).numpy()
    assert feats.shape == plain.shape  # prompts are dropped from the output: [cls, patches]
    assert not np.allclose(feats, plain)
    bound = np.sqrt(6.0 / (3 * 4 * 4 + 32))  # VPT's uniform init for 4-pixel patches, width 32
    tokens = model.prompt.tokens.numpy()
    assert tokens.shape == (2, 5, 32) and np.abs(tokens).max() <= bound
    # Shallow prompts only reach the first block: with depth 1 both variants agree.
    one = create_model("vit_tiny_patch4_32", depth=1, embed_dim=32, num_heads=2, num_classes=3)
    one.add_prompts(3, deep=False)
    one.eval()
    deep = create_model("vit_tiny_patch4_32", depth=1, embed_dim=32, num_heads=2, num_classes=3)
    deep.set_state_dict({k: v for k, v in one.state_dict().items() if not k.startswith("prompt")})
    deep.add_prompts(3, deep=True)
    deep.prompt.tokens.set_value(one.prompt.tokens)
    deep.eval()
    np.testing.assert_allclose(deep(X).numpy(), one(X).numpy(), atol=1e-6)


@pytest.mark.parametrize("name", ["adaptformer", "vpt", "adapter", "lora", "bitfit", "adaptformer+vpt+lora"])
def test_only_the_method_and_head_train(name):
    model = tiny()
    report = apply_method(model, method(name, adaptformer=AdaptFormerConfig(bottleneck=4, dropout=0.0),
                                         lora=LoRAConfig(rank=2)))
    before = snapshot(model)
    train_steps(model, steps=3)
    after = snapshot(model)
    trainable = set(report.trainable)
    for n in before:
        if n in trainable:
            assert not np.array_equal(before[n], after[n]), f"{n} should have trained"
        else:
            np.testing.assert_array_equal(before[n], after[n], err_msg=f"{n} should be frozen")


def test_lora_merges_into_plain_linear_layers_with_the_same_output(tmp_path):
    model = tiny()
    apply_method(model, method("lora", lora=LoRAConfig(rank=4, alpha=8, targets=["q", "v", "fc2"])))
    train_steps(model, steps=3)  # B moves away from zero
    model.eval()
    qkv = model.blocks[0].attn.qkv
    assert isinstance(qkv, LoRALinear) and not np.allclose(qkv.lora_q_B.numpy(), 0)
    unmerged = model(X).numpy()
    assert merge_lora(model) == 4  # qkv and fc2 in each of 2 blocks
    merged = model(X).numpy()
    np.testing.assert_allclose(merged, unmerged, atol=1e-5, rtol=0)
    assert not any(isinstance(m, LoRALinear) for m in model.sublayers())
    merged_fc2 = model.blocks[0].mlp.fc2
    assert type(merged_fc2) is Linear  # the CPU Linear every block uses, not paddle's nn.Linear
    assert merged_fc2.weight.stop_gradient and merged_fc2.bias.stop_gradient  # frozen before, frozen after
    # The merged model is a plain ViT: its checkpoint loads strictly into a fresh one.
    path = str(tmp_path / "merged.pdparams")
    save_state(model.state_dict(), path)
    plain = create_model("vit_tiny_patch4_32", depth=2, embed_dim=32, num_heads=2, num_classes=3)
    load_checkpoint(plain, path)
    plain.eval()
    np.testing.assert_allclose(plain(X).numpy(), unmerged, atol=1e-5, rtol=0)


def test_merge_keeps_a_trained_bias_trainable():
    model = tiny()
    apply_method(model, method("lora+bitfit", lora=LoRAConfig(rank=2, targets=["fc2"])))
    merge_lora(model)
    fc2 = model.blocks[0].mlp.fc2
    assert fc2.weight.stop_gradient and not fc2.bias.stop_gradient


def test_unmerge_restores_the_lora_layers_and_their_weights():
    model = tiny()
    apply_method(model, method("lora", lora=LoRAConfig(rank=4, alpha=8, targets=["q", "v", "fc2"])))
    train_steps(model, steps=3)
    model.eval()
    before = {n: t.numpy().copy() for n, t in model.state_dict().items()}
    lora_fc2 = model.blocks[0].mlp.fc2
    unmerged = model(X).numpy()
    assert merge_lora(model) == 4
    merged_fc2 = model.blocks[0].mlp.fc2
    assert merged_fc2.bias is lora_fc2.bias  # the bias is kept, not copied: frozen stays frozen
    assert merged_fc2.weight is not lora_fc2.weight  # W itself is untouched (a shared backbone stays intact)
    assert unmerge_lora(model) == 4
    assert model.blocks[0].mlp.fc2 is lora_fc2 and isinstance(model.blocks[1].attn.qkv, LoRALinear)
    after = model.state_dict()
    assert list(after) == list(before)
    for n, value in before.items():
        np.testing.assert_allclose(after[n].numpy(), value, atol=1e-6, rtol=0, err_msg=n)
    np.testing.assert_array_equal(model(X).numpy(), unmerged)
    assert unmerge_lora(model) == 0  # nothing left to restore
    merge_lora(model, reversible=False)
    with pytest.raises(ValueError, match="reversible=False"):
        unmerge_lora(model)


def test_composed_methods_train_end_to_end(tiny_config):
    from adaptformer.config import load_config
    from adaptformer.engine import train

    cfg = load_config(tiny_config(method={"name": "adaptformer+vpt+lora", "adaptformer": {"bottleneck": 4},
                                          "vpt": {"num_tokens": 2}, "lora": {"rank": 2}}, train={"epochs": 1}))
    summary = train(cfg)
    assert summary["method"] == "adaptformer+vpt+lora" and 0 < summary["trainable_percent"] < 100


def test_every_method_module_is_registered_and_its_layers_are_known_to_tuned_weights():
    """A method is one module of adaptformer/methods defining SPEC: the registry finds it, the config
    gets its section, and tuned.py recognises the layers it inserts (a layer class missing there
    would make loading tuned weights apply the method a second time)."""
    import importlib
    import pkgutil

    import adaptformer.methods as package
    from adaptformer.methods import METHODS
    from adaptformer.serve.tuned import _method_modules

    defined = {getattr(importlib.import_module(f"adaptformer.methods.{m.name}"), "SPEC").name
               for m in pkgutil.iter_modules(package.__path__)
               if hasattr(importlib.import_module(f"adaptformer.methods.{m.name}"), "SPEC")}
    assert set(METHODS) == defined and {"full", "linear", "adaptformer", "vpt", "adapter", "lora", "bitfit"} <= defined
    for name, spec in METHODS.items():
        assert (spec.section is not None) == hasattr(MethodConfig(), name), name
        if spec.exclusive:
            continue
        model = create_model("vit_tiny_patch4_32", num_classes=3, depth=2, embed_dim=32, num_heads=2)
        apply_method(model, method(name))
        inserted = _method_modules(model)
        assert bool(inserted) == bool(spec.modules()), name
        assert all(isinstance(layer, spec.modules()) for layer in inserted), name


def test_the_adapter_layernorm_normalises_its_input_before_down():
    paddle.seed(3)
    model = create_model("vit_tiny_patch4_32", num_classes=3, depth=1, embed_dim=16, num_heads=2)
    x = paddle.randn([2, 3, 32, 32])
    before = model(x).numpy()
    apply_method(model, method("adaptformer", adaptformer=AdaptFormerConfig(bottleneck=4, layernorm="in", dropout=0.0)))
    np.testing.assert_allclose(model(x).numpy(), before, rtol=0, atol=1e-6)  # Up starts at zero: unchanged
    adapter = model.blocks[0].adapter
    adapter.norm.weight.set_value(paddle.full([16], 2.0))
    adapter.up_proj.weight.set_value(paddle.randn([4, 16]))
    adapter.eval()
    t = paddle.randn([2, 5, 16]) * 3 + 1
    t_np = t.numpy()
    normed = 2.0 * (t_np - t_np.mean(-1, keepdims=True)) / np.sqrt(t_np.var(-1, keepdims=True) + 1e-5)
    down = np.maximum(normed @ adapter.down_proj.weight.numpy() + adapter.down_proj.bias.numpy(), 0)
    want = (down @ adapter.up_proj.weight.numpy() + adapter.up_proj.bias.numpy()) * adapter.scale.numpy()
    np.testing.assert_allclose(adapter(t).numpy(), want, rtol=1e-5, atol=1e-5)
    assert not adapter.norm.weight.stop_gradient  # it trains with the adapter
