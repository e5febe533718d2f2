"""Tuning methods on iFormer through the same mechanism as on the ViT (models/tuning.py): parameter
counts in closed form, fresh modules leave the logits unchanged, only what trains moves, tuned
weights round trip, a TaskBank of iFormer tasks, and one-line errors where a method does not fit."""
import json
import os

import numpy as np
import paddle
import conftest
import pytest

from adaptformer import freeze
from adaptformer.config import ConfigError, MethodConfig, from_dict
from adaptformer.methods.adaptformer import AdaptFormerConfig
from adaptformer.methods.adapter import HoulsbyAdapterConfig
from adaptformer.methods.lora import LoRAConfig
from adaptformer.methods import apply_method
from adaptformer.models import InceptionTransformer, create_model, load_pretrained
from adaptformer.models.lora import LoRALinear, merge_lora
from adaptformer.serve.tasks import TaskBank
from adaptformer.serve.tuned import build_tuned_model, save_tuned, tuned_state_names

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "golden")
PTH = os.path.join(GOLDEN, "iformer_reduced.pth")
REDUCED = json.loads(str(np.load(os.path.join(GOLDEN, "iformer_reference.npz"))["reduced_json"]))
KWARGS = {k: v for k, v in REDUCED.items() if k != "num_classes"}  # 32 px, depths 2/1/1/1, layer scale
X = paddle.to_tensor(np.random.default_rng(4).standard_normal((3, 3, 32, 32)).astype("float32"))

# iformer_small as the official factory builds it: stage widths and depths, heads of 32 channels,
# per block the heads given to attention (the frequency ramp).
DIMS, DEPTHS, HEAD_DIM = [96, 192, 320, 384], [3, 3, 9, 3], 32
ATTENTION_HEADS = [1] * 3 + [3] * 3 + [7] * 4 + [9] * 5 + [11] * 3
SMALL_PARAMS = 19_866_344  # docs/iformer.md: equal to the official model's, 1000 classes
CLASSES = 10
HEAD = DIMS[-1] * CLASSES + CLASSES


def block_dims():
    return [d for d, n in zip(DIMS, DEPTHS) for _ in range(n)]


def method(name, **sections):
    return MethodConfig(name=name, **sections)


@pytest.fixture(scope="module")
def lazy_small():
    """iformer_small without tensors (counts come from shapes); each test applies its method to a fresh one."""
    def build():
        with paddle.LazyGuard():
            return create_model("iformer_small", num_classes=CLASSES)
    model = build()
    assert model.embed_dims == DIMS and [len(b) for _, _, b in model.stages] == DEPTHS
    return build


@pytest.mark.parametrize(
    "cfg, expected",
    [
        # every block: Down d x 64 + 64, Up 64 x d + d, the learnable scale
        (method("adaptformer", adaptformer=AdaptFormerConfig(bottleneck=64)),
         {"adaptformer": sum(d * 64 + 64 + 64 * d + d + 1 for d in block_dims())}),
        (method("adaptformer", adaptformer=AdaptFormerConfig(bottleneck=64, learnable_scale=False)),
         {"adaptformer": sum(d * 64 + 64 + 64 * d + d for d in block_dims())}),
        (method("adapter", adapter=HoulsbyAdapterConfig(bottleneck=10)),
         {"adapter": sum(2 * d * 10 + 10 + d for d in block_dims())}),
        # q and v: A [low, r] and B [r, low] each, low = the block's attention channels
        (method("lora", lora=LoRAConfig(rank=8, targets=["q", "v"])),
         {"lora": sum(2 * 2 * 8 * h * HEAD_DIM for h in ATTENTION_HEADS)}),
        (method("lora", lora=LoRAConfig(rank=4, targets=["q", "k", "v", "fc1", "fc2"])),
         {"lora": sum(3 * 2 * 4 * h * HEAD_DIM + 2 * 4 * (d + 4 * d) for h, d in zip(ATTENTION_HEADS, block_dims()))}),
        # Every bias. Per block: norm1 d, max-pool path proj2 (d - low), qkv 3 low, mixer proj d, norm2 d,
        # fc1 4d, fc2 d. Stem: two convs and two BatchNorms (d0 / 2, d0 each); the 3 patch embeddings: conv
        # and BatchNorm; the final norm.
        (method("bitfit"), {"bitfit": sum(9 * d + 2 * h * HEAD_DIM for h, d in zip(ATTENTION_HEADS, block_dims()))
                            + 3 * DIMS[0] + 2 * sum(DIMS[1:]) + DIMS[-1]}),
        (method("linear"), {}),
    ],
    ids=["adaptformer-64", "adaptformer-64-fixed-scale", "houlsby-10", "lora-r8-qv", "lora-r4-qkv-mlp", "bitfit",
         "linear"],
)
def test_trainable_parameters_match_closed_forms_on_iformer_small(lazy_small, cfg, expected):
    model = lazy_small()
    report = apply_method(model, cfg)
    assert report.per_method == {**expected, "head": HEAD}
    assert freeze.summary(model).trainable == sum(report.per_method.values())


