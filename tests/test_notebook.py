"""docs/notebook.ipynb runs from top to bottom (the runner's time limit only stops a hang), on a tiny generated CIFAR-10 archive,
through tools/run_notebook.py (the command that renders it), and the checks it prints hold."""
import importlib.util
import json
import math
import os
import re
import sys
import time

import nbformat
import pytest

from cifar_archive import write_cifar_archive
from conftest import ROOT, run_tool

RUNNER = os.path.join(ROOT, "tools", "run_notebook.py")
NOTEBOOK = os.path.join(ROOT, "docs", "notebook.ipynb")
BUDGET = 600  # seconds: a limit that stops a hang, not a speed target (timings belong in bench/)


def stdout_of(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")


def numbers(pattern, text):
    found = [float(m) for m in re.findall(pattern, text)]
    assert found, f"no line matching {pattern!r} in the notebook's output:\n{text}"
    return found


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """(the notebook executed on a tiny archive, seconds the command took)."""
    root = tmp_path_factory.mktemp("notebook")
    archive = write_cifar_archive(str(root / "cifar-10-python.tar.gz"), train_per_class=4, test_per_class=2)
    out = root / "executed.ipynb"
    start = time.monotonic()
    r = run_tool([sys.executable, RUNNER, "--data", archive, "--out", str(out), "--timeout", str(BUDGET)],
                 timeout=BUDGET + 60)
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr[-4000:]
    assert f"wrote {out}" in r.stdout
    return nbformat.read(str(out), as_version=4), elapsed


def test_every_cell_runs_in_order(executed):
    nb, _ = executed
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    # The tiny archive was read, not the shared data: 5 classes x 4 training and 2 test images.
    assert "['dog', 'frog', 'horse', 'ship', 'truck']: 20 training and 10 test images" in stdout_of(nb)


def test_the_printed_checks_hold(executed):
    text = stdout_of(executed[0])
    (percent,) = numbers(r"trainable [\d,]+ / [\d,]+ parameters \(([\d.]+) %", text)
    assert 0 < percent < 3
    assert all(math.isfinite(loss) for loss in numbers(r"step \d+: loss (\S+)", text))
    (reload_diff,) = numbers(r"max \|logit difference\| after reload: (\S+)", text)
    assert reload_diff < 1e-6
    bank_diffs = numbers(r"max \|logit difference\| from the task's own model: (\S+)", text)
    assert len(bank_diffs) == 2 and max(bank_diffs) < 1e-6
    (export_diff,) = numbers(r"max \|Paddle Inference - dynamic graph\|: (\S+)", text)
    assert export_diff < 1e-5
    assert "top-1 equal to the model's on the dataset tensors: True" in text
    predictions = re.findall(r"^images/(\w+)/\d+\.png: (\w+) [\d.]+, (\w+) [\d.]+$", text, re.M)
    assert len(predictions) == 8
    assert {name for line in predictions for name in line} <= {"dog", "frog", "horse", "ship", "truck"}


def test_the_plot_is_shown_inline(executed):
    images = [o for c in executed[0].cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) == 1


def test_the_committed_notebook_was_rendered_on_the_shared_subset():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # one run, in order
    assert nb.metadata.kernelspec.name == "python3"
    (train_images,) = numbers(r"\]: (\d+) training and \d+ test images", stdout_of(nb))
    assert train_images > 1000  # not the tiny test archive


def load_runner():
    spec = importlib.util.spec_from_file_location("run_notebook", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_kernel_of_another_interpreter_is_refused():
    runner = load_runner()

    def probe(executable, prefix):
        return nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
            "stream", name="stdout", text=json.dumps([executable, prefix]) + "\n")])

    runner._check_kernel(probe(sys.executable, sys.prefix))
    with pytest.raises(runner.NotebookError, match="not this interpreter"):
        runner._check_kernel(probe("/usr/bin/python3", "/usr"))


def test_a_failing_cell_and_the_time_limit_stop_the_run(tmp_path):
    source, out = tmp_path / "nb.ipynb", tmp_path / "out.ipynb"
    cells = [nbformat.v4.new_code_cell("print('first')"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(source))
    r = run_tool([sys.executable, RUNNER, str(source), "--out", str(out)], timeout=BUDGET)
    assert r.returncode == 1 and "ValueError: boom" in r.stderr and not out.exists()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time; time.sleep(60)")]),
                   str(source))
    r = run_tool([sys.executable, RUNNER, str(source), "--out", str(out), "--timeout", "8"], timeout=BUDGET)
    assert r.returncode == 1 and "error:" in r.stderr and not out.exists()
