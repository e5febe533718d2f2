"""adaptformer.weights: loading rules, position-embedding resizing, the BN head, convert_weights."""
import os
import sys

import numpy as np
import paddle
import pytest

from adaptformer.weights.checkpoint import CheckpointError, save_state
from adaptformer.models import create_model, load_pretrained
from adaptformer.weights import resize_pos_embed
from conftest import ROOT, run_tool

CONVERT = os.path.join(ROOT, "tools", "convert_weights.py")


def tiny(num_classes=3, **kw):
    return create_model("vit_tiny_patch4_32", depth=2, embed_dim=32, num_heads=2, num_classes=num_classes, **kw)


def saved(tmp_path, state, name="w.pdparams"):
    path = str(tmp_path / name)
    save_state(state, path)
    return path


def test_backbone_loads_and_a_head_of_another_size_is_reinitialised(tmp_path):
    src = tiny(num_classes=100)
    path = saved(tmp_path, src.state_dict())
    dst = tiny(num_classes=10)
    fresh_head = dst.head.weight.numpy().copy()
    report = load_pretrained(dst, path)
    assert report.reinitialised == ["head.weight", "head.bias"] and report.layout == "paddle"
    assert len(report.loaded) == len(dst.state_dict()) - 2
    np.testing.assert_array_equal(dst.blocks[1].mlp.fc2.weight.numpy(), src.blocks[1].mlp.fc2.weight.numpy())
    np.testing.assert_array_equal(dst.head.weight.numpy(), fresh_head)
    assert "head.weight" in str(report)


def test_missing_backbone_tensor_is_an_error_unless_allowed(tmp_path):
    state = tiny().state_dict()
    del state["blocks.1.attn.qkv.weight"]
    path = saved(tmp_path, state)
    with pytest.raises(CheckpointError, match=r"lacks 1 tensors .*blocks\.1\.attn\.qkv\.weight.*randomly initialised"):
        load_pretrained(tiny(), path)
    report = load_pretrained(tiny(), path, allow_missing=[r"blocks\.1\.attn"])
    assert report.left_initialised == ["blocks.1.attn.qkv.weight"]


def test_shape_mismatch_and_tensors_without_a_place_are_errors(tmp_path):
    wide = create_model("vit_tiny_patch4_32", depth=2, embed_dim=64, num_heads=2, num_classes=3)
    with pytest.raises(CheckpointError, match=r"'cls_token' has shape \[1, 1, 64\], VisionTransformer expects \[1, 1, 32\]"):
        load_pretrained(tiny(), saved(tmp_path, wide.state_dict()))
    extra = {**tiny().state_dict(), "blocks.0.extra.weight": paddle.zeros([2])}
    path = saved(tmp_path, extra, "extra.pdparams")
    with pytest.raises(CheckpointError, match=r"no place for \(blocks\.0\.extra\.weight\)"):
        load_pretrained(tiny(), path)
    assert load_pretrained(tiny(), path, ignore_unexpected=["extra"]).unexpected == ["blocks.0.extra.weight"]
    # Pretraining-only parts are ignored (and reported) without being asked.
    mae = {**tiny().state_dict(), "mask_token": paddle.zeros([1, 1, 32]), "decoder_embed.weight": paddle.zeros([32, 8])}
    report = load_pretrained(tiny(), saved(tmp_path, mae, "mae.pdparams"))
    assert sorted(report.unexpected) == ["decoder_embed.weight", "mask_token"]


def test_adapters_in_a_checkpoint_need_adapters_in_the_model(tmp_path):
    src = tiny()
    src.add_adapters(bottleneck=4)
    src.blocks[0].adapter.up_proj.weight.set_value(paddle.full([4, 32], 0.5))
    path = saved(tmp_path, src.state_dict())
    with pytest.raises(CheckpointError, match=r"no place for .*blocks\.0\.adapter"):
        load_pretrained(tiny(), path)
    dst = tiny()
    dst.add_adapters(bottleneck=4)
    load_pretrained(dst, path)
    np.testing.assert_array_equal(dst.blocks[0].adapter.up_proj.weight.numpy(), np.full([4, 32], 0.5, "float32"))


