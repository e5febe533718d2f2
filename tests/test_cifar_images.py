"""tools/cifar_images.py: an archive's images as PNG files in class-name folders."""
import io
import os
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image

from adaptformer.config import DataConfig
from adaptformer.data.kinds.cifar import load_cifar
from cifar_archive import names, write_cifar_archive
from conftest import ROOT


def run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "cifar_images.py"), *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_writes_the_requested_classes_and_counts_with_the_archives_pixels(tmp_path):
    archive = write_cifar_archive(str(tmp_path / "cifar-10-python.tar.gz"), test_per_class=3)
    out = tmp_path / "images"
    result = run(archive, str(out), "--classes", "5", "8", "--per-class", "2")
    assert result.returncode == 0, result.stderr
    class_names = names("cifar10")
    assert sorted(os.listdir(out)) == sorted([class_names[5], class_names[8]])
    test = load_cifar(DataConfig(data_file=archive, classes=[5, 8], download=False), "eval")
    for folder in os.listdir(out):
        files = sorted(os.listdir(out / folder))
        assert len(files) == 2
        for name in files:  # <index in the kept test images>.png, holding exactly that image
            index = int(name.split(".")[0])
            assert [class_names[5], class_names[8]][test.labels[index]] == folder
            np.testing.assert_array_equal(np.asarray(Image.open(out / folder / name)), test.images[index])


def test_bad_arguments_are_one_line(tmp_path):
    result = run(str(tmp_path / "missing.tar.gz"), str(tmp_path / "out"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "missing.tar.gz" in result.stderr
    assert not (tmp_path / "out").exists()
    archive = write_cifar_archive(str(tmp_path / "cifar-10-python.tar.gz"))
    result = run(archive, str(tmp_path / "out"), "--per-class", "0")
    assert result.returncode == 2 and "--per-class" in result.stderr


def test_the_archive_kind_comes_from_its_members_not_its_file_name(tmp_path):
    # A CIFAR-100 archive under a name without "100", and a CIFAR-10 one under a name with it.
    hundred = write_cifar_archive(str(tmp_path / "mydata.tar.gz"), kind="cifar100")
    ten = write_cifar_archive(str(tmp_path / "cifar-100-copy.tar.gz"), kind="cifar10")
    for archive, kind, cls in ((hundred, "cifar100", "42"), (ten, "cifar10", "3")):
        out = tmp_path / f"out_{kind}"
        result = run(archive, str(out), "--classes", cls, "--per-class", "1")
        assert result.returncode == 0, result.stderr
        assert os.listdir(out) == [names(kind)[int(cls)]]
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        data = b"hello"
        info = tarfile.TarInfo("notes.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    result = run(str(other), str(tmp_path / "out_other"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "neither a CIFAR-10 nor a CIFAR-100" in result.stderr and "notes.txt" in result.stderr
    assert not (tmp_path / "out_other").exists()
