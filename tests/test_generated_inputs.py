"""A few hundred seeded mutations of configs, tuned folders, images and CIFAR archives
(tests/generated_inputs.py), in a child process with an address-space limit and a per-case
alarm: each must end in time, normally or with one of the package's one-line errors, and
nothing outside the child's work folder may change."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "tests", "generated_inputs.py")


def tree(folder):
    return {os.path.join(d, n): os.lstat(os.path.join(d, n)).st_mtime_ns
            for d, _, names in os.walk(folder) for n in names}


@pytest.mark.parametrize("seed", [0])
def test_generated_inputs_end_in_time_with_one_line_errors(tmp_path, seed):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "neighbour.txt").write_text("must stay")
    watched = [str(tmp_path), os.path.join(ROOT, "configs"), os.path.join(ROOT, "pretrained")]
    before = {w: {p: t for p, t in tree(w).items() if not p.startswith(str(work))} for w in watched}
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, SCRIPT, str(work), str(seed), "300"], capture_output=True, text=True,
                          env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["cases"] == 300
    assert result["problems"] == []
    after = {w: {p: t for p, t in tree(w).items() if not p.startswith(str(work))} for w in watched}
    assert after == before
