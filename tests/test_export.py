"""Export: Paddle Inference files that compute what the dynamic graph does (LoRA merged), their
JSON, the CLI, ONNX when the optional packages are installed, and the deployment benchmark."""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from adaptformer.config import load_config
from adaptformer.engine import train
from adaptformer.errors import ExportError
from adaptformer.serve.export import (InferenceModel, convert_onnx, export, find_program, onnx_available, onnx_session,
                                save_inference)
from adaptformer.serve.trained import from_run
from conftest import ROOT, run_tool, tiny_run_config

EXPORT = os.path.join(ROOT, "tools", "export.py")
BENCH = os.path.join(ROOT, "bench", "deploy_throughput.py")
METHOD = {"name": "adaptformer+lora", "adaptformer": {"bottleneck": 4, "dropout": 0.0},
          "lora": {"rank": 2, "targets": ["q", "v", "fc1"]}}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """A tiny run with AdaptFormer and LoRA, trained one epoch so LoRA's B factors are not zero."""
    path = tiny_run_config(tmp_path_factory.mktemp("export"), "lora", method=METHOD, train={"epochs": 1})
    train(load_config(path))
    return path


def inputs(batch, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, 32, 32)).astype(np.float32)


def dygraph(model, x):
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def test_export_matches_the_dynamic_graph_with_lora_merged(config, tmp_path):
    trained = from_run(config)
    lora_b = [p for n, p in trained.model.named_parameters() if "lora" in n and n.endswith("_B")]
    assert lora_b and max(float(np.abs(p.numpy()).max()) for p in lora_b) > 0  # the merge has work to do
    x = inputs(3)
    want = dygraph(trained.model, x)
    prefix = str(tmp_path / "deploy" / "model")
    meta = export(trained, prefix)
    assert meta["lora_layers_merged"] == 4  # qkv (q and v) and fc1 in each of the 2 blocks
    program, params = find_program(prefix)
    assert os.path.basename(program) in ("model.json", "model.pdmodel") and params == prefix + ".pdiparams"
    assert sorted(os.listdir(tmp_path / "deploy")) == sorted(["model.meta.json", meta["program"], meta["params"]])
    model = InferenceModel(prefix, threads=1)
    np.testing.assert_allclose(model(x), want, atol=1e-5)
    np.testing.assert_allclose(model(x[:1]), want[:1], atol=1e-5)  # any batch size
    saved = json.loads((tmp_path / "deploy" / "model.meta.json").read_text())
    assert saved["input"] == {"name": "x", "shape": [None, 3, 32, 32], "dtype": "float32"}
    assert saved["class_names"] == ["class_0", "class_1", "class_2", "class_3"]
    cfg = load_config(config)
    assert saved["preprocess"]["mean"] == cfg.data.mean and saved["preprocess"]["size"] == [32, 32]
    assert saved["model"] == {"name": cfg.model.name, "kwargs": cfg.model.kwargs, "num_classes": 4}


def test_fixed_batch_size(config, tmp_path):
    trained = from_run(config)
    x = inputs(2, seed=1)
    want = dygraph(trained.model, x)
    meta = export(trained, str(tmp_path / "m"), batch_size=2)
    assert meta["input"]["shape"] == [2, 3, 32, 32]
    np.testing.assert_allclose(InferenceModel(str(tmp_path / "m"))(x), want, atol=1e-5)



@pytest.mark.parametrize("device", ["tpu", "gpu:x", "cpu:0", ""])
def test_inference_device_must_be_cpu_or_a_gpu(device, tmp_path):
    from adaptformer.errors import ExportError

    with pytest.raises(ExportError, match="device must be cpu, gpu or gpu:N"):
        InferenceModel(str(tmp_path / "never_exported"), device=device)  # refused before the files are looked for

LEGACY_CHILD = """
import sys
import numpy as np, paddle
import adaptformer
from adaptformer.serve.export import save_inference
paddle.seed(0)
# The ViT does not convert in Paddle's pre-PIR mode (its attention needs PIR); any model shows the format.
model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 8, stride=8), paddle.nn.Flatten(), paddle.nn.Linear(64, 3))
x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
np.save(sys.argv[1] + ".x.npy", x)
np.save(sys.argv[1] + ".y.npy", model(paddle.to_tensor(x)).numpy())
save_inference(model, sys.argv[1], [None, 3, 32, 32])
"""


def test_legacy_program_files_load_too(tmp_path):
    prefix = str(tmp_path / "legacy")
    env = dict(os.environ, PYTHONPATH=ROOT, FLAGS_enable_pir_api="0")  # Paddle's pre-PIR format
    subprocess.run([sys.executable, "-c", LEGACY_CHILD, prefix], env=env, check=True, capture_output=True)
    assert find_program(prefix) == (prefix + ".pdmodel", prefix + ".pdiparams")
    x, want = np.load(prefix + ".x.npy"), np.load(prefix + ".y.npy")
    np.testing.assert_allclose(InferenceModel(prefix)(x), want, atol=1e-5)


