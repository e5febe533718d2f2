"""Parity with the reference implementations: each released checkpoint format, converted and
loaded here, computes what timm (or the AdaptFormer formula) computes on the same input.

The fixtures are written by tests/fixtures/make_golden_vit.py with torch + timm (see the README
beside them); the tests need neither. Tolerance: 1e-5 absolute on logits and features (float32;
the largest differences seen are about 1e-6).
"""
import os

import numpy as np
import paddle
import pytest

from adaptformer.models import create_model, load_pretrained
from adaptformer.weights import read_checkpoint, resize_pos_embed

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "golden")
REF = np.load(os.path.join(GOLDEN, "reference.npz"))
ATOL = 1e-5
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def golden_vit(**kw):
    dims = dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=5,
                qkv_bias=True, epsilon=1e-6)
    model = create_model("vit_tiny_patch4_32", **{**dims, **kw})
    model.eval()
    return model


def logits(model, key="x"):
    with paddle.no_grad():
        return model(paddle.to_tensor(REF[key])).numpy()


@pytest.mark.parametrize(
    "name, layout, reference",
    [
        ("timm.safetensors", "timm", "logits"),
        ("deit_wrapped.pth", "timm", "logits"),
        ("google_vit.npz", "google", "logits"),
        ("big_vision_vit.npz", "google", "big_vision_logits"),
        ("paddleclas.pdparams", "paddle", "logits"),
    ],
)
def test_each_format_matches_timm(name, layout, reference):
    model = golden_vit()
    report = load_pretrained(model, os.path.join(GOLDEN, name))
    assert report.layout == layout and not report.reinitialised and not report.left_initialised
    np.testing.assert_allclose(logits(model), REF[reference], atol=ATOL, rtol=0)


def test_features_match_timm_forward_features():
    model = golden_vit()
    load_pretrained(model, os.path.join(GOLDEN, "timm.safetensors"))
    with paddle.no_grad():
        feats = model.forward_features(paddle.to_tensor(REF["x"])).numpy()
    np.testing.assert_allclose(feats, REF["features"], atol=ATOL, rtol=0)


def test_wrapped_checkpoint_reports_its_container_and_google_its_normalisation():
    deit = read_checkpoint(os.path.join(GOLDEN, "deit_wrapped.pth"))
    assert deit.container == "model" and not any(k.startswith("module.") for k in deit.tensors)
    assert read_checkpoint(os.path.join(GOLDEN, "google_vit.npz")).normalization == INCEPTION
    report = load_pretrained(golden_vit(), os.path.join(GOLDEN, "google_vit.npz"))
    assert sorted(report.unexpected) == ["pre_logits.bias", "pre_logits.kernel"]  # IN-21k extra, as timm drops it


def test_mae_finetuned_layout_uses_mean_pooling_and_fc_norm():
    model = golden_vit(global_pool="avg")
    load_pretrained(model, os.path.join(GOLDEN, "mae_finetuned.pth"))
    np.testing.assert_allclose(logits(model), REF["logits_avg"], atol=ATOL, rtol=0)


def test_mae_pretrain_encoder_has_no_head_so_a_fresh_one_is_made():
    model = golden_vit(num_classes=7)
    report = load_pretrained(model, os.path.join(GOLDEN, "mae_pretrain_encoder.pth"))
    assert report.reinitialised == ["head.weight", "head.bias"]
    with paddle.no_grad():
        feats = model.forward_features(paddle.to_tensor(REF["x"])).numpy()
    np.testing.assert_allclose(feats, REF["features"], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "name, learnable, reference",
    [
        ("adaptformer_official.pth", False, "adaptformer_logits"),
        ("adaptformer_learnable_scale.pth", True, "adaptformer_learnable_logits"),
    ],
)
def test_official_adaptformer_checkpoint_matches_the_formula(name, learnable, reference):
    """q/k/v projections merged, blocks.N.fc1/fc2 and adaptmlp renamed, non-zero adapters, BN head."""
    model = golden_vit(head_norm=True)
    model.add_adapters(bottleneck=4, scale=0.1, learnable_scale=learnable, dropout=0.0)
    model.eval()
    report = load_pretrained(model, os.path.join(GOLDEN, name))
    assert report.layout == "adaptformer_official" and not report.reinitialised and not report.unexpected
    np.testing.assert_allclose(logits(model), REF[reference], atol=ATOL, rtol=0)
    # Without the adapters the same file is refused rather than half-loaded.
    with pytest.raises(ValueError, match="adapter"):
        load_pretrained(golden_vit(head_norm=True), os.path.join(GOLDEN, name))


@pytest.mark.parametrize("grid", [6, 2])
@pytest.mark.parametrize("mode, antialias, suffix", [("bicubic", True, "bicubic_aa"), ("bicubic", False, "bicubic"),
                                                     ("bilinear", False, "bilinear")])
