"""Tuned weights (adaptformer/serve/tuned.py): what is saved, round trips onto a fresh backbone,
refusals (another backbone, keys that do not fit, pickled code), and the trainer writing them."""
import hashlib
import json
import os

import numpy as np
import paddle
import pytest

from adaptformer import freeze
from adaptformer.weights.checkpoint import read_state, save_state
from adaptformer.config import from_dict, load_config
from adaptformer.errors import CheckpointError
from adaptformer.models import create_model
from adaptformer.methods import apply_method
from adaptformer.serve.tuned import (FORMAT, META, WEIGHTS, backbone_fingerprint, build_tuned_model, load_tuned,
                               read_tuned_meta, save_tuned, tuned_state_names)
from adaptformer.weights import load_pretrained
from conftest import TINY_MODEL, train_steps
from untrusted_payloads import system_pickle

X = paddle.to_tensor(np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype("float32"))
CLASSES = ["cat", "dog", "eel"]
METHODS = {
    "adaptformer": {"name": "adaptformer", "adaptformer": {"bottleneck": 4, "dropout": 0.0}},
    "adaptformer-fixed-scale": {"name": "adaptformer", "adaptformer": {"bottleneck": 4, "learnable_scale": False}},
    "lora": {"name": "lora", "lora": {"rank": 2, "targets": ["q", "v", "fc2"]}},
    "bitfit": {"name": "bitfit"},
    "vpt": {"name": "vpt", "vpt": {"num_tokens": 3}},
    "adaptformer+vpt": {"name": "adaptformer+vpt", "adaptformer": {"bottleneck": 4}, "vpt": {"num_tokens": 2}},
}


def make_cfg(method, pretrained=None, num_classes=3, **kwargs):
    model = {**TINY_MODEL, "kwargs": {**TINY_MODEL["kwargs"], **kwargs}, "num_classes": num_classes,
             "pretrained": pretrained}
    return from_dict({"model": model, "method": method, "data": {"mean": [0.5] * 3, "std": [0.25] * 3}}, "test")


def backbone(cfg, seed):
    paddle.seed(seed)
    return create_model(cfg.model.name, num_classes=cfg.model.num_classes, **cfg.model.kwargs)


def tuned_run(tmp_path, method="adaptformer", steps=3, **kwargs):
    """A backbone saved to a file (the 'pretrained' one), a method trained on it a few steps, its
    tuned weights saved: (model, cfg, tuned folder)."""
    path = str(tmp_path / "backbone.pdparams")
    cfg = make_cfg(METHODS[method], pretrained=path, **kwargs)
    model = backbone(cfg, seed=0)
    save_state(model.state_dict(), path)
    apply_method(model, cfg.method)
    train_steps(model, steps=steps)
    model.eval()
    return model, cfg, save_tuned(model, str(tmp_path / "tuned"), cfg, CLASSES)


def fresh_backbone(tmp_path, num_classes=3, **kwargs):
    """What a user has: the model built anew (another random init), the pretrained file loaded."""
    model = backbone(make_cfg({"name": "linear"}, num_classes=num_classes, **kwargs), seed=7)
    load_pretrained(model, str(tmp_path / "backbone.pdparams"))
    return model


def logits(model):
    model.eval()
    return model(X).numpy()


@pytest.mark.parametrize("method", ["adaptformer", "adaptformer-fixed-scale", "lora", "bitfit", "vpt"])
def test_round_trip_onto_a_fresh_backbone_gives_the_same_logits(tmp_path, method):
    model, cfg, tuned = tuned_run(tmp_path, method)
    expected = logits(model)
    fresh = fresh_backbone(tmp_path, num_classes=5)  # another head: reset to the meta's 3 classes
    meta = load_tuned(fresh, tuned)
    assert meta["class_names"] == CLASSES and meta["format"] == FORMAT
    np.testing.assert_allclose(logits(fresh), expected, atol=1e-6, rtol=0)
    # The same through the one-call builder, from the backbone file the meta names.
    built, _ = build_tuned_model(tuned, log=lambda *a: None)
    assert not built.training
    np.testing.assert_allclose(logits(built), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["adaptformer", "adaptformer-fixed-scale", "lora", "bitfit", "vpt"])
