"""tools/benchmark.py --data-only and data.shared_memory. Speeds are measured by the tool, never
asserted here: the tests check that it measures what it says, on tiny data they write."""
import json
import os
import sys

import numpy as np
import pytest
from cifar_archive import write_cifar_archive
from conftest import ROOT, run_tool

from adaptformer.config import ConfigError, load_config
from adaptformer.config.schema import DataConfig
from adaptformer.data import build_dataset
from adaptformer.data.loading import guarded_loader
from adaptformer.engine import data_benchmark as db

BENCH = os.path.join(ROOT, "tools", "benchmark.py")
SETTINGS = {"img_size": 40, "batch": 4, "batches": 2}


@pytest.fixture
def archive(tmp_path):
    return write_cifar_archive(str(tmp_path / "cifar-10-python.tar.gz"), train_per_class=2)


@pytest.mark.parametrize("source", ["folder", "cifar"])
def test_bare_loop_makes_the_arrays_the_loader_delivers(tmp_path, archive, source):
    """The bare loop times the work the training loader does per image, no more and no less:
    for the same images, its arrays equal the batch the package's loader hands the trainer."""
    folder = db.write_jpeg_folder(archive, str(tmp_path / "jpegs"), count=12, min_side=50, max_side=70)
    case = {"source": source, "mode": "loader", "workers": 0, "transport": None}
    cfg = db.data_config(case, {"archive": archive, "folder": folder, **SETTINGS})
    dataset = build_dataset(cfg, "train")
    items = db.bare_items(dataset, source)
    assert len(items) == len(dataset) == (12 if source == "folder" else 20)
    if source == "folder":  # JPEGs of the sizes asked for, not already at the training size
        from PIL import Image
        sizes = {Image.open(p).size for p in items}
        assert all(50 <= w <= 70 and 50 <= h <= 70 for w, h in sizes) and len(sizes) > 1
    images, _ = next(iter(guarded_loader(dataset, cfg, 4, shuffle=False)))
    bare = np.stack([db.bare_image(items[i], SETTINGS["img_size"]) for i in range(4)])
    assert images.shape == [4, 3, 40, 40]
    np.testing.assert_array_equal(images.numpy(), bare)


def test_data_only_writes_one_row_per_configuration(tmp_path, archive):
    out, report = tmp_path / "data.json", tmp_path / "data.md"
    proc = run_tool([sys.executable, BENCH, "--data-only", "--archive", archive, "--sources", "cifar",
                     "--workers", "1", "--batch", "4", "--batches", "2", "--img-size", "40", "--rounds", "1",
                     "--json", str(out), "--report", str(report)], timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["mode"], r["workers"], r["transport"]) for r in rows] == [
        ("bare", 0, None), ("loader", 1, "pipe"), ("loader", 1, "shm")]
    for r in rows:
        assert r["attempts"] == 1 and r["failures"] == 0, r["failure_reasons"]
        assert r["images_per_s"] > 0 and r["per_worker_images_per_s"] == r["images_per_s"]
    for r in rows[1:]:  # per worker over the same round's bare loop
        assert r["ratio_to_bare"] == pytest.approx(r["images_per_s"] / rows[0]["images_per_s"])
    runs = {(x["mode"], x["transport"]): x for x in result["rounds"][0]}
    assert runs[("loader", "shm")]["use_shared_memory"] is True
    assert runs[("loader", "pipe")]["use_shared_memory"] is False
    assert all(x["images"] == 8 for x in result["rounds"][0])  # --batches 2 of --batch 4 timed
    text = report.read_text()
    assert "--data-only" in text and "| cifar | training loader | 1 | shared memory |" in text


def test_a_hung_or_crashed_configuration_is_a_counted_failure():
    env = dict(os.environ, PYTHONPATH=ROOT)
    case = {"source": "cifar", "mode": "bare", "workers": 0, "transport": None}
    # no archive at this path: the child stops with a one-line error, which stops the whole benchmark
    with pytest.raises(db.BenchError, match="does not exist"):
        db.run_case(case, {"archive": "/nonexistent.tar.gz", "folder": None, **SETTINGS}, env, timeout=120)
    # a child killed at the timeout is a failed attempt, not a hang
    result = db.run_case(case, {"archive": "/nonexistent.tar.gz", "folder": None, **SETTINGS}, env, timeout=0.01)
    assert result == {"ok": False, "reason": "no result within 0 s (killed)"}
    rows = db.summarize([case], [[result], [{"ok": True, "images_per_s": 10.0}]])
    assert rows[0]["failures"] == 1 and rows[0]["attempts"] == 2 and rows[0]["images_per_s"] == 10.0


@pytest.mark.parametrize("args,message", [
    (["--data-only", "--workers", "1,x"], "--workers must be comma-separated integers >= 0, got '1,x'"),
    (["--data-only", "--sources", "cifar,nosuch"], "--sources: nosuch not one of folder, cifar, transfer"),
    (["--data-only", "--sources", "cifar", "--archive", "/nonexistent.tar.gz"], "--archive /nonexistent.tar.gz: no such file"),
    (["--workers", "1"], "--workers go(es) with --data-only"),
])
def test_a_bad_option_is_one_line(tmp_path, args, message):
    out = tmp_path / "data.json"
    proc = run_tool([sys.executable, BENCH, *args, "--json", str(out)])
    assert proc.returncode in (1, 2)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


@pytest.mark.parametrize("value,workers,expected", [
    (True, 1, True), (False, 1, False), ("auto", 1, False),  # auto: pipes on the CPU
    (True, 0, False),  # no workers: nothing to hand over (Paddle turns it off)
])
def test_data_shared_memory_reaches_the_dataloader(value, workers, expected):
    cfg = DataConfig(dataset="synthetic", synthetic_train_size=8, num_workers=workers, shared_memory=value)
    loader = guarded_loader(build_dataset(cfg, "train"), cfg, 4, shuffle=True)
    assert loader.loader.use_shared_memory is expected  # no iteration: no worker starts


def test_data_shared_memory_is_checked(tiny_config):
    path = tiny_config()
    assert load_config(path).data.shared_memory == "auto"
    assert load_config(path, ["data.shared_memory=true"]).data.shared_memory is True
    with pytest.raises(ConfigError, match="^data.shared_memory must be auto, true or false, got 'sometimes'$"):
        load_config(path, ["data.shared_memory=sometimes"])
