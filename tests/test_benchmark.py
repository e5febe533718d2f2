"""tools/benchmark.py as a user runs it. Timings are only checked for being there:
speed is measured by the tool, never asserted by a test."""
import json
import os
import sys

import pytest
from conftest import ROOT, run_tool

from adaptformer import freeze
from adaptformer.config import ConfigError, load_config
from adaptformer.engine.benchmark import architecture
from adaptformer.engine.runner import build_model

BENCH = os.path.join(ROOT, "tools", "benchmark.py")


def test_benchmark_compares_methods_side_by_side(tmp_path, tiny_config):
    config = tiny_config(data={"batch_size": 4})
    out, report = tmp_path / "bench.json", tmp_path / "bench.md"
    methods = "full,adaptformer@train.recompute=true,linear@env:FLAGS_use_stride_kernel=1"
    proc = run_tool([sys.executable, BENCH, "-c", config, "--methods", methods,
                     "--steps", "1", "--rounds", "2", "--warmup", "1", "--data",
                     "--json", str(out), "--report", str(report)])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    rows = {r["label"]: r["paddle"] for r in result["rows"]}
    linear = "linear@env:FLAGS_use_stride_kernel=1"
    assert list(rows) == ["full", "adaptformer@train.recompute=true", linear]
    assert rows[linear]["stride_kernel"] is True and rows["full"]["stride_kernel"] is False
    for label, method in (("full", "full"), ("adaptformer@train.recompute=true", "adaptformer"), (linear, "linear")):
        expected = freeze.summary(build_model(load_config(config, method=method), log=lambda *a: None))
        assert rows[label]["trainable_params"] == expected.trainable, label
        assert rows[label]["method"] == method
        # one timed step in each of two rounds, pooled
        assert len(rows[label]["train_step_s"]) == 2 and len(rows[label]["eval_step_s"]) == 2
        assert rows[label]["peak_mb"] >= rows[label]["baseline_mb"] > 0
    assert rows["adaptformer@train.recompute=true"]["recompute"] is True
    assert rows["adaptformer@train.recompute=true"]["flops_per_step"]["recompute"] > 0
    flops = {k: r["flops_per_step"]["train"] for k, r in rows.items()}
    assert flops["full"] > flops["adaptformer@train.recompute=true"] > flops[linear] > 0
    assert result["peak_flops_per_s"] > 0
    text = report.read_text()
    assert "Command: `OMP_NUM_THREADS=" in text and f"--methods {methods}" in text
    assert "| full | " in text and "| 1.00x |" in text
    assert "| method | trainable params |" in proc.stdout
    assert "Data loader (synthetic, 0 workers): " in text


def test_benchmark_rejects_a_bad_method_before_measuring(tmp_path, tiny_config):
    out = tmp_path / "bench.json"
    proc = run_tool([sys.executable, BENCH, "-c", tiny_config(), "--methods", "full,nosuch", "--json", str(out)])
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--method: method.name has unknown method 'nosuch'" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_one_file_can_describe_several_methods(tiny_config):
    path = tiny_config(method={"name": "adaptformer", "adaptformer": {"bottleneck": 4}})
    with pytest.raises(ConfigError, match="is a setting of method 'adaptformer'"):
        load_config(path, ["method.name=full"])
    assert load_config(path, method="full").method.name == "full"
    assert load_config(path, method="adaptformer+vpt").method.adaptformer.bottleneck == 4



@pytest.mark.parametrize("method,expected", [
    ({"name": "full"}, True),
    ({"name": "adaptformer", "adaptformer": {"bottleneck": 4}}, True),
    ({"name": "adaptformer", "adaptformer": {"bottleneck": 4, "blocks": [1]}}, False),
    ({"name": "adaptformer", "adaptformer": {"bottleneck": 4, "position": "sequential"}}, False),
    ({"name": "adapter"}, False),  # Houlsby: GELU, sequential
])
def test_pytorch_reference_only_for_the_wiring_it_builds(tiny_config, method, expected):
    cfg = load_config(tiny_config(method=method))
    model = build_model(cfg, log=lambda *a: None)
    assert architecture(model, cfg)["reference_wiring"] is expected


def test_benchmark_measures_an_iformer(tmp_path, tiny_config):
    """A reduced iFormer: FLOPs count its convolutions and pooled attention; no PyTorch reference (ViT only)."""
    kwargs = dict(img_size=32, depths=[1, 1, 1, 1], embed_dims=[16, 16, 24, 32], num_heads=[4, 4, 3, 4],
                  attention_heads=[1, 2, 1, 3])
    config = tiny_config(model={"name": "iformer_small", "num_classes": 4, "kwargs": kwargs}, data={"batch_size": 2})
    out = tmp_path / "bench.json"
    proc = run_tool([sys.executable, BENCH, "-c", config, "--methods", "full,adaptformer", "--steps", "1",
                     "--warmup", "0", "--json", str(out)])
    assert proc.returncode == 0, proc.stderr
    rows = {r["label"]: r["paddle"] for r in json.loads(out.read_text())["rows"]}
    assert rows["full"]["architecture"] == {"img_size": 32, "model": "InceptionTransformer", "num_classes": 4,
                                            "reference_wiring": False}
    assert rows["full"]["flops_per_step"]["train"] > rows["adaptformer"]["flops_per_step"]["train"] > 0
    assert rows["full"]["trainable_params"] > rows["adaptformer"]["trainable_params"] > 0
