"""The VisualDL board a user opens after a run: the real `visualdl` server, started with the command
the README gives, serves its page in any browser language and reads back the run's scalars as
metrics.jsonl has them (issue 25)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from conftest import tiny_run_config

from adaptformer.config import load_config

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from board_screenshot import stop  # noqa: E402  (the committed tool's own way to stop the server)
from adaptformer.engine.logger import read_records
from adaptformer.engine.runner import train

EPOCHS = 3
START_TIMEOUT_S = 60  # the board's first answer; it usually comes within 2-3 s
# VisualDL stores scalars as float32: a value read back differs from metrics.jsonl's float64 by at
# most float32 rounding (relative 6e-8). 1e-6 relative allows that and nothing more.
RTOL = 1e-6


def visualdl_command():
    beside = os.path.join(os.path.dirname(sys.executable), "visualdl")
    command = beside if os.path.exists(beside) else shutil.which("visualdl")
    if command is None:
        pytest.fail("the visualdl command is not installed (pip install visualdl)")
    return command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, accept_language=None, timeout=10):
    """(HTTP status, body) of a GET; an HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, headers={"Accept-Language": accept_language} if accept_language else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def api(base, method, **query):
    status, body = get(f"{base}/app/api/{method}?{urllib.parse.urlencode(query)}")
    assert status == 200, f"{method}: HTTP {status}"
    answer = json.loads(body)
    assert answer["status"] == 0, answer
    return answer["data"]


def wait_until_serving(base, process, log_path):
    """Poll the board's liveness URL until it answers; fail clearly if the server exits or never does."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"visualdl exited with code {process.returncode} before serving:\n"
                        f"{open(log_path, encoding='utf-8', errors='replace').read()[-3000:]}")
        try:
            if get(f"{base}/alive", timeout=1)[0] == 204:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.1)  # the poll's interval
    pytest.fail(f"visualdl did not answer at {base}/alive within {START_TIMEOUT_S} s:\n"
                f"{open(log_path, encoding='utf-8', errors='replace').read()[-3000:]}")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 3-epoch training with a VisualDL point every step; returns its output folder."""
    cfg = load_config(tiny_run_config(tmp_path_factory.mktemp("board"), train={"epochs": EPOCHS, "log_every": 1}))
    train(cfg)
    return cfg.train.output_dir


@pytest.fixture(scope="module")
def board(tiny_run):
    """The README's command, `visualdl --logdir OUT --language en`, on a free port; stopped by its PID."""
    port = free_port()
    run_parent, run_name = os.path.split(tiny_run)
    log_path = os.path.join(os.path.dirname(run_parent), "visualdl.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen([visualdl_command(), "--logdir", run_name, "--host", "127.0.0.1", "--port",
                                    str(port), "--language", "en"], cwd=run_parent, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, process, log_path)
        yield base, f"{run_name}/vdl", tiny_run
    finally:
        stop(process)  # the server and anything it started, by the process group its PID leads
    assert process.poll() is not None


@pytest.mark.parametrize("language", [None, "fr-FR", "en-US", "zh-CN,zh;q=0.9"])
def test_the_scalar_page_opens_in_any_browser_language(board, language):
    """Without --language, VisualDL 2.5.3 answers 500 to any browser that asks for neither en nor zh
    (its page handler sets a cookie to None, which Werkzeug 3 refuses)."""
    base, _, _ = board
    status, body = get(f"{base}/app/scalar", accept_language=language)
    assert status == 200, f"Accept-Language {language!r}: HTTP {status}"
    assert b"<html" in body.lower()


def test_the_board_reads_back_what_metrics_jsonl_holds(board):
    base, run, out = board
    records = read_records(os.path.join(out, "metrics.jsonl"))
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))

    assert api(base, "runs") == [run]
    tags = api(base, "scalar/tags")
    assert tags["runs"] == [run]
    for tag in ("train/epoch_loss", "train/epoch_top1", "eval/top1", "eval/loss", "train/lr", "train/loss"):
        assert tag in tags["tags"][0], tag

    def by_step(tag):
        points = api(base, "scalar/list", run=run, tag=tag)  # [[time ms, step, value], ...]
        return {step: value for _, step, value in points}

    # Epoch scalars are logged at the epoch's number.
    for tag, key in (("train/epoch_loss", "train_loss"), ("train/epoch_top1", "train_top1"),
                     ("eval/top1", "eval_top1"), ("eval/loss", "eval_loss")):
        shown = by_step(tag)
        assert sorted(shown) == [r["epoch"] for r in records], tag
        for r in records:
            assert shown[r["epoch"]] == pytest.approx(r[key], rel=RTOL, abs=1e-12), (tag, r["epoch"])

    # train/lr is logged at every optimizer step (log_every 1) with the rate that step used;
    # metrics.jsonl's lr is the rate after the epoch's last step, i.e. the one the next step uses.
    lr = by_step("train/lr")
    steps = records[-1]["step"]
    assert sorted(lr) == list(range(1, steps + 1))
    for r in records[:-1]:
        assert lr[r["step"] + 1] == pytest.approx(r["lr"], rel=RTOL, abs=1e-12), r["epoch"]
    # After the last epoch the cosine schedule has reached its floor (0): the last step's rate is
    # above it, and every logged rate lies within the schedule's range.
    assert records[-1]["lr"] == pytest.approx(0.0, abs=1e-12) and lr[steps] > 0
    assert max(lr.values()) == pytest.approx(0.05, rel=RTOL)  # optimizer.lr at the end of warm-up


def test_a_run_prints_the_board_command_that_opens_in_any_browser(tmp_path, capsys):
    from adaptformer.engine.logger import RunLogger

    logger = RunLogger(str(tmp_path))
    logger.scalars({"train/loss": 1.0}, 1)
    logger.writer.close()
    assert f"VisualDL: visualdl --logdir {tmp_path / 'vdl'} --language en" in capsys.readouterr().out
