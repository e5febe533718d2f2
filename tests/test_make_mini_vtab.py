"""tools/make_mini_vtab.py writes tasks the vtab reader reads as it reads VTAB-1k itself."""
import os
import sys

import numpy as np
import pytest

from adaptformer.config import from_dict
from adaptformer.data import build_dataset, num_classes
from cifar_archive import write_cifar_archive
from conftest import ROOT, run_tool

TOOL = os.path.join(ROOT, "tools", "make_mini_vtab.py")


def vtab(root, task, n):
    return from_dict({"model": {"num_classes": n}, "data": {
        "dataset": "vtab", "data_dir": os.path.join(root, task), "img_size": 32,
        "vtab": {"task": task, "num_classes": n}, "mean": [0.0] * 3, "std": [1.0] * 3,
        "augment": {"random_crop_padding": 0, "hflip": 0.0, "color_jitter_p": 0.0, "rotation": 0}}}, "test").data


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mini")
    archive = write_cifar_archive(str(tmp / "cifar-10-python.tar.gz"), train_per_class=210, test_per_class=3)
    out = str(tmp / "mini-vtab")
    r = run_tool([sys.executable, TOOL, out, "--cifar", archive])
    assert r.returncode == 0, r.stderr[-2000:]
    return out, r.stdout


def test_every_task_is_read_by_the_vtab_reader_with_disjoint_lists(mini):
    out, stdout = mini
    for task, classes, test in (("cifar10_5to9", 5, 15), ("digits", 10, 797), ("dsprites_loc", 16, 500),
                                ("dsprites_ori", 16, 500)):
        data = vtab(out, task, classes)
        assert num_classes(data) == classes
        train, val = (build_dataset(data, s) for s in ("train", "val"))  # the search protocol: no test
        labels = np.concatenate([train.targets, val.targets])
        assert labels.min() >= 0 and labels.max() < classes and len(np.unique(labels)) == classes, task
        final_data = from_dict({"model": {"num_classes": classes}, "data": {
            "dataset": "vtab", "data_dir": os.path.join(out, task), "img_size": 32,
            "vtab": {"task": task, "num_classes": classes, "protocol": "final"}}}, "test").data
        final, tst = build_dataset(final_data, "train"), build_dataset(final_data, "test")
        assert (len(train), len(val), len(final), len(tst)) == (800, 200, 1000, test), task
    # CIFAR: the val200 images are not train800 images (no pixel-identical pair)
    data = vtab(out, "cifar10_5to9", 5)
    train = {build_dataset(data, "train")[i][0].tobytes() for i in range(800)}
    assert not any(build_dataset(data, "val")[i][0].tobytes() in train for i in range(200))


def test_the_sprite_labels_are_what_they_claim(mini):
    out, _ = mini
    loc = build_dataset(vtab(out, "dsprites_loc", 16), "train")
    centroids = {}
    for i in range(300):
        image, label = loc[i]
        ys, xs = np.nonzero(image[0] > 0.5)
        centroids.setdefault(int(label), []).append(xs.mean())
    means = [np.mean(centroids[k]) for k in sorted(centroids)]
    assert np.all(np.diff(means) > 0)  # the x position grows with the label, bin by bin
    assert sorted(centroids) == list(range(16))


def test_existing_task_folders_are_never_written_into(mini, tmp_path):
    out, _ = mini
    before = sorted(os.listdir(os.path.join(out, "digits")))
    r = run_tool([sys.executable, TOOL, out, "--tasks", "digits"])
    assert r.returncode == 2 and "digits exists; the tool writes only new task folders" in r.stderr
    assert sorted(os.listdir(os.path.join(out, "digits"))) == before
    r = run_tool([sys.executable, TOOL, str(tmp_path / "x"), "--tasks", "cifar10_5to9"])
    assert r.returncode == 2 and "cifar10_5to9 needs --cifar ARCHIVE" in r.stderr