def test_full_tuning_trains_every_parameter_of_iformer_small(lazy_small):
    model = lazy_small()
    report = apply_method(model, method("full"))
    assert report.per_method == {"full": SMALL_PARAMS - (DIMS[-1] * 1000 + 1000) + HEAD}


def reduced(seed=None):
    """The reduced iFormer with the official-format weights (layer scales far from their init), eval mode."""
    if seed is not None:
        paddle.seed(seed)
    model = InceptionTransformer(**REDUCED)
    load_pretrained(model, PTH)
    model.eval()
    return model


def logits(model):
    model.eval()
    with paddle.no_grad():
        return model(X).numpy()


ALL_LORA = LoRAConfig(rank=4, targets=["q", "k", "v", "fc1", "fc2"])


@pytest.mark.parametrize("name", ["adaptformer", "adapter", "lora", "bitfit", "linear", "adaptformer+lora"])
def test_a_fresh_method_leaves_the_iformer_logits_unchanged(name):
    model = reduced()
    before = logits(model)
    apply_method(model, method(name, lora=ALL_LORA))
    np.testing.assert_allclose(logits(model), before, atol=1e-6, rtol=0)


def test_modules_sit_where_the_checkpoint_names_say():
    model = reduced()
    apply_method(model, method("adaptformer+lora", lora=LoRAConfig(rank=2, targets=["q", "v", "fc2"])))
    state = model.state_dict()
    assert {"blocks1.0.adapter.down_proj.weight", "blocks4.0.adapter.up_proj.bias", "blocks4.0.adapter.scale",
            "blocks3.0.attn.low_mixer.qkv.lora_q_A", "blocks3.0.attn.low_mixer.qkv.lora_v_B",
            "blocks2.0.mlp.fc2.lora_fc2_A"} <= set(state)
    qkv = model.blocks3[0].attn.low_mixer.qkv
    low = model.blocks3[0].attn.low_mixer.dim
    assert isinstance(qkv, LoRALinear) and qkv.parts == {"q": (0, low), "v": (2 * low, 3 * low)}
    assert "blocks1.0.attn.low_mixer.qkv.weight" in state  # the wrapped Linear keeps its names


def test_the_adapter_joins_beside_the_mlp_branch_outside_layer_scale():
    """out = x + ls2 * MLP(LN2(x)) + s * Up(ReLU(Down(x))), x the stream after the mixer (eval mode)."""
    model = reduced()
    model.add_adapters(bottleneck=4, scale=0.5, dropout=0.0)
    block = model.blocks3[0]  # a stage with layer scale
    paddle.seed(1)
    block.adapter.up_proj.weight.set_value(paddle.randn(block.adapter.up_proj.weight.shape))
    x = paddle.randn([2, 2, 2, block.width])
    with paddle.no_grad():
        got = block(x).numpy()
        mid = x + block.layer_scale_1 * block.attn(block.norm1(x))
        adapter = block.adapter.up_proj(paddle.nn.functional.relu(block.adapter.down_proj(mid))) * 0.5
        expected = mid + block.layer_scale_2 * block.mlp(block.norm2(mid)) + adapter
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)
    assert np.abs(adapter.numpy()).max() > 1e-2  # the adapter's own contribution, not scaled by ls2


def learnable(model):
    return {n: p.numpy().copy() for n, p in freeze.learnable_parameters(model).items()}


def train_steps(model, steps=3):
    """At 64 px: at 32 the last stage's grid is 1x1, where attention over one position ignores q and k."""
    conftest.train_steps(model, steps=steps, size=64)


@pytest.mark.parametrize("name", ["adaptformer", "adapter", "lora", "bitfit", "linear", "adaptformer+lora+bitfit"])
def test_only_the_method_and_head_train_on_iformer(name):
    model = InceptionTransformer(**{**REDUCED, "drop_path_rate": 0.1})
    load_pretrained(model, PTH)
    report = apply_method(model, method(name, adaptformer=AdaptFormerConfig(bottleneck=4, dropout=0.0),
                                         lora=ALL_LORA))
    before = learnable(model)
    train_steps(model)
    after = learnable(model)
    trainable = set(report.trainable)
    assert trainable and trainable <= set(before)
    for n in before:
        if n in trainable:
            assert not np.array_equal(before[n], after[n]), f"{n} should have trained"
        else:
            np.testing.assert_array_equal(before[n], after[n], err_msg=f"{n} should be frozen")


