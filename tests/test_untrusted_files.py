"""Hostile files (tests/untrusted_payloads.py), refused by every reader and every entry point:
one line on stderr, exit status 2, nothing run, little memory and time spent."""
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

from adaptformer.config import DataConfig, load_config, save_config
from adaptformer.data import DataError, build_dataset
from adaptformer.files.safe_pickle import read_data_pickle
from cifar_archive import write_cifar_archive
from conftest import ROOT
from untrusted_payloads import READER_CASES, bytes_of_size, ndarray_of_size, system_pickle, write_zip

TOOLS = os.path.join(ROOT, "tools")

# Reads one file with one reader under an address-space limit 1.5 GiB above what the process maps
# once imported (importing the package loads Paddle, which alone maps gigabytes), and reports what
# it cost.
MEASURE = r"""
import json, resource, sys, time
from adaptformer.files import safe_pickle
vm_size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm_size + (3 << 29),) * 2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    getattr(safe_pickle, sys.argv[1])(sys.argv[2])
    message = None
except safe_pickle.CheckpointError as e:
    message = str(e)
print(json.dumps({"message": message, "seconds": time.perf_counter() - start,
                  "peak_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def measure(reader, path):
    r = subprocess.run([sys.executable, "-c", MEASURE, reader, str(path)], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr[-2000:]  # a MemoryError or a crash
    return json.loads(r.stdout)


@pytest.mark.parametrize("name", READER_CASES)
def test_reader_refuses_within_memory_and_time(tmp_path, name):
    write, reader, expected = READER_CASES[name]
    path = write(tmp_path / name)
    got = measure(reader, path)
    assert got["message"] is not None, f"{name} was read"
    assert got["message"].startswith(f"{path}: ") and expected in got["message"]
    assert "\n" not in got["message"] and len(got["message"]) < 400
    assert got["seconds"] < 5 and got["peak_growth_mib"] < 32, got


@pytest.mark.parametrize("reader, container", [("read_numpy_pickle", "pickle"), ("read_torch_zip", "zip")])
def test_code_payload_runs_nothing(tmp_path, reader, container):
    marker = tmp_path / "ran"
    path = tmp_path / "evil"
    if container == "zip":
        write_zip(path, {"archive/data.pkl": system_pickle(marker)})
    else:
        path.write_bytes(system_pickle(marker))
    got = measure(reader, path)
    assert "refuses to load global 'posix.system'" in got["message"]
    assert not marker.exists()


def test_payloads_are_live():
    """Control: under plain pickle these allocate what they declare (kept small here)."""
    assert pickle.loads(ndarray_of_size(1 << 20)).nbytes == 1 << 20
    assert len(pickle.loads(bytes_of_size(1 << 20))) == 1 << 20


def test_cifar_batches_are_dicts_with_bytes_keys():
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2], b"filenames": [b"a.png", b"b.png"]}
    got = read_data_pickle(pickle.dumps(batch, protocol=2), "batch")
    assert sorted(got) == [b"data", b"filenames", b"labels"] and got[b"labels"] == [1, 2]
    np.testing.assert_array_equal(got[b"data"], batch[b"data"])


@pytest.mark.parametrize("member", ["batches.meta", "data_batch_1"])
def test_cifar_member_payload_runs_nothing_in_process(tmp_path, member):
    marker = tmp_path / "ran"
    archive = write_cifar_archive(str(tmp_path / "c10.tar.gz"), replace={member: system_pickle(marker)})
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(data_file=archive), "train")
    assert f"(member {member}: refuses to load global 'posix.system'" in str(e.value)
    assert str(e.value).startswith(archive) and "\n" not in str(e.value)
    assert not marker.exists()


# --------------------------------------------------------------------------- the command-line tools


def tiny_yaml(tiny_config, **data):
    return tiny_config(data=data) if data else tiny_config()


def planted_resume(tmp_path, tiny_config, marker):
    cfg = tiny_config()
    out = tmp_path / "run" / "out"
    out.mkdir(parents=True)
    (out / "last.pdckpt").write_bytes(system_pickle(marker))
    save_config(load_config(cfg), str(out / "config.yaml"))  # the run's config: the checkpoint is what is planted
    return ["train.py", "-c", cfg, "--resume"]


def cifar_run(tmp_path, tiny_config, marker, member):
    archive = write_cifar_archive(str(tmp_path / "c10.tar.gz"), replace={member: system_pickle(marker)})
    return ["train.py", "-c", tiny_config(data={"dataset": "cifar10", "data_file": archive})]


def evil_file(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


CASES = {
    "eval --checkpoint": lambda t, c, m: ["eval.py", "-c", c(), "--checkpoint",
                                          evil_file(t, "best.pdparams", system_pickle(m))],
    "train --resume": planted_resume,
    "cifar batches.meta": lambda t, c, m: cifar_run(t, c, m, "batches.meta"),
    "cifar data_batch_1": lambda t, c, m: cifar_run(t, c, m, "data_batch_1"),
    "convert_weights .pth": lambda t, c, m: ["convert_weights.py", write_zip(t / "evil.pth", {
        "archive/data.pkl": system_pickle(m)}), str(t / "out.pdparams")],
    "model.pretrained": lambda t, c, m: ["train.py", "-c", c(), "-o",
                                         f"model.pretrained={evil_file(t, 'evil.pdparams', system_pickle(m))}"],
}


@pytest.mark.parametrize("case", CASES)
def test_tools_refuse_with_one_line(tmp_path, tiny_config, case):
    marker = tmp_path / "ran"
    tool, *args = CASES[case](tmp_path, tiny_config, marker)
    # Paddle prints a two-line banner at import when OMP_NUM_THREADS > 1 (adaptformer sets it to the
    # core count); with 1 thread the tool's own stderr is all there is.
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, os.path.join(TOOLS, tool), *args], cwd=str(tmp_path), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    assert "refuses to load global 'posix.system'" in lines[0]
    assert not marker.exists()


class Zeros(io.RawIOBase):
    """`size` zero bytes, streamed (tarfile reads the member from it)."""

    def __init__(self, size):
        self.left = size

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def test_cifar_archive_that_inflates_is_refused(tmp_path):
    """A data_batch_1 of 64 MiB of zeros: the .tar.gz is ~70 KiB, the member declares 64 MiB."""
    archive = str(tmp_path / "c10.tar.gz")
    write_cifar_archive(archive, replace={"data_batch_1": b""})
    inflated = str(tmp_path / "inflated.tar.gz")
    with tarfile.open(archive) as src, tarfile.open(inflated, "w:gz") as dst:
        for member in src:
            if member.name.endswith("data_batch_1"):
                member.size = 64 << 20
                dst.addfile(member, Zeros(member.size))
            else:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    assert os.path.getsize(inflated) < 200_000
    start = time.perf_counter()
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(data_file=inflated), "train")
    assert "member cifar-10-batches-py/data_batch_1 declares 67108864 bytes" in str(e.value)
    assert time.perf_counter() - start < 5 and "\n" not in str(e.value)