def test_a_fixed_adapter_scale_is_a_setting_not_a_missing_weight(tmp_path):
    path = saved(tmp_path, tiny().state_dict())
    dst = tiny()
    dst.add_adapters(bottleneck=4, learnable_scale=False, scale=0.3)
    with pytest.raises(CheckpointError, match="adapter.down_proj"):
        load_pretrained(dst, path)  # the adapter's weights themselves must be there
    dst = tiny()
    dst.add_adapters(bottleneck=4, learnable_scale=False, scale=0.3)
    load_pretrained(dst, path, allow_missing=["down_proj", "up_proj"])
    assert dst.blocks[1].adapter.scale.item() == pytest.approx(0.3)


def test_position_embedding_is_resized_to_the_model_grid(tmp_path):
    src = tiny()  # 32 px, 4 px patches: 8x8 grid
    path = saved(tmp_path, src.state_dict())
    dst = tiny(img_size=48)  # 12x12 grid
    report = load_pretrained(dst, path)
    assert report.resized == ["pos_embed [1, 65, 32] -> [1, 145, 32]"]
    pos = dst.pos_embed.numpy()
    np.testing.assert_array_equal(pos[:, :1], src.pos_embed.numpy()[:, :1])  # class token kept as is
    x = paddle.randn([2, 3, 48, 48])
    assert dst(x).shape == [2, 3]


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_resize_keeps_constants_and_the_same_grid(mode, antialias):
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(1, 1 + 16, 5)).astype("float32")
    same = resize_pos_embed(pos, (4, 4), mode=mode, antialias=antialias)
    np.testing.assert_allclose(same, pos, atol=1e-6)
    flat = np.concatenate([pos[:, :1], np.full((1, 16, 5), 0.7, "float32")], axis=1)
    for grid in ((7, 7), (2, 2), (3, 5)):
        out = resize_pos_embed(flat, grid, mode=mode, antialias=antialias)
        assert out.shape == (1, 1 + grid[0] * grid[1], 5)
        np.testing.assert_allclose(out[0, 1:], 0.7, atol=1e-5)  # interpolation weights sum to one