def test_lora_on_iformer_merges_with_the_same_logits():
    model = reduced()
    apply_method(model, method("lora", lora=ALL_LORA))
    train_steps(model)
    unmerged = logits(model)
    assert merge_lora(model) == 3 * len(model.tuning_blocks())  # qkv, fc1, fc2 of every block
    np.testing.assert_allclose(logits(model), unmerged, atol=1e-5, rtol=0)


# ---- tuned weights and a TaskBank ---------------------------------------------------------------

TUNED = {
    "adaptformer": {"name": "adaptformer", "adaptformer": {"bottleneck": 4, "dropout": 0.0}},
    "adaptformer-fixed-scale": {"name": "adaptformer", "adaptformer": {"bottleneck": 4, "learnable_scale": False}},
    "adapter": {"name": "adapter", "adapter": {"bottleneck": 3}},
    "lora": {"name": "lora", "lora": {"rank": 2, "targets": ["q", "v", "fc1"]}},
    "bitfit": {"name": "bitfit"},  # trains BatchNorm biases: their running statistics are tuned too
}


def config(name, classes=3):
    model = {"name": "iformer_small", "num_classes": classes, "kwargs": KWARGS, "pretrained": PTH}
    return from_dict({"model": model, "method": TUNED[name], "data": {"mean": [0.5] * 3, "std": [0.25] * 3}}, name)


def tuned_run(tmp_path, name, classes=3):
    """The reduced iFormer from its .pth, `name` trained a few steps, saved: (logits on X, folder)."""
    cfg = config(name, classes)
    model = reduced(seed=5)
    model.reset_classifier(classes)
    apply_method(model, cfg.method)
    train_steps(model, steps=2)
    folder = save_tuned(model, str(tmp_path / name), cfg, [f"{name}_{i}" for i in range(classes)])
    return logits(model), folder


@pytest.mark.parametrize("name", sorted(TUNED))
def test_tuned_weights_round_trip_on_iformer(tmp_path, name):
    expected, folder = tuned_run(tmp_path, name)
    model, meta = build_tuned_model(folder, log=lambda *a: None)
    assert isinstance(model, InceptionTransformer) and meta["method"]["name"] == TUNED[name]["name"]
    np.testing.assert_allclose(logits(model), expected, atol=1e-6, rtol=0)
    if name == "bitfit":
        assert "patch_embed.norm1._mean" in meta["tensors"]  # a BatchNorm that trains keeps its statistics


def test_a_taskbank_serves_iformer_tasks_on_one_backbone(tmp_path):
    runs = {name: tuned_run(tmp_path, name, classes) for name, classes in
            [("adaptformer", 3), ("lora", 4), ("bitfit", 5)]}
    backbone = reduced(seed=9)
    backbone_state = backbone.state_dict()
    bank = TaskBank(backbone, log=lambda *a: None)
    for name, (_, folder) in runs.items():
        bank.add(name, folder)
    for name, (expected, _) in runs.items():
        bank.activate(name)
        np.testing.assert_allclose(bank(X).numpy(), expected, atol=1e-6, rtol=0)
        state = bank.model(name).state_dict()
        tuned = set(tuned_state_names(bank.model(name)))
        for n in bank.shared_names(name):
            assert n not in tuned and state[n] is backbone_state[n], n
        assert set(state) == tuned | set(bank.shared_names(name))


# ---- where a method does not fit: one line ------------------------------------------------------

def test_vpt_on_iformer_is_a_one_line_config_error(tiny_config):
    from adaptformer.config import load_config
    from adaptformer.engine import build_model

    with pytest.raises(ConfigError, match="vpt.*convolution-shaped token grids") as err:
        apply_method(reduced(), method("vpt"))
    assert "\n" not in str(err.value)
    path = tiny_config(model={"name": "iformer_small", "num_classes": 4, "kwargs": KWARGS},
                       method={"name": "adaptformer+vpt", "vpt": {"num_tokens": 2}})
    with pytest.raises(ConfigError, match="^method: method 'vpt' does not apply") as err:
        build_model(load_config(path), log=lambda *a: None)
    assert "\n" not in str(err.value)


def test_lora_on_a_projection_iformer_does_not_have_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"no Linear layer for 'proj' \(targets here: q, k, v, fc1, fc2\)") as err:
        apply_method(reduced(), method("lora", lora=LoRAConfig(targets=["q", "proj"])))
    assert "\n" not in str(err.value)


