"""tools/gpu_check.py, run as a user runs it: on the CPU (fp32, a tiny ViT) in the test suite, so
the script the GPU check depends on cannot rot."""
import importlib.util
import json
import os
import shutil
import sys

import numpy as np
import pytest

from conftest import ROOT, run_tool

GPU_CHECK = os.path.join(ROOT, "tools", "gpu_check.py")
CHECKS = ("train", "eval", "resume", "tuned", "taskbank", "export")


def _module():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_check_passes_on_the_cpu_and_the_benchmark_table_follows(tmp_path):
    out = tmp_path / "check"
    r = run_tool([sys.executable, GPU_CHECK, "--device", "cpu", "--out", str(out)])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    lines = r.stdout.splitlines()
    for name in CHECKS:
        assert any(line.startswith(f"[ok] fp32     {name}") for line in lines), (name, r.stdout[-3000:])
    resume = next(line for line in lines if " resume " in line)
    assert "interrupted at epoch 2" in resume and "max |difference| 0 " in resume  # bit for bit
    assert "| method | trainable params | train img/s |" in r.stdout
    assert f"all {len(CHECKS) + 1} checks passed" in r.stdout
    bench = json.loads((out / "benchmark.json").read_text())
    assert [row["label"] for row in bench["rows"]] == ["full", "linear", "adaptformer"]
    # The runs it checked are kept with --out: a straight and an interrupted-then-resumed one.
    assert (out / "fp32" / "tuned" / "tuned.json").is_file()
    assert (out / "fp32-resumed" / "last.pdckpt").is_file()
    assert (out / "export" / "fp32.pdiparams").is_file()


def test_a_failing_check_exits_1_naming_it_and_keeps_the_runs(tmp_path):
    r = run_tool([sys.executable, GPU_CHECK, "--device", "cpu", "--no-benchmark",
                  "-o", "optimizer.lr=1e6"])  # the loss diverges: train fails, the checks that need it are skipped
    assert r.returncode == 1
    assert "[FAIL] fp32     train     FloatingPointError: loss became nan" in r.stdout
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("gpu_check: 1 of 1 checks failed") and "fp32 train" in last
    kept = last.rsplit(" ", 1)[-1]
    assert os.path.isfile(os.path.join(kept, "gpu_check.log"))
    shutil.rmtree(kept)


@pytest.mark.parametrize("args, message", [
    (["--device", "cpu", "-o", "optimizer.lrr=1"], "error: -o: unknown key 'optimizer.lrr'"),
    (["--device", "cpu", "--precisions", "o2-bf16"], "--device cpu runs fp32 only"),
    (["--device", "cpu", "--precisions", "fp64"], "--precisions: unknown fp64"),
    (["--device", "gpu"], "error: --device gpu: this Paddle has no GPU to use"),
])
def test_bad_options_are_one_line_before_any_run(args, message):
    import paddle

    if "gpu" in args and paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        pytest.skip("a GPU is present: --device gpu is valid here")
    r = run_tool([sys.executable, GPU_CHECK] + args)
    assert r.returncode == 2 and message in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]


def test_logits_are_compared_against_atol_plus_rtol_times_their_scale():
    gpu_check = _module()
    want = np.array([[10.0, -20.0]])
    assert gpu_check.compare("x", want + 1e-4, want, atol=1e-5, rtol=1e-5) == pytest.approx(1e-4)  # bound 2.1e-4
    with pytest.raises(gpu_check.CheckFailed, match="max \\|difference\\| 0.001 > 0.00021"):
        gpu_check.compare("x", want + 1e-3, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(gpu_check.CheckFailed, match="shape"):
        gpu_check.compare("x", want[:, :1], want, atol=1, rtol=1)
    with pytest.raises(gpu_check.CheckFailed):
        gpu_check.compare("x", want * np.nan, want, atol=1, rtol=1)
