"""The benchmark formats as they are distributed (VTAB-1k as NOAH writes it, VPT's FGVC split files,
PaddleClas file lists), each read from files the test writes in that exact layout."""
import json
import os
import re
import sys

import numpy as np
import pytest
from PIL import Image

from adaptformer.config import ConfigError, load_config
from adaptformer.config import from_dict as _from_dict
from adaptformer.data import DataError, build_dataset, class_names, epoch_choice, num_classes
from adaptformer.data.kinds import kind_of
from conftest import ROOT, run_tool

TRAIN = os.path.join(ROOT, "tools", "train.py")


def from_dict(sections):
    return _from_dict(sections, "test")


def _image(path, value, size=(12, 9)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, (value % 256, 40, 200)).save(path)


def write_vtab_task(root, n_classes=2, sizes=None):
    """NOAH's layout: images/<list>/NNNNNN.jpg and <list>.txt of `images/<list>/NNNNNN.jpg label`."""
    sizes = sizes or {"train800": 8, "val200": 4, "test": 6}
    lines = {}
    for name, n in sizes.items():
        lines[name] = []
        for i in range(n):
            rel = f"images/{name}/{i:06d}.jpg"
            _image(os.path.join(root, rel), 10 * i)
            lines[name].append(f"{rel} {i % n_classes}")
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for name, rows in lines.items():
        with open(os.path.join(root, f"{name}.txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return root


def vtab_data(root, **vtab):
    return {"dataset": "vtab", "data_dir": str(root), "img_size": 16, "vtab": vtab}


def test_vtab_search_reads_train800_val200_and_never_test_with_the_task_from_the_folder_name(tmp_path):
    from adaptformer.data import has_test

    root = write_vtab_task(str(tmp_path / "vtab-1k" / "patch_camelyon"))
    cfg = from_dict({"model": {"num_classes": 2}, "data": vtab_data(root)})
    sizes = {split: len(build_dataset(cfg.data, split)) for split in ("train", "val")}
    assert sizes == {"train": 8, "val": 4}
    assert not has_test(cfg.data)  # a learning-rate search never evaluates test.txt
    with pytest.raises(DataError, match="brings no test split with these settings \\(only train, val\\)"):
        build_dataset(cfg.data, "test")
    assert num_classes(cfg.data) == 2 and class_names(cfg.data) == ["class_0", "class_1"]
    image, label = build_dataset(cfg.data, "val")[3]
    assert image.shape == (3, 16, 16) and image.dtype == np.float32 and int(label) == 1  # resized, any size in
    assert epoch_choice(cfg.data) == "val"


def test_vtab_final_trains_on_train800val200_and_tests_the_last_epoch(tmp_path):
    root = write_vtab_task(str(tmp_path / "camelyon_copy"))
    cfg = from_dict({"model": {"num_classes": 2}, "data": vtab_data(root, task="camelyon", protocol="final")})
    assert len(build_dataset(cfg.data, "train")) == 12
    with pytest.raises(DataError, match="no validation split"):
        build_dataset(cfg.data, "val")
    assert epoch_choice(cfg.data, "auto") == "last"
    assert epoch_choice(cfg.data, "best") == "test"  # V-PETL Bench's habit, only when asked for


def test_a_vtab_final_run_reports_the_last_epoch_and_says_so(tmp_path, tiny_config):
    root = write_vtab_task(str(tmp_path / "eurosat"), n_classes=10, sizes={"train800": 20, "val200": 10, "test": 10})
    config = tiny_config(model={"num_classes": 10}, data={**vtab_data(root, protocol="final"), "img_size": 32,
                                                          "batch_size": 10},
                         train={"epochs": 3})
    r = run_tool([sys.executable, TRAIN, "-c", config])
    assert r.returncode == 0, r.stderr[-2000:]
    out = load_config(config).train.output_dir
    summary = json.loads(open(os.path.join(out, "summary.json")).read())
    assert summary["selected_on"] == "last" and summary["best_epoch"] == 3
    assert summary["test_top1"] == summary["test_top1_last"]
    assert "with the last epoch's weights (train.select_epoch) (epoch 3)" in r.stdout


@pytest.mark.parametrize("protocol, edit, message", [
    ("search", lambda root: open(os.path.join(root, "val200.txt"), "a").write("images/val200/000000.jpg\n"),
     r"val200.txt:5: expected `relative/path label` with an integer label, got images/val200/000000.jpg"),
    ("search", lambda root: open(os.path.join(root, "train800.txt"), "a").write("images/train800/000000.jpg 2\n"),
     r"train800.txt:9: label 2 is outside \[0, 2\) for VTAB-1k's patch_camelyon \(2 classes\)"),
    ("final", lambda root: os.remove(os.path.join(root, "images", "test", "000004.jpg")),
     r"test.txt:5: image .*000004.jpg does not exist"),
    ("search", lambda root: os.remove(os.path.join(root, "val200.txt")), r"data.data_dir: .*val200.txt does not exist"),
    ("final", lambda root: open(os.path.join(root, "test.txt"), "a").write("../../secret.jpg 0\n"),
     r"test.txt:7: image path ../../secret.jpg must be relative to .* and stay under it"),
])
def test_a_broken_vtab_task_is_one_line_before_training(tmp_path, tiny_config, protocol, edit, message):
    root = write_vtab_task(str(tmp_path / "patch_camelyon"))
    edit(root)
    config = tiny_config(model={"num_classes": 2}, data={**vtab_data(root, protocol=protocol), "img_size": 32})
    r = run_tool([sys.executable, TRAIN, "-c", config])
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and re.search(message, line), line
    assert not os.path.exists(load_config(config).train.output_dir)  # nothing written


def test_vtab_task_names_and_class_counts(tmp_path):
    root = write_vtab_task(str(tmp_path / "my_task"), n_classes=3)
    with pytest.raises(DataError, match="'my_task' is not one of VTAB-1k's 19 tasks"):
        num_classes(from_dict({"data": vtab_data(root)}).data)
    assert num_classes(from_dict({"data": vtab_data(root, num_classes=3)}).data) == 3
    with pytest.raises(DataError, match="data.vtab.num_classes is 5, but VTAB-1k's oxford_iiit_pet has 37"):
        num_classes(from_dict({"data": vtab_data(root, task="oxford_pet", num_classes=5)}).data)
    from adaptformer.data.kinds.vtab import GROUPS, TASKS

    assert len(TASKS) == 19 and [len(g) for g in GROUPS.values()] == [7, 4, 8]
    assert TASKS["cifar"] == 100 and TASKS["sun397"] == 397 and TASKS["smallnorb_azi"] == 18


def test_kind_settings_are_checked_when_the_config_loads(tmp_path):
    with pytest.raises(ConfigError, match="data.vtab.protocol must be one of search, final, got 'test'"):
        from_dict({"data": {"dataset": "vtab", "vtab": {"protocol": "test"}}})
    with pytest.raises(ConfigError, match="data.fgvc.task is a setting of data.dataset fgvc; data.dataset is 'vtab'"):
        from_dict({"data": {"dataset": "vtab", "fgvc": {"task": "cub"}}})
    with pytest.raises(ConfigError, match="train.select_epoch"):
        from_dict({"train": {"select_epoch": "first"}})


def write_fgvc(root, task_dir="images", n_classes=200, first_id=1):
    """VPT's split files: {relative image path: class id}, ids as the dataset numbers them."""
    images = os.path.join(root, task_dir) if task_dir else root
    splits = {"train": 2, "val": 1, "test": 1}
    for split, per_class in splits.items():
        doc = {}
        for c in range(n_classes):
            for j in range(per_class):
                rel = f"{c:03d}.class/{split}_{j}.jpg"
                _image(os.path.join(images, rel), c, size=(6, 5))
                doc[rel] = first_id + c
        with open(os.path.join(root, f"{split}.json"), "w") as f:
            json.dump(doc, f)
    return root


def test_fgvc_cub_reads_vpts_json_splits_with_ids_remapped_to_sorted_labels(tmp_path):
    root = write_fgvc(str(tmp_path / "CUB_200_2011"))
    cfg = from_dict({"model": {"num_classes": 200},
                     "data": {"dataset": "fgvc", "data_dir": root, "img_size": 8, "fgvc": {"task": "CUB"}}})
    train, val, test = (build_dataset(cfg.data, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (400, 200, 200)
    assert epoch_choice(cfg.data) == "val"  # choices on val, test once
    labels = sorted(int(test[i][1]) for i in range(len(test)))
    assert labels == list(range(200))  # ids 1..200 became 0..199
    assert int(test[0][1]) == 0 and test.samples[0][0].endswith(os.path.join("images", "000.class", "test_0.jpg"))
    # The search protocol has no test split: a learning-rate search never reads test.json.
    search = from_dict({"model": {"num_classes": 200}, "data": {**cfg_data(root), "fgvc": {"task": "cub", "protocol": "search"}}})
    os.remove(os.path.join(root, "test.json"))
    assert kind_of(search.data).splits_of(search.data) == ("train", "val")
    assert len(build_dataset(search.data, "val")) == 200
    with pytest.raises(ConfigError, match="data.fgvc.protocol must be one of search, final, got 'test'"):
        from_dict({"data": {**cfg_data(root), "fgvc": {"task": "cub", "protocol": "test"}}})


def cfg_data(root):
    return {"dataset": "fgvc", "data_dir": root, "img_size": 8}


def test_fgvc_refuses_a_wrong_class_count_and_unknown_ids(tmp_path):
    root = write_fgvc(str(tmp_path / "dogs"), task_dir="Images", n_classes=120, first_id=0)
    data = {"dataset": "fgvc", "data_dir": root, "img_size": 8, "fgvc": {"task": "StanfordDogs"}}
    assert len(build_dataset(from_dict({"model": {"num_classes": 120}, "data": data}).data, "val")) == 120
    with pytest.raises(DataError, match=r"train.json: 120 class ids, but cub has 200 classes"):
        build_dataset(from_dict({"data": {**data, "fgvc": {"task": "cub"}}}).data, "train")
    doc = json.load(open(os.path.join(root, "val.json")))
    doc["000.class/val_0.jpg"] = 999
    json.dump(doc, open(os.path.join(root, "val.json"), "w"))
    with pytest.raises(DataError, match="val.json: image 000.class/val_0.jpg has class id 999"):
        build_dataset(from_dict({"data": data}).data, "val")
    with pytest.raises(DataError, match="data.fgvc.task must name the set"):
        num_classes(from_dict({"data": {**data, "fgvc": {}}}).data)


def write_filelist(root, class_map=True):
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        rows = []
        for i in range(n):
            rel = f"jpg/{split} {i}.jpg"  # a space in the path: the label is the last field
            _image(os.path.join(root, rel), i)
            rows.append(f"{rel} {i % 3}")
        with open(os.path.join(root, f"{split}_list.txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
    if class_map:
        with open(os.path.join(root, "label_list.txt"), "w") as f:
            f.write("0 pink primrose\n1 hard-leaved pocket orchid\n2 canterbury bells\n")
    return root


def test_paddleclas_file_lists_with_and_without_a_class_map(tmp_path):
    root = write_filelist(str(tmp_path / "flowers"))
    lists = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt", "class_map": "label_list.txt"}
    cfg = from_dict({"model": {"num_classes": 3},
                     "data": {"dataset": "filelist", "data_dir": root, "img_size": 8, "filelist": lists}})
    assert class_names(cfg.data) == ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]
    assert [len(build_dataset(cfg.data, s)) for s in ("train", "val", "test")] == [6, 3, 3]
    assert epoch_choice(cfg.data) == "val"
    no_val = {k: v for k, v in lists.items() if k not in ("val", "class_map")}
    plain = from_dict({"model": {"num_classes": 3},
                       "data": {"dataset": "filelist", "data_dir": root, "img_size": 8, "filelist": no_val}})
    assert class_names(plain.data) == ["class_0", "class_1", "class_2"] and epoch_choice(plain.data) == "test"
    with open(os.path.join(root, "label_list.txt"), "a") as f:
        f.write("1 twice\n")
    with pytest.raises(DataError, match="label_list.txt:4: class id 1 is named twice"):
        class_names(cfg.data)


def test_fgvc_training_transform_resizes_the_shorter_side_then_crops(tmp_path):
    from adaptformer.data.transforms import build_transforms

    root = write_fgvc(str(tmp_path / "cars"), task_dir="", n_classes=196)
    data = {"dataset": "fgvc", "data_dir": root, "img_size": 8, "fgvc": {"task": "cars"}}
    still = {"random_crop_padding": 0, "hflip": 0.0, "color_jitter_p": 0.0, "rotation": 0}
    cfg = from_dict({"data": {**data, "augment": {**still, "train_resize": 12}}})
    wide = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (20, 1))[..., None].repeat(3, -1))
    out = build_transforms(cfg.data, train=True)(wide)
    assert out.shape == (3, 8, 8)
    # Shorter side 20 -> 12 keeps the aspect (24 x 12): a crop of 8 columns spans a third of the
    # width, where Resize((8, 8)) of the whole image would span all of it.
    spread = out[0, 0].max() - out[0, 0].min()
    whole = build_transforms(from_dict({"data": {**data, "augment": still}}).data, train=True)(wide)
    assert spread < 0.5 * (whole[0, 0].max() - whole[0, 0].min())
    with pytest.raises(ConfigError, match="data.augment.train_resize must be >= data.img_size"):
        from_dict({"data": {"img_size": 16, "augment": {"train_resize": 8, "random_crop_padding": 0}}})


def write_food101(root, names=("apple_pie", "baby_back_ribs", "baklava")):
    os.makedirs(os.path.join(root, "meta"))
    with open(os.path.join(root, "meta", "classes.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    for split, per_class in (("train", 3), ("test", 2)):
        rows = []
        for c, name in enumerate(names):
            for j in range(per_class):
                image_id = f"{split}{c}{j}"
                _image(os.path.join(root, "images", name, image_id + ".jpg"), 30 * c + j)
                rows.append(f"{name}/{image_id}")
        with open(os.path.join(root, "meta", f"{split}.txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return root


def test_food101_reads_its_own_meta_lists(tmp_path):
    root = write_food101(str(tmp_path / "food-101"))
    cfg = from_dict({"model": {"num_classes": 3}, "data": {"dataset": "food101", "data_dir": root, "img_size": 8}})
    assert class_names(cfg.data) == ["apple_pie", "baby_back_ribs", "baklava"]
    train, test = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "test")
    assert (len(train), len(test)) == (9, 6)
    assert [int(test[i][1]) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    with open(os.path.join(root, "meta", "test.txt"), "a") as f:
        f.write("\ncheesecake/1234\n")
    with pytest.raises(DataError, match=r"test.txt:8: expected `<class>/<image id>` with a class of meta/classes.txt"):
        build_dataset(cfg.data, "test")


# ---- SVHN's .mat files ----------------------------------------------------------------------------


def write_svhn(path, labels, x_shape=None, y_name="y"):
    """A .mat file as SVHN ships it: X uint8 [32, 32, 3, N], y double [N, 1] with 10 for the digit 0;
    image i is a uniform grey of 20 * its label."""
    sio = pytest.importorskip("scipy.io")
    labels = np.asarray(labels)
    x = np.zeros((32, 32, 3, len(labels)), np.uint8) + (20 * (labels % 10)).astype(np.uint8)
    sio.savemat(str(path), {"X": x if x_shape is None else np.zeros(x_shape, np.uint8),
                            y_name: labels.reshape(-1, 1).astype(np.float64)})


def test_svhn_reads_its_mat_files_with_10_as_the_digit_0(tmp_path):
    write_svhn(tmp_path / "train_32x32.mat", [1, 10, 3, 10, 5])
    write_svhn(tmp_path / "test_32x32.mat", [10, 2])
    data = from_dict({"model": {"num_classes": 10}, "data": {"dataset": "svhn", "data_dir": str(tmp_path),
                                                             "mean": [0.0] * 3, "std": [1.0] * 3}}).data
    train, test = build_dataset(data, "train"), build_dataset(data, "test")
    assert len(train) == 5 and len(test) == 2 and class_names(data) == [str(d) for d in range(10)]
    assert [int(train[i][1]) for i in range(5)] == [1, 0, 3, 0, 5]  # 10 is the digit 0
    image, label = test[1]  # the evaluation transform: the pixels as they are
    assert int(label) == 2 and image.shape == (3, 32, 32) and np.allclose(image, 40 / 255, atol=1e-6)
    subset = from_dict({"model": {"num_classes": 2}, "data": {"dataset": "svhn", "data_dir": str(tmp_path),
                                                              "classes": [5, 0]}}).data
    assert [int(build_dataset(subset, "train")[i][1]) for i in range(3)] == [1, 1, 0]  # digits 0, 0, 5


@pytest.mark.parametrize("write, message", [
    (lambda p: p.write_bytes(b"not a mat file at all" * 10), "not a MATLAB file"),
    (lambda p: write_svhn(p, [1, 2], y_name="labels"), r"holds \['X', 'labels'\]; expected SVHN's variables X and y"),
    (lambda p: write_svhn(p, [1, 2], x_shape=(28, 28, 3, 2)), r"X is uint8 \[28, 28, 3, 2\]; expected uint8 \[32, 32, 3, N\]"),
    (lambda p: write_svhn(p, [1, 11]), "label 11 is outside SVHN's 1-10"),
])
def test_a_bad_svhn_file_is_one_line(tmp_path, write, message):
    write(tmp_path / "train_32x32.mat")
    data = from_dict({"model": {"num_classes": 10}, "data": {"dataset": "svhn", "data_dir": str(tmp_path)}}).data
    with pytest.raises(DataError, match=message):
        build_dataset(data, "train")
