"""iFormer (adaptformer/models/iformer.py) computes what the official PyTorch implementation
(sail-sg/iFormer, models/inception_transformer.py) computes, and reads its checkpoints.

Fixtures: tests/fixtures/make_golden_iformer.py, run with torch + timm and the official file
(neither is needed here). Random weights everywhere (tests/seeded_vit.py), BatchNorm running
statistics and layer scales far from their initial values, eval mode. Tolerance 1e-5 absolute
on logits of size about 1-3; the largest differences measured are about 2e-6.
"""
import json
import os
import sys

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest
from seeded_vit import seeded_images, seeded_weights

from adaptformer.models.backbone import create_backbone
from adaptformer.weights.checkpoint import CheckpointError
from adaptformer.config import ConfigError, ModelConfig, load_config
from adaptformer.freeze import learnable_parameters
from adaptformer.models import InceptionTransformer, create_model, list_models, load_pretrained
from adaptformer.models.iformer import HighMixer, LowMixer, Mixer
from adaptformer.weights import Checkpoint, to_model_names

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "golden")
PTH = os.path.join(GOLDEN, "iformer_reduced.pth")
REF = np.load(os.path.join(GOLDEN, "iformer_reference.npz"))
REDUCED = json.loads(str(REF["reduced_json"]))
ATOL = 1e-5
CHANGED = 1e-3  # a plausible porting mistake must move the logits at least this much
FACTORIES = json.loads(str(REF["factories_json"]))


def images(n, size):
    return paddle.to_tensor(seeded_images(n, size, int(REF["image_seed"])))


def reduced_model():
    model = InceptionTransformer(**REDUCED)
    model.eval()
    report = load_pretrained(model, PTH)
    return model, report


def logits(model, x):
    with paddle.no_grad():
        return model(x).numpy()


def test_official_pth_loads_key_for_key_without_torch():
    model, report = reduced_model()
    assert report.format == "torch" and report.layout == "timm"
    assert sorted(report.loaded) == sorted(model.state_dict())  # every tensor, BatchNorm statistics included
    assert not (report.reinitialised or report.resized or report.left_initialised or report.unexpected)
    assert "torch" not in sys.modules  # read by the restricted unpickler


@pytest.mark.parametrize("size", [32, 64, 48])  # native grid, then position embeddings interpolated
def test_reduced_model_matches_the_official_logits(size):
    model, _ = reduced_model()
    np.testing.assert_allclose(logits(model, images(2, size)), REF[f"reduced_logits{size}"], atol=ATOL, rtol=0)