def test_batchnorm_head_is_affine_free_trains_its_statistics_and_only_its_linear():
    from adaptformer import freeze

    m = tiny(num_classes=5, head_norm=True, head_init_std=0.01)
    m.add_adapters(bottleneck=4)
    trainable = freeze.only_train(m, ["adapter", "head"])
    assert [n for n in trainable if n.startswith("head.")] == ["head.1.weight", "head.1.bias"]
    assert {"head.0._mean", "head.0._variance"} <= set(m.state_dict())
    assert freeze.summary(m).trainable == sum(int(p.numel()) for p in freeze.trainable_parameters(m)) == (
        2 * (32 * 4 + 4 + 4 * 32 + 32 + 1) + 32 * 5 + 5
    )
    assert float(m.head[1].weight.numpy().std()) < 0.012
    freeze.set_train_mode(m)
    assert m.head[0].training and not m.blocks[0].mlp.training  # batch statistics while training
    m(paddle.randn([8, 3, 32, 32]) * 3 + 1)
    assert not np.allclose(m.head[0]._mean.numpy(), 0.0)
    m.eval()
    bn = m.head[0]
    feats = paddle.randn([4, 32])
    expected = (feats.numpy() - bn._mean.numpy()) / np.sqrt(bn._variance.numpy() + 1e-6)
    np.testing.assert_allclose(bn(feats).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_unreadable_files_give_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_pretrained(tiny(), str(tmp_path / "nope.pdparams"))
    with pytest.raises(CheckpointError, match="is a directory"):
        load_pretrained(tiny(), str(tmp_path))
    good = saved(tmp_path, tiny().state_dict(), "good.pdparams")
    truncated = str(tmp_path / "truncated.pdparams")
    with open(good, "rb") as f, open(truncated, "wb") as g:
        g.write(f.read()[:200])
    with pytest.raises(CheckpointError, match="truncated.pdparams"):
        load_pretrained(tiny(), truncated)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a checkpoint this package reads"):
        load_pretrained(tiny(), str(text))


def test_convert_weights_cli(tmp_path):
    src = tiny(num_classes=7)
    path = saved(tmp_path, src.state_dict())
    dst = str(tmp_path / "converted.pdparams")
    r = run_tool([sys.executable, CONVERT, path, dst, "--model", "vit_tiny_patch4_32"])
    assert r.returncode == 2 and "has shape" in r.stderr  # the factory's dims differ from the tiny checkpoint
    assert not os.path.exists(dst)
    small = create_model("vit_tiny_patch4_32", num_classes=7)
    path = saved(tmp_path, small.state_dict(), "small.pdparams")
    r = run_tool([sys.executable, CONVERT, path, dst, "--model", "vit_tiny_patch4_32", "--img-size", "48"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resized: pos_embed [1, 65, 192] -> [1, 145, 192]" in r.stdout
    back = paddle.load(dst)
    assert "head.weight" not in back and tuple(back["pos_embed"].shape) == (1, 145, 192)
    np.testing.assert_array_equal(np.asarray(back["blocks.3.mlp.fc1.weight"]), small.blocks[3].mlp.fc1.weight.numpy())
    r = run_tool([sys.executable, CONVERT, path, str(tmp_path / "out.bin")])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'out.bin'}: the output must be a .pdparams file"
    assert not os.path.exists(tmp_path / "out.bin")


def test_training_starts_from_a_foreign_checkpoint_and_checks_its_normalisation(tiny_config, tmp_path):
    golden = os.path.join(ROOT, "tests", "fixtures", "golden", "google_vit.npz")
    model = {
        "name": "vit_tiny_patch4_32",
        "num_classes": 4,
        "pretrained": golden,
        "kwargs": dict(patch_size=8, embed_dim=24, depth=2, num_heads=2, mlp_ratio=2.0, qkv_bias=True, epsilon=1e-6),
    }
    cfg = tiny_config("npz", model=model, train={"epochs": 1})
    r = run_tool([sys.executable, os.path.join(ROOT, "tools", "train.py"), "-c", cfg])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(npz, google layout)" in r.stdout and "re-initialised (head): head.weight, head.bias" in r.stdout
    assert "warning:" in r.stdout and "mean [0.5, 0.5, 0.5]" in r.stdout  # the config keeps CIFAR statistics
    ok = run_tool([sys.executable, os.path.join(ROOT, "tools", "train.py"), "-c", cfg, "--overwrite",
                   "-o", "data.mean=[0.5,0.5,0.5]", "-o", "data.std=[0.5,0.5,0.5]"])
    assert ok.returncode == 0 and "warning:" not in ok.stdout


def test_paper_config_trains_only_adapters_and_the_bn_head():
    from adaptformer import freeze
    from adaptformer.config import load_config
    from adaptformer.engine import build_model

    cfg = load_config(os.path.join(ROOT, "configs", "paper", "cifar100_adaptformer.yaml"))
    model = build_model(cfg, load_backbone=False, log=lambda *_: None)
    s = freeze.summary(model)
    # 12 AdaptFormer-64 modules with a fixed scale (as the official code builds them) + Linear(768 -> 100).
    assert s.trainable == 1_189_632 + 76_900
    assert s.total == 85_798_656 + 1_189_632 + 76_900


def test_a_malicious_checkpoint_stops_the_tools_with_one_line_and_runs_nothing(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    bad = tmp_path / "evil.pdparams"
    bad.write_bytes(pickle.dumps({"pos_embed": Payload()}, protocol=4))
    r = run_tool([sys.executable, CONVERT, str(bad), str(tmp_path / "out.pdparams")])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: refuses to load global 'posix.system'")
    assert not marker.exists() and not (tmp_path / "out.pdparams").exists()
