"""The mechanisms behind tests/bad_inputs.py, one by one: the opener, the loader guard, the image
walk, bounded YAML, the run manifest, the export staging clean-up, Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from adaptformer.config import ConfigError, load_config
from adaptformer.data import DataError
from adaptformer.data.images import to_rgb, walk_images
from adaptformer.data.loading import PlannedBatchSampler, guarded_loader
from adaptformer.engine.trainer import epoch_seed
from adaptformer.errors import InputFileError, quoted
from adaptformer.files import check_outputs, read_bytes, read_json, read_text
from adaptformer.files import opener
from adaptformer.files.run_folder import MANIFEST, check_folder, owned_entries, record_written
from adaptformer.files.yaml_reader import MAX_NODES, parse_yaml

from cifar_archive import write_cifar_archive
from conftest import ROOT


# --------------------------------------------------------------------------- the opener

def test_special_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match="is a FIFO"):
        read_json(str(fifo))  # an open() of a FIFO would wait for a writer forever
    os.symlink("/dev/zero", tmp_path / "zero.yaml")
    with pytest.raises(InputFileError, match="is a character device"):
        read_text(str(tmp_path / "zero.yaml"), "config")
    os.symlink("loop", tmp_path / "loop")
    with pytest.raises(InputFileError, match="a loop of symbolic links"):
        read_bytes(str(tmp_path / "loop"), "json")


def test_a_file_over_its_kinds_budget_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setitem(opener.BUDGETS, "config", 100)
    (tmp_path / "big.yaml").write_text("a: 1\n" * 30)
    with pytest.raises(InputFileError, match="150 bytes, more than a config file can be"):
        read_text(str(tmp_path / "big.yaml"), "config")
    (tmp_path / "ok.yaml").write_text("a: 1\n" * 20)
    assert read_text(str(tmp_path / "ok.yaml"), "config") == "a: 1\n" * 20


def test_text_must_be_utf8_and_json_the_expected_type(tmp_path):
    (tmp_path / "latin.json").write_bytes(b'{"a": "caf\xe9"}')
    with pytest.raises(InputFileError, match=r"not UTF-8 text \(byte 0xe9 at offset 10\)"):
        read_json(str(tmp_path / "latin.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputFileError, match="holds a JSON list, expected a JSON object"):
        read_json(str(tmp_path / "list.json"))


# --------------------------------------------------------------------------- YAML

def test_yaml_is_measured_after_alias_expansion(tmp_path):
    laughs = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(5))
    # Expanded: a 11 nodes, b 1 + 10 * 11, ... f 1,111,111; plus 6 keys and the root mapping.
    with pytest.raises(ConfigError, match=r"x.yaml: expands to 1,234,573 nodes"):
        parse_yaml(laughs, "x.yaml")  # 10^6 leaves from 300 bytes
    small = "a: &a [1, 2]\nb: [*a, *a]\n"
    assert parse_yaml(small, "s.yaml") == {"a": [1, 2], "b": [[1, 2], [1, 2]]}
    assert MAX_NODES >= 10_000  # real configs hold a few hundred nodes


def test_a_key_given_twice_is_refused_with_its_line():
    with pytest.raises(ConfigError, match=r"t.yaml: line 3: key 'train' is given twice"):
        parse_yaml("train:\n  epochs: 1\ntrain:\n  seed: 2\n", "t.yaml")
    assert parse_yaml("a: {x: 1}\nb: {x: 1}\n", "ok.yaml") == {"a": {"x": 1}, "b": {"x": 1}}


def test_each_base_file_is_read_once_however_often_it_is_named(tmp_path, monkeypatch):
    # A ladder of diamonds: level i names level i+1 twice (through two files). Read naively,
    # the bottom file would be read 2^12 times.
    depth = 12
    (tmp_path / f"l{depth}.yaml").write_text("train: {epochs: 1}\n")
    for i in range(depth - 1, -1, -1):
        for side in "ab":
            (tmp_path / f"l{i}{side}.yaml").write_text(f"_base_: l{i + 1}.yaml\n")
        (tmp_path / f"l{i}.yaml").write_text(f"_base_: [l{i}a.yaml, l{i}b.yaml]\n")
    from adaptformer.config import loading

    reads = []
    original = loading.read_yaml
    monkeypatch.setattr(loading, "read_yaml", lambda p: reads.append(p) or original(p))
    data = loading._load_with_bases(str(tmp_path / "l0.yaml"), {})
    assert data == {"train": {"epochs": 1}}
    assert len(reads) == len(set(reads)) == 3 * depth + 1


# --------------------------------------------------------------------------- images

def test_the_image_walk_lists_each_image_once_and_skips_hidden_files(tmp_path):
    cls = tmp_path / "train" / "a"
    (cls / "sub").mkdir(parents=True)
    for name in ("x.png", "sub/y.png", ".DS_Store", "._x.png", "notes.txt"):
        (cls / name).write_bytes(b"")
    os.symlink(".", cls / "again")  # a loop: Paddle's walk lists the class 41 times
    os.symlink("sub", cls / "sub_link")  # a second way to reach sub/
    found = [os.path.relpath(p, cls) for p in walk_images(str(cls), (".png",))]
    assert found == ["sub/y.png", "x.png"]

    from adaptformer.serve.predict import expand_inputs

    assert [os.path.relpath(p, cls) for p in expand_inputs([str(cls)])[0]] == found  # one rule for both


def test_sixteen_bit_images_convert_without_wide_copies():
    side = 2000
    img = Image.fromarray(np.full((side, side), 40000, np.uint16))
    tracemalloc.start()
    rgb = to_rgb(img)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.asarray(rgb)[0, 0].tolist() == [40000 // 257] * 3
    # NumPy's allocations: the 8-bit result (1 byte per pixel) and a few copies of one band of
    # 256 rows; an int64 copy of the whole image would be 8 bytes per pixel, an int32 one 4.
    assert peak < 2 * side * side, peak


# --------------------------------------------------------------------------- loading

class _Raising:
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise ValueError("boom at five")
        return np.zeros((3, 8, 8), np.float32), np.array(i % 2, np.int64)


class _Data:
    img_size, num_workers, on_bad_image = 8, 0, "error"


def test_an_exception_while_loading_a_sample_ends_the_epoch_in_one_line():
    # Inside Paddle's loader thread (num_workers 0) this exception would hang the loop forever.
    loader = guarded_loader(_Raising(), _Data(), batch_size=4, shuffle=False)
    with pytest.raises(DataError, match=r"^sample 5 could not be loaded \(ValueError: boom at five\)$"):
        for _ in loader:
            pass


def test_batches_are_drawn_in_the_main_thread_and_large_seeds_wrap():
    sampler = PlannedBatchSampler(list(range(10)), batch_size=4, shuffle=True)
    sampler.set_epoch(epoch_seed(500_000, 3))  # 500000 * 10007 + 3 > 2^32: NumPy refused it
    assert sorted(i for b in sampler for i in b) == list(range(10))
    assert epoch_seed(42, 3) == 42 * 10_007 + 3  # small seeds reshuffle as they always did
    assert 0 <= epoch_seed(2**32 - 1, 10**5) < 2**32


def test_a_cifar_batch_that_is_a_link_is_refused(tmp_path):
    good = write_cifar_archive(str(tmp_path / "good.tar.gz"))
    bad = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(good) as src, tarfile.open(bad, "w:gz") as dst:
        for member in src.getmembers():
            if member.name.endswith("data_batch_2"):
                link = tarfile.TarInfo(member.name)
                link.type, link.linkname = tarfile.SYMTYPE, "data_batch_1"
                dst.addfile(link)
            else:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    cfg = load_config(os.path.join(ROOT, "configs", "cpu", "smoke_synthetic.yaml"),
                      ["data.dataset=cifar10", f"data.data_file={bad}", "model.num_classes=10"])
    from adaptformer.data import build_dataset

    with pytest.raises(DataError, match="member cifar-10-batches-py/data_batch_2 is a link"):
        build_dataset(cfg.data, "train")


# --------------------------------------------------------------------------- outputs

def test_the_manifest_decides_what_a_run_owns(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds files no run of this package wrote \(notes.txt; no "):
        check_folder(str(out), resume=False, overwrite=True)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.yaml").write_text("train: {}\n")  # a run folder written before the manifest existed
    with pytest.raises(ConfigError, match="a run of a version before the manifest: move it aside"):
        check_folder(str(legacy), resume=False, overwrite=True)
    check_folder(str(legacy), resume=True, overwrite=False)  # --resume deletes nothing: allowed
    record_written(str(out), "best.pdparams", "vdl")
    (out / "best.pdparams").write_bytes(b"w")
    (out / "vdl").mkdir()
    os.symlink("notes.txt", out / "summary.json")  # a run's name, but a link: not ours to remove
    assert owned_entries(str(out)) == {"best.pdparams": "file", "vdl": "folder"}
    check_folder(str(out), resume=False, overwrite=True)  # holds a run: --overwrite may replace it
    with pytest.raises(ConfigError, match="already holds a run"):
        check_folder(str(out), resume=False, overwrite=False)
    assert (out / MANIFEST).exists()


def test_outputs_are_checked_against_inputs_through_links(tmp_path):
    (tmp_path / "w.pdparams").write_bytes(b"w")
    os.symlink("w.pdparams", tmp_path / "alias.json")
    with pytest.raises(Exception, match="alias.json: is the input .*w.pdparams"):
        check_outputs({"--json": str(tmp_path / "alias.json")}, [str(tmp_path / "w.pdparams")])
    check_outputs({"--json": str(tmp_path / "new.json")}, [str(tmp_path / "w.pdparams")])


def test_an_abandoned_export_staging_folder_is_removed_by_the_next_export(tmp_path):
    from adaptformer.serve.export import _remove_abandoned_staging

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process id that no longer runs
    dead = tmp_path / f".model.{child.pid}.abcd1234.export"
    alive = tmp_path / f".model.{os.getpid()}.efgh5678.export"
    other = tmp_path / f".other.{child.pid}.abcd1234.export"
    for d in (dead, alive, other):
        d.mkdir()
    _remove_abandoned_staging(str(tmp_path), "model")
    assert not dead.exists() and alive.exists() and other.exists()


def test_names_with_line_breaks_are_quoted_in_one_line_outputs():
    assert quoted("cat") == "cat"
    assert quoted("a\nb: dog 1.00") == "'a\\nb: dog 1.00'"


# --------------------------------------------------------------------------- Ctrl-C

def test_ctrl_c_says_where_training_stopped_and_releases_the_folder(tiny_config, tmp_path):
    path = tiny_config(train={"epochs": 50}, data={"synthetic_train_size": 256})
    out = load_config(path).train.output_dir
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "tools/train.py", "-c", path], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(out, "last.pdckpt")):
        time.sleep(0.2)
    assert os.path.exists(os.path.join(out, "last.pdckpt")), "no epoch finished in 120 s"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("W")]
    assert proc.returncode == 130, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("interrupted at epoch "), stderr[-2000:]
    assert f"last checkpoint kept: {os.path.join(out, 'last.pdckpt')}" in lines[0]
    assert not os.path.exists(os.path.join(out, ".lock"))


def test_an_unreadable_image_whose_name_holds_a_line_break_is_named_on_one_line(tmp_path):
    from adaptformer.data.image_files import load_rgb

    path = tmp_path / "a\nb.png"
    path.write_bytes(b"not an image")
    with pytest.raises(DataError) as raised:
        load_rgb(str(path))
    assert "\n" not in str(raised.value) and "a\\nb.png" in str(raised.value)