def test_saved_tensors_are_the_trainable_ones_plus_method_buffers(tmp_path, method):
    model, cfg, tuned = tuned_run(tmp_path, method, steps=1)
    state = model.state_dict()
    trainable = set(freeze.trainable_named_parameters(model))
    buffers = {n for n in state if n.endswith("adapter.scale") and n not in trainable}  # fixed scales
    assert bool(buffers) == (method == "adaptformer-fixed-scale")
    saved = read_state(os.path.join(tuned, WEIGHTS))
    assert set(saved) == trainable | buffers == set(read_tuned_meta(tuned)["tensors"])
    frozen = set(state) - set(saved)
    assert "blocks.0.attn.qkv.weight" in frozen and "pos_embed" in frozen
    assert all("lora" not in n for n in frozen)  # LoRA as its factors, W itself frozen and absent
    if method == "lora":
        assert {"blocks.0.attn.qkv.lora_q_A", "blocks.0.attn.qkv.lora_q_B"} <= set(saved)
    for n, value in saved.items():
        np.testing.assert_array_equal(value, state[n].numpy(), err_msg=n)


def test_a_batchnorm_head_saves_its_running_statistics(tmp_path):
    model, cfg, tuned = tuned_run(tmp_path, "adaptformer", head_norm=True)
    saved = read_state(os.path.join(tuned, WEIGHTS))
    assert {"head.0._mean", "head.0._variance", "head.1.weight"} <= set(saved)
    assert not np.allclose(saved["head.0._mean"], 0)  # updated by the training steps
    fresh = fresh_backbone(tmp_path, head_norm=True)
    load_tuned(fresh, tuned)
    np.testing.assert_allclose(logits(fresh), logits(model), atol=1e-6, rtol=0)


def test_loads_onto_a_model_with_the_method_already_applied(tmp_path):
    model, cfg, tuned = tuned_run(tmp_path, "adaptformer+vpt")
    fresh = fresh_backbone(tmp_path)
    apply_method(fresh, cfg.method)
    load_tuned(fresh, tuned)
    np.testing.assert_allclose(logits(fresh), logits(model), atol=1e-6, rtol=0)


def test_meta_records_the_run(tmp_path):
    model, cfg, tuned = tuned_run(tmp_path, "lora")
    with open(os.path.join(tuned, META)) as f:
        meta = json.load(f)
    assert meta["model"]["name"] == "vit_tiny_patch4_32" and meta["model"]["num_classes"] == 3
    assert meta["model"]["kwargs"] == TINY_MODEL["kwargs"]
    assert meta["model"]["pretrained"] == str(tmp_path / "backbone.pdparams")
    assert meta["method"] == {"name": "lora", "trainable": [], "lora": {"rank": 2, "alpha": 8.0,
                              "targets": ["q", "v", "fc2"], "dropout": 0.0, "blocks": None}}
    assert from_dict({"method": meta["method"]}, "meta").method == cfg.method  # round trip into MethodConfig
    assert meta["eval_transform"] == {"dataset": "cifar10", "img_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
                                      "eval_resize_crop": None}
    assert meta["tensors"]["head.weight"] == {"shape": [32, 3], "dtype": "float32"}


def test_fingerprint_is_one_sha256_pass_over_the_frozen_tensors_in_name_order(tmp_path):
    model, cfg, tuned = tuned_run(tmp_path, "bitfit", steps=1)
    state = model.state_dict()
    tuned_names = set(tuned_state_names(model))
    digest = hashlib.sha256()
    for name in sorted(set(state) - tuned_names):
        array = state[name].numpy()
        digest.update(json.dumps([name, str(array.dtype), list(array.shape)]).encode() + b"\n" + array.tobytes())
    assert read_tuned_meta(tuned)["backbone_fingerprint"] == "sha256:" + digest.hexdigest()
    assert backbone_fingerprint(model, tuned_names) == "sha256:" + digest.hexdigest()


