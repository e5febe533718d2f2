"""Every bad input in tests/bad_inputs.py, run through the CLI in subprocesses: one line on
stderr (`error: ...`), exit status 2, no traceback, no hang, and nothing written (errors met
while training keep what the run had written before). docs/reliability_inputs.md is this
table's output (python tools/reliability_report.py)."""
import pytest

from bad_inputs import CASES, run_all


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """All cases at once, two at a time: most take only Paddle's import time."""
    return run_all(CASES, tmp_path_factory.mktemp("bad_inputs"))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.name for c in CASES])
def test_bad_input_is_refused_in_one_line(outcomes, index):
    outcome = outcomes[index]
    assert not outcome.problems(), (outcome.problems(), outcome.stderr[-2000:])


def outcome_of(outcomes, name):
    return next(o for o in outcomes if o.case.name == name)


def test_a_diverged_loss_keeps_no_half_epoch(outcomes):
    o = outcome_of(outcomes, "NaN loss (optimizer.lr=1e30)")
    assert "no checkpoint was saved yet" in o.stderr
    # A run into a new folder that fails before its first checkpoint leaves nothing: no config.yaml
    # that would make the folder "hold a run", no lock, no manifest.
    assert o.out_after == {}


def test_a_full_disk_leaves_no_temporary_file(outcomes):
    o = outcome_of(outcomes, "disk full while writing a checkpoint (file size limit 100 kB)")
    assert not [n for n in o.out_after if n.endswith(".tmp")] and "best.pdparams" not in o.out_after


@pytest.mark.parametrize("workers", [0, 2])
def test_skipped_images_are_reported_once_and_training_ends(outcomes, workers):
    o = outcome_of(outcomes, f"text file named .png with data.on_bad_image: skip, num_workers {workers}")
    assert o.status == 0 and o.stdout.count("leaving out") == 1 and o.stderr_lines == []
    assert "summary.json" in o.out_after