def test_pooled_features_are_the_official_forward_features():
    model, _ = reduced_model()
    with paddle.no_grad():
        pooled = model.forward_head(model.forward_features(images(2, 32)), pre_logits=True).numpy()
    np.testing.assert_allclose(pooled, REF["reduced_features32"], atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def seeded_small(tmp_path_factory):
    """iformer_small at its released size with weights drawn from the fixture's seed, written as a
    .safetensors file with the official names and PyTorch layouts (no 80 MB file is committed)."""
    from safetensors.numpy import save_file

    names_shapes = [(n, tuple(s)) for n, s in json.loads(str(REF["small_names_shapes"]))]
    path = str(tmp_path_factory.mktemp("iformer") / "iformer_small.safetensors")
    save_file(seeded_weights(names_shapes, int(REF["weight_seed"])), path)
    model = create_model("iformer_small", num_classes=1000)
    model.eval()
    report = load_pretrained(model, path)
    assert not (report.reinitialised or report.resized or report.left_initialised or report.unexpected)
    return model


@pytest.mark.parametrize("size, batch", [(224, 2), (288, 1)])
def test_full_size_iformer_small_matches_the_official_logits(seeded_small, size, batch):
    ref = REF[f"small_logits{size}"]
    assert np.abs(ref).max() > 1.0  # not a check against near-zero logits
    np.testing.assert_allclose(logits(seeded_small, images(batch, size)), ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_factory_has_the_official_tensors_and_parameter_count(name):
    """Each official checkpoint name maps onto this model's (converted as load_pretrained converts
    it, one tensor at a time and without allocating the 20-90 M values), shapes included."""
    official = FACTORIES[name]
    converted = {}
    for key, shape in official["names_shapes"]:
        one = Checkpoint(f"{name}.pth", "torch", {key: np.broadcast_to(np.float32(0), shape)})
        (new_key, value), = to_model_names(one)[0].items()
        converted[new_key] = list(value.shape)
    with paddle.LazyGuard():
        model = create_model(name)
    assert converted == {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sum(int(np.prod(p.shape)) for p in learnable_parameters(model).values()) == official["params"]


# ---- each plausible porting mistake is caught by the golden logits -------------------------------

def _replace(model, kind, attribute, make):
    """Swap `attribute` of every `kind` sub-layer where it is not an Identity (pool_size 1)."""
    changed = [layer for layer in model.sublayers() if isinstance(layer, kind)
               and not isinstance(getattr(layer, attribute), nn.Identity)]
    for layer in changed:
        setattr(layer, attribute, make())
    assert changed


class _ZeroPaddedMaxPool(nn.Layer):
    def forward(self, x):
        return F.max_pool2d(F.pad(x, [1, 1, 1, 1], value=0.0), 3, stride=1)


def _low_channels_first(model, mp):
    mp.setattr(Mixer, "split", lambda self, x: (x[:, self.low_dim:], x[:, : self.low_dim]))


def _max_pool_before_attention(model, mp):
    _replace(model, LowMixer, "pool", lambda: nn.MaxPool2D(2, 2))


def _zero_padded_max_pool(model, mp):
    _replace(model, HighMixer, "max_pool", _ZeroPaddedMaxPool)


def _bilinear_upsampling(model, mp):
    _replace(model, LowMixer, "uppool", lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))


def _bicubic_position_embedding(model, mp):
    def bicubic(self, pos, h, w):
        return F.interpolate(pos.transpose([0, 3, 1, 2]), size=[h, w], mode="bicubic").transpose([0, 2, 3, 1])

    mp.setattr(InceptionTransformer, "position_embedding", bicubic)


def _layer_scale_in_stages_1_2(model, mp):
    for block in list(model.blocks1) + list(model.blocks2):
        dim = block.norm1.weight.shape[0]
        for name in ("layer_scale_1", "layer_scale_2"):
            setattr(block, name, block.create_parameter([dim], default_initializer=nn.initializer.Constant(0.5)))


def _no_layer_scale(model, mp):
    for block in list(model.blocks3) + list(model.blocks4):
        for scale in (block.layer_scale_1, block.layer_scale_2):
            scale.set_value(paddle.ones_like(scale))


def _max_pooled_head(model, mp):
    mp.setattr(InceptionTransformer, "forward_head", lambda self, x, pre_logits=False: self.head(x.max(axis=1)))


MISTAKES = {
    "channel split: attention channels first": _low_channels_first,
    "attention pooling: max instead of average": _max_pool_before_attention,
    "high-frequency max pool padded with zeros": _zero_padded_max_pool,
    "upsampling: bilinear instead of nearest": _bilinear_upsampling,
    "position embedding: bicubic instead of bilinear": _bicubic_position_embedding,
    "layer scale in stages 1-2 too": _layer_scale_in_stages_1_2,
    "no layer scale in stages 3-4": _no_layer_scale,
    "head: max instead of mean over tokens": _max_pooled_head,
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_porting_mistake_moves_the_logits(mistake, monkeypatch):
    """At 64 px (position embeddings interpolated, stage grids 16, 8, 4, 2)."""
    model, _ = reduced_model()
    MISTAKES[mistake](model, monkeypatch)
    moved = np.abs(logits(model, images(2, 64)) - REF["reduced_logits64"]).max()
    assert moved > CHANGED, f"{mistake}: logits moved by only {moved:.2e}"


def test_count_include_pad_cannot_matter_for_the_official_pooling():
    """count_include_pad=False (Paddle: exclusive=True) is what the official LowMixer sets, but its
    average pool has no padding and floors, so every window lies inside the map: the other
    setting gives bit-identical logits (docs/iformer.md)."""
    model, _ = reduced_model()
    before = logits(model, images(2, 64))
    _replace(model, LowMixer, "pool", lambda: nn.AvgPool2D(2, 2, padding=0, exclusive=False))
    assert np.array_equal(logits(model, images(2, 64)), before)


# ---- sizes, names, configs, training ---------------------------------------------------------------

def test_all_official_variants_are_registered():
    assert set(FACTORIES) <= set(list_models())
    assert create_model("iformer_small_384").grid_sizes == [96, 48, 24, 12]


@pytest.mark.parametrize("size, stage", [(40, 2), (36, 1), (200, 2)])
def test_sizes_whose_pooled_grid_would_not_come_back_are_refused(size, stage):
    model, _ = reduced_model()
    with pytest.raises(ValueError, match=f"stage {stage}"):
        model(paddle.zeros([1, 3, size, size]))
    with pytest.raises(ConfigError, match="data.img_size"):
        create_backbone(ModelConfig(name="iformer_small", num_classes=3, kwargs=_reduced_kwargs()), size)


def test_non_square_images_run():
    """The official model reshapes attention tokens to a square and fails here; this one keeps the grid."""
    model, _ = reduced_model()
    out = logits(model, paddle.to_tensor(np.random.default_rng(0).standard_normal((1, 3, 32, 64)).astype("float32")))
    assert out.shape == (1, 5) and np.isfinite(out).all()


def _reduced_kwargs():
    return {k: v for k, v in REDUCED.items() if k != "num_classes"}


def test_built_from_a_yaml_config_with_its_checkpoint(tiny_config):
    """model.name / model.kwargs / model.pretrained as for a ViT; a new head for another class count."""
    from adaptformer.engine import build_model

    path = tiny_config(model={"name": "iformer_small", "num_classes": 4, "kwargs": _reduced_kwargs(),
                              "pretrained": PTH}, method={"name": "linear"})
    lines = []
    model = build_model(load_config(path), log=lines.append)
    assert isinstance(model, InceptionTransformer) and model.head.weight.shape == [REDUCED["embed_dims"][-1], 4]
    assert "re-initialised (head)" in "\n".join(lines)
    trainable = [n for n, p in learnable_parameters(model).items() if not p.stop_gradient]
    assert trainable == ["head.weight", "head.bias"]


def test_a_checkpoint_of_another_width_is_refused():
    model = InceptionTransformer(**{**REDUCED, "embed_dims": [16, 16, 24, 40], "num_heads": [4, 4, 3, 5]})
    with pytest.raises(CheckpointError, match="shape"):
        load_pretrained(model, PTH)


def test_a_training_step_reaches_every_parameter():
    paddle.seed(0)
    model = InceptionTransformer(**{**REDUCED, "drop_path_rate": 0.1, "drop_rate": 0.1})
    model.train()
    loss = F.cross_entropy(model(images(4, 32)), paddle.to_tensor([0, 1, 2, 3]))
    loss.backward()
    params = learnable_parameters(model)
    assert not [n for n, p in params.items() if p.grad is None or not np.isfinite(p.grad.numpy()).all()]