def test_another_backbone_is_refused_unless_forced(tmp_path):
    model, cfg, tuned = tuned_run(tmp_path, "adaptformer")
    other = fresh_backbone(tmp_path)
    with paddle.no_grad():
        other.blocks[1].mlp.fc1.weight.set_value(other.blocks[1].mlp.fc1.weight * 1.001)
    expected = read_tuned_meta(tuned)["backbone_fingerprint"]
    with pytest.raises(CheckpointError) as e:
        load_tuned(other, tuned)
    message = str(e.value)
    found = backbone_fingerprint(other, tuned_state_names(other))
    assert "\n" not in message and expected in message and found in message and found != expected
    assert "force=True" in message and "--force" in message
    lines = []
    load_tuned(other, tuned, force=True, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("warning:") and found in lines[0]
    saved = read_state(os.path.join(tuned, WEIGHTS))
    np.testing.assert_array_equal(other.head.weight.numpy(), saved["head.weight"])


def rewrite_weights(tuned, change):
    path = os.path.join(tuned, WEIGHTS)
    state = read_state(path)
    change(state)
    save_state(state, path)


@pytest.mark.parametrize("change, key", [
    (lambda s: s.pop("blocks.1.adapter.up_proj.weight"), "blocks.1.adapter.up_proj.weight"),
    (lambda s: s.update({"blocks.0.attn.qkv.weight": np.zeros((32, 96), "float32")}), "blocks.0.attn.qkv.weight"),
    (lambda s: s.update({"head.weight": np.zeros((32, 4), "float32")}), "head.weight"),
], ids=["missing", "extra", "wrong-shape"])
def test_weights_that_do_not_fit_are_refused_naming_the_key(tmp_path, change, key):
    model, cfg, tuned = tuned_run(tmp_path, "adaptformer", steps=1)
    rewrite_weights(tuned, change)
    with pytest.raises(CheckpointError) as e:
        load_tuned(fresh_backbone(tmp_path), tuned)
    assert key in str(e.value) and WEIGHTS in str(e.value) and "\n" not in str(e.value)


def test_a_tensor_list_that_disagrees_with_the_file_is_refused(tmp_path):
    model, cfg, tuned = tuned_run(tmp_path, "adaptformer", steps=1)
    path = os.path.join(tuned, META)
    meta = json.load(open(path))
    meta["tensors"]["head.bias"]["shape"] = [4]
    json.dump(meta, open(path, "w"))
    with pytest.raises(CheckpointError, match=r"tuned\.json: tensors\['head\.bias'\] is \[4\] float32"):
        load_tuned(fresh_backbone(tmp_path), tuned)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format="something/2"), r"tuned\.json: 'format' is 'something/2'"),
    (lambda m: m.pop("backbone_fingerprint"), r"tuned\.json: missing 'backbone_fingerprint'"),
    (lambda m: m["method"]["adaptformer"].update(bottleneck=0), r"tuned\.json: method\.adaptformer\.bottleneck must be >= 1"),
    (lambda m: m["method"].update(lora={"rank": 2}), r"tuned\.json: method\.lora\.rank is a setting of method 'lora'"),
    (lambda m: m["model"].update(name="vit_huge"), r"tuned\.json: model\.name is not a known model"),
    (lambda m: m.update(class_names=["a"]), r"tuned\.json: 'class_names' must be a list of 3 strings"),
    (lambda m: m["tensors"].update({"x": {"shape": [-1], "dtype": "float32"}}), r"tuned\.json: tensors\['x'\] must be"),
    (lambda m: m.update(backbone_fingerprint="md5:00"), r"tuned\.json: 'backbone_fingerprint' must be"),
    (lambda m: m["eval_transform"].pop("mean"), r"tuned\.json: 'eval_transform' must hold exactly"),
], ids=["format", "missing", "method-value", "other-method", "model-name", "class-names", "tensors", "fingerprint",
        "eval-transform"])
def test_meta_errors_name_the_file_and_key(tmp_path, edit, message):
    model, cfg, tuned = tuned_run(tmp_path, "adaptformer", steps=1)
    path = os.path.join(tuned, META)
    meta = json.load(open(path))
    edit(meta)
    json.dump(meta, open(path, "w"))
    with pytest.raises(CheckpointError, match=message) as e:
        read_tuned_meta(tuned)
    assert "\n" not in str(e.value)