def test_find_program_errors(tmp_path):
    with pytest.raises(ExportError, match=r"no exported model at .*/m \(looked for .*/m\.json and .*/m\.pdmodel\)"):
        find_program(str(tmp_path / "m"))
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(ExportError, match=r"m\.json: no .*m\.pdiparams beside it"):
        find_program(str(tmp_path / "m"))


def test_cli_export(config, tmp_path):
    prefix = str(tmp_path / "out" / "model")
    r = run_tool([sys.executable, EXPORT, "-c", config, "-o", prefix, "--batch-size-dynamic"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "4 LoRA layers merged" in r.stdout and os.path.isfile(prefix + ".meta.json")
    find_program(prefix)
    for args, message in [
        (["-c", config, "-o", prefix, "--batch-size", "0"], "--batch-size must be >= 1"),
        (["--tuned", "t", "-c", config, "-o", prefix], "--tuned cannot be combined"),
        (["-c", config, "-o", prefix, "--checkpoint", str(tmp_path / "none.pdparams")], "no checkpoint at"),
    ]:
        r = run_tool([sys.executable, EXPORT] + args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_cli_onnx_without_the_extra_is_one_line(config, tmp_path):
    # The extra hidden from the child (a None entry in sys.modules is what find_spec reports as
    # absent), so the test runs whether or not it is installed.
    hide = ("import os, runpy, sys; sys.modules['paddle2onnx'] = None; sys.argv = sys.argv[1:]; "
            "sys.path.insert(0, os.path.dirname(sys.argv[0])); runpy.run_path(sys.argv[0], run_name='__main__')")
    r = run_tool([sys.executable, "-c", hide, EXPORT, "-c", config, "-o", str(tmp_path / "m"), "--onnx"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == \
        'error: --onnx needs the optional packages: pip install -e ".[onnx]" (paddle2onnx and onnxruntime)'
    assert not os.path.exists(tmp_path / "m.json")  # refused before any work


# --------------------------------------------------------------------------- ONNX (optional extra)


class LogGamma(paddle.nn.Layer):
    """paddle2onnx 2.1 has no converter for lgamma."""

    def __init__(self):
        super().__init__()
        self.fc = paddle.nn.Linear(3, 3)

    def forward(self, x):
        return paddle.lgamma(self.fc(x.mean(axis=[2, 3])))


def test_onnx_matches_the_dynamic_graph(config, tmp_path):
    assert onnx_available(), 'the test extra installs paddle2onnx and onnxruntime: pip install -e ".[test]"'
    trained = from_run(config)
    x = inputs(3, seed=2)
    want = dygraph(trained.model, x)
    prefix = str(tmp_path / "model")
    export(trained, prefix)
    session = onnx_session(convert_onnx(prefix, prefix + ".onnx"), threads=1)
    np.testing.assert_allclose(session(x), want, atol=1e-4)
    np.testing.assert_allclose(session(x[:1]), want[:1], atol=1e-4)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_onnx_unsupported_operator_is_named_in_one_line(tmp_path):
    assert onnx_available(), 'the test extra installs paddle2onnx and onnxruntime: pip install -e ".[test]"'
    prefix = str(tmp_path / "lgamma")
    save_inference(LogGamma(), prefix, [None, 3, 4, 4])
    with pytest.raises(ExportError) as e:
        convert_onnx(prefix, prefix + ".onnx")
    assert "cannot convert operator(s) pd_op.lgamma" in str(e.value) and "\n" not in str(e.value)
    assert not os.path.exists(prefix + ".onnx")


# --------------------------------------------------------------------------- benchmark


def test_deploy_benchmark_runs_on_a_tiny_model(tmp_path):
    out = tmp_path / "bench"
    r = run_tool([sys.executable, BENCH, "--model", "vit_tiny_patch4_32", "--kwargs", "depth=1", "embed_dim=32",
                  "num_heads=2", "--num-classes", "5", "--bottleneck", "4", "--batch-sizes", "1,2", "--rounds", "2",
                  "--iters", "1", "--warmup", "0", "--threads", "1", "--json", f"{out}.json", "--md", f"{out}.md"])
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(open(f"{out}.json").read())
    assert [row["batch"] for row in result["rows"]] == [1, 2]
    expected = ["dygraph", "paddle_inference"] + (["onnxruntime"] if onnx_available() else [])
    assert result["backends"] == expected
    for row in result["rows"]:
        assert all(v > 0 for v in row["images_per_s"].values()) and len(row["images_per_s_all_rounds"]["dygraph"]) == 2
        assert row["max_abs_diff_to_dygraph"]["paddle_inference"] < 1e-4
    md = open(f"{out}.md").read()
    assert md.startswith("Command: `python bench/deploy_throughput.py --model vit_tiny_patch4_32")
    assert "| 1 |" in md and "| 2 |" in md