class NotABackbone(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.body = paddle.nn.Linear(4, 4)
        self.head = paddle.nn.Linear(4, 2)


@pytest.mark.parametrize("name", ["adaptformer", "adapter", "vpt", "lora"])
def test_a_method_on_a_model_without_the_protocol_is_a_one_line_error(name):
    with pytest.raises(ValueError, match=f"method '{name}' needs a backbone with tuning blocks.*NotABackbone has none"):
        apply_method(NotABackbone(), method(name))
    apply_method(NotABackbone(), method("bitfit"))  # what needs no blocks still works


@pytest.mark.parametrize("frozen", ["weight", "bias"])
def test_batchnorm_with_one_affine_parameter_frozen_still_gets_the_other_ones_gradient(frozen):
    """Paddle 3.3's batch_norm gives no gradient to a trainable bias beside a frozen weight (or the
    other way round); models.layers.BatchNorm2D does, equal to the one Paddle computes when both train."""
    from adaptformer.models.layers import BatchNorm2D

    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype("float32"))
    g = paddle.to_tensor(np.random.default_rng(1).standard_normal((2, 4, 3, 3)).astype("float32"))

    def run(freeze_one):
        bn = BatchNorm2D(4)
        bn.weight.set_value(paddle.to_tensor([0.5, 1.0, 1.5, 2.0]))
        bn.bias.set_value(paddle.to_tensor([0.1, -0.2, 0.3, 0.0]))
        getattr(bn, frozen).stop_gradient = freeze_one
        y = bn(x)
        (y * g).sum().backward()
        kept = "bias" if frozen == "weight" else "weight"
        return y.numpy(), getattr(bn, kept).grad.numpy(), bn._mean.numpy()

    y, grad, mean = run(True)
    y_ref, grad_ref, mean_ref = run(False)
    np.testing.assert_allclose(y, y_ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(grad, grad_ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(mean, mean_ref, atol=1e-7, rtol=0)  # running statistics updated alike


def test_a_run_tunes_an_iformer_end_to_end_and_writes_its_tuned_weights(tiny_config):
    from adaptformer.config import load_config
    from adaptformer.engine import train

    cfg = load_config(tiny_config(model={"name": "iformer_small", "num_classes": 4, "kwargs": KWARGS, "pretrained": PTH},
                                  method={"name": "adaptformer+lora", "adaptformer": {"bottleneck": 4},
                                          "lora": {"rank": 2, "targets": ["q", "v"]}},
                                  data={"synthetic_train_size": 32, "synthetic_eval_size": 8}, train={"epochs": 1}))
    summary = train(cfg)
    assert summary["method"] == "adaptformer+lora" and 0 < summary["trainable_percent"] < 100
    tuned = os.path.join(cfg.train.output_dir, "tuned")
    model, _ = build_tuned_model(tuned, log=lambda *a: None)
    assert isinstance(model.blocks4[0].attn.low_mixer.qkv, LoRALinear) and model.blocks1[0].adapter is not None


# ---- the shipped iFormer configs ---------------------------------------------------------------

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_notebook_recipe_config_builds_iformer_small_with_its_optimizer():
    """configs/iformer/cifar10_small.yaml: built (no step at 224 px here), Adam with L2 1e-5, cosine, smoothing 0.1."""
    from adaptformer.config import load_config
    from adaptformer.engine import build_model
    from adaptformer.engine.optim import build_optimizer, build_scheduler

    cfg = load_config(os.path.join(ROOT_DIR, "configs", "iformer", "cifar10_small.yaml"))
    assert (cfg.data.img_size, cfg.data.batch_size, cfg.train.epochs, cfg.train.label_smoothing) == (224, 128, 100, 0.1)
    with paddle.LazyGuard():
        model = build_model(cfg, log=lambda *a: None)
    assert isinstance(model, InceptionTransformer) and model.embed_dims == DIMS
    scheduler = build_scheduler(cfg.optimizer, cfg.scheduler, steps_per_epoch=391, epochs=100)
    assert isinstance(scheduler, paddle.optimizer.lr.CosineAnnealingDecay) and scheduler.T_max == 39100
    optimizer = build_optimizer(cfg.optimizer, freeze.trainable_named_parameters(model), scheduler)
    assert type(optimizer) is paddle.optimizer.Adam
    assert isinstance(optimizer.regularization, paddle.regularizer.L2Decay)
    assert optimizer.regularization._coeff == pytest.approx(1e-5)


def test_the_cpu_miniature_trains_a_step(tmp_path):
    from adaptformer.config import load_config
    from adaptformer.engine import train

    out = str(tmp_path / "out")
    cfg = load_config(os.path.join(ROOT_DIR, "configs", "cpu", "iformer_smoke.yaml"),
                      [f"train.output_dir={out}", "train.epochs=1", "data.synthetic_train_size=8",
                       "data.synthetic_eval_size=4", "data.batch_size=8"])
    summary = train(cfg)
    assert summary["method"] == "adaptformer" and 0 <= summary["best_top1"] <= 1  # a fraction
    assert os.path.isfile(os.path.join(out, "tuned", "tuned.json"))