def test_a_folder_that_is_not_tuned_weights_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found, expected a tuned-weights folder"):
        read_tuned_meta(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty/tuned\.json: not found"):
        read_tuned_meta(str(tmp_path / "empty"))
    (tmp_path / "empty" / META).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"tuned\.json: not valid JSON"):
        read_tuned_meta(str(tmp_path / "empty"))


def test_pickled_code_in_the_weights_is_refused_and_never_runs(tmp_path):
    model, cfg, tuned = tuned_run(tmp_path, "adaptformer", steps=1)
    marker = tmp_path / "ran"
    (tmp_path / "tuned" / WEIGHTS).write_bytes(system_pickle(marker))
    fresh = fresh_backbone(tmp_path)
    with pytest.raises(CheckpointError, match="tuned.pdparams: refuses"):
        load_tuned(fresh, tuned)
    with pytest.raises(CheckpointError, match="tuned.pdparams: refuses"):
        build_tuned_model(tuned, log=lambda *a: None)
    assert not marker.exists()
    assert all(b.adapter is None for b in fresh.blocks)  # refused before the model was touched


def test_save_refuses_full_fine_tuning_and_merged_lora(tmp_path):
    model, cfg, _ = tuned_run(tmp_path, "lora", steps=1)
    from adaptformer.models.lora import merge_lora, unmerge_lora

    merge_lora(model)
    with pytest.raises(CheckpointError, match="unmerge_lora"):
        save_tuned(model, str(tmp_path / "merged"), cfg, CLASSES)
    unmerge_lora(model)
    save_tuned(model, str(tmp_path / "unmerged"), cfg, CLASSES)
    full = make_cfg({"name": "full"})
    with pytest.raises(CheckpointError, match="method 'full' trains every tensor"):
        save_tuned(backbone(full, 0), str(tmp_path / "full"), full, CLASSES)


def test_build_tuned_model_needs_the_backbone_file(tmp_path):
    model, cfg, tuned = tuned_run(tmp_path, "adaptformer", steps=1)
    os.rename(tmp_path / "backbone.pdparams", tmp_path / "moved.pdparams")
    with pytest.raises(Exception, match=r"tuned\.json: model\.pretrained: .*backbone\.pdparams does not exist"):
        build_tuned_model(tuned, log=lambda *a: None)
    built, _ = build_tuned_model(tuned, backbone_weights=str(tmp_path / "moved.pdparams"), log=lambda *a: None)
    np.testing.assert_allclose(logits(built), logits(model), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["adaptformer", "full"])
def test_training_writes_tuned_weights_unless_every_tensor_trains(tiny_config, method):
    from adaptformer.engine import train

    section = {"name": "full"} if method == "full" else {"name": "adaptformer", "adaptformer": {"bottleneck": 4}}
    cfg = load_config(tiny_config(method=section, train={"epochs": 1}))
    summary = train(cfg)
    tuned = os.path.join(cfg.train.output_dir, "tuned")
    if method == "full":
        assert not os.path.exists(tuned) and summary["tuned_weights"] is None
        return
    assert summary["tuned_weights"] == tuned
    assert sorted(os.listdir(tuned)) == [META, WEIGHTS]
    # The chosen epoch's weights: the run's best.pdparams, restricted to the tuned tensors.
    best = read_state(os.path.join(cfg.train.output_dir, "best.pdparams"))
    saved = read_state(os.path.join(tuned, WEIGHTS))
    assert set(saved) < set(best)
    for n, value in saved.items():
        np.testing.assert_array_equal(value, best[n], err_msg=n)
    assert read_tuned_meta(tuned)["class_names"] == ["class_0", "class_1", "class_2", "class_3"]


def test_overwrite_by_a_full_run_removes_the_earlier_tuned_weights(tiny_config):
    from adaptformer.engine import train

    cfg = load_config(tiny_config(train={"epochs": 1}))
    train(cfg)
    tuned = os.path.join(cfg.train.output_dir, "tuned")
    assert os.path.isdir(tuned)
    with pytest.raises(Exception, match="already holds a run"):
        train(load_config(tiny_config(method={"name": "full"}, train={"epochs": 1})))
    train(load_config(tiny_config(method={"name": "full"}, train={"epochs": 1})), overwrite=True)
    assert not os.path.exists(tuned)  # it described the earlier run's weights