def test_position_embedding_resampling_matches_timm(grid, mode, antialias, suffix):
    z = np.load(os.path.join(GOLDEN, "pos_embed_resample.npz"))
    out = resize_pos_embed(z["pos_embed"], (grid, grid), mode=mode, antialias=antialias)
    np.testing.assert_allclose(out, z[f"to{grid}_{suffix}"], atol=ATOL, rtol=0)


def test_loading_at_another_image_size_matches_timm():
    model = golden_vit(img_size=48)
    report = load_pretrained(model, os.path.join(GOLDEN, "timm.safetensors"))
    assert report.resized == ["pos_embed [1, 17, 24] -> [1, 37, 24]"]
    np.testing.assert_allclose(logits(model, "x48"), REF["logits_img48"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("mistake", ["swap q and k", "proj left [out, in]", "patch kernel H/W swapped"])
def test_the_tolerance_catches_conversion_mistakes(mistake):
    """The fixtures are sensitive enough: each plausible conversion bug moves the logits far past ATOL."""
    model = golden_vit()
    load_pretrained(model, os.path.join(GOLDEN, "timm.safetensors"))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    if mistake == "swap q and k":
        q, k, v = np.split(state["blocks.0.attn.qkv.weight"], 3, axis=1)
        state["blocks.0.attn.qkv.weight"] = np.concatenate([k, q, v], axis=1)
    elif mistake == "proj left [out, in]":
        state["blocks.1.attn.proj.weight"] = state["blocks.1.attn.proj.weight"].T.copy()
    else:
        state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"].transpose(0, 1, 3, 2).copy()
    model.set_state_dict(state)
    assert np.abs(logits(model) - REF["logits"]).max() > 100 * ATOL


VIT_B16 = os.environ.get("ADAPTFORMER_VIT_B16_FIXTURES")


@pytest.mark.slow
@pytest.mark.skipif(not VIT_B16, reason="set ADAPTFORMER_VIT_B16_FIXTURES to the folder make_golden_vit.py --vit-b16 wrote")
@pytest.mark.parametrize(
    "name, kw, reference",
    [
        ("timm.safetensors", {}, "logits"),
        ("deit_wrapped.pth", {}, "logits"),
        ("google_vit.npz", {}, "logits"),
        ("big_vision_vit.npz", {}, "big_vision_logits"),
        ("paddleclas.pdparams", {}, "logits"),
        ("mae_finetuned.pth", {"global_pool": "avg"}, "logits_avg"),
        ("adaptformer_official.pth", {"num_classes": 100, "head_norm": True}, "adaptformer_logits"),
        ("adaptformer_learnable_scale.pth", {"num_classes": 100, "head_norm": True}, "adaptformer_learnable_logits"),
    ],
)
def test_full_size_vit_b16_checkpoints(name, kw, reference):
    """Released-size files (real key names and shapes; random weights) -> vit_base_patch16_224, no torch."""
    ref = np.load(os.path.join(VIT_B16, "reference.npz"))
    model = create_model("vit_base_patch16_224", **{"num_classes": 1000, **kw})
    if "adaptformer" in name:
        model.add_adapters(bottleneck=64, learnable_scale="learnable" in name, dropout=0.0)
    model.eval()
    report = load_pretrained(model, os.path.join(VIT_B16, name))
    assert not report.reinitialised and not report.left_initialised
    with paddle.no_grad():
        out = model(paddle.to_tensor(ref["x"])).numpy()
    np.testing.assert_allclose(out, ref[reference], atol=ATOL, rtol=0)


def test_full_size_vit_b16_matches_timm_in_every_run(tmp_path):
    """ViT-B/16 at its released size (86M parameters, timm's names and layouts) with weights drawn
    from a seed (tests/seeded_vit.py), loaded from a .safetensors file: logits equal timm's.
    Reference: tests/fixtures/make_golden_vit_b16_seeded.py. Over 12 blocks float32 summation order
    differs between the libraries, so the tolerance is 1e-4 on logits of size about 1-4; q and k
    swapped in one block moves them by orders of magnitude more."""
    import json

    from safetensors.numpy import save_file
    from seeded_vit import seeded_images, seeded_weights

    ref = np.load(os.path.join(GOLDEN, "vit_b16_seeded.npz"))
    names_shapes = [(n, tuple(s)) for n, s in json.loads(str(ref["names_shapes"]))]
    path = str(tmp_path / "vit_b16.safetensors")
    save_file(seeded_weights(names_shapes, int(ref["weight_seed"])), path)
    model = create_model("vit_base_patch16_224", num_classes=1000)
    model.eval()
    report = load_pretrained(model, path)
    assert not report.reinitialised and not report.left_initialised
    with paddle.no_grad():
        out = model(paddle.to_tensor(seeded_images(2, 224, int(ref["image_seed"])))).numpy()
    assert np.abs(ref["logits"]).max() > 1.0  # the check below is not against near-zero logits
    np.testing.assert_allclose(out, ref["logits"], atol=1e-4, rtol=0)
