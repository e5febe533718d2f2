"""A benchmark suite as a user runs it: tools/train.py on a suite file over tasks in VTAB-1k's
layout the test writes, with the choice on val200 and the final run on train800val200."""
import json
import os
import sys

import paddle
import pytest
import yaml
from PIL import Image

from conftest import ROOT, TINY_MODEL, run_tool

TRAIN = os.path.join(ROOT, "tools", "train.py")
COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220)]


def write_task(root, n_classes, sizes=(("train800", 12), ("val200", 6), ("test", 6))):
    lines = {}
    for name, n in sizes:
        lines[name] = []
        for i in range(n):
            rel = f"images/{name}/{i:06d}.png"
            os.makedirs(os.path.join(root, "images", name), exist_ok=True)
            Image.new("RGB", (20, 20), COLOURS[i % n_classes]).save(os.path.join(root, rel))
            lines[name].append(f"{rel} {i % n_classes}")
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for name, rows in lines.items():
        with open(os.path.join(root, f"{name}.txt"), "w") as f:
            f.write("\n".join(rows) + "\n")


@pytest.fixture
def suite(tmp_path):
    from adaptformer.models import create_model
    from adaptformer.weights.checkpoint import save_state

    paddle.seed(0)
    backbone = str(tmp_path / "backbone.pdparams")
    save_state(create_model(TINY_MODEL["name"], num_classes=0, **TINY_MODEL["kwargs"]).state_dict(), backbone)
    write_task(str(tmp_path / "vtab" / "camelyon"), 2)  # an alias folder of patch_camelyon
    write_task(str(tmp_path / "vtab" / "shapes"), 3)
    base = {"model": {**TINY_MODEL, "pretrained": backbone, "reset_head": True},
            "data": {"dataset": "vtab", "img_size": 32, "batch_size": 6, "num_workers": 0,
                     "augment": {"random_crop_padding": 0, "hflip": 0.0, "color_jitter_p": 0.0, "rotation": 0}},
            "optimizer": {"name": "momentum", "lr": 0.05}, "scheduler": {"name": "cosine", "warmup_steps": 1},
            "train": {"epochs": 2, "log_every": 100}}
    (tmp_path / "_base_.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "adaptformer.yaml").write_text(yaml.safe_dump(
        {"_base_": "_base_.yaml", "method": {"name": "adaptformer", "adaptformer": {"bottleneck": 4, "dropout": 0.0}}}))
    (tmp_path / "linear.yaml").write_text(yaml.safe_dump({"_base_": "_base_.yaml", "method": {"name": "linear"}}))
    spec = {"suite": {
        "name": "mini", "output_dir": str(tmp_path / "out"), "data_root": str(tmp_path / "vtab"),
        "tasks": ["patch_camelyon", {"name": "shapes", "num_classes": 3, "group": "structured"}],
        "methods": [{"name": "adaptformer", "config": "adaptformer.yaml"}, {"name": "linear", "config": "linear.yaml"}],
        "sweep": {"key": "optimizer.lr", "values": [0.01, 0.1]}, "seeds": [0], "compare": [["adaptformer", "linear"]]}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_suite_chooses_on_val200_runs_final_and_serves_every_task_from_one_bank(suite, tmp_path):
    r = run_tool([sys.executable, TRAIN, "-c", str(suite)])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    out = tmp_path / "out"
    for task, n_test in (("patch_camelyon", 6), ("shapes", 6)):
        for method in ("adaptformer", "linear"):
            for lr in (0.01, 0.1):  # the choice runs: search protocol, the epoch chosen on val200
                run = out / task / method / "sweep" / f"optimizer.lr={lr}"
                summary = json.loads((run / "summary.json").read_text())
                assert summary["selected_on"] == "val"
                assert summary["test_top1"] is None and not (run / "test_predictions.json").exists()
                assert yaml.safe_load((run / "config.yaml").read_text())["data"]["vtab"]["protocol"] == "search"
            final = out / task / method / "seed0"
            summary = json.loads((final / "summary.json").read_text())
            assert summary["selected_on"] == "last" and summary["best_epoch"] == 2 and summary["test_images"] == n_test
            config = yaml.safe_load((final / "config.yaml").read_text())
            assert config["data"]["vtab"]["protocol"] == "final"  # train800val200
            assert (out / task / "sweep.csv").read_text().count(f"{method},optimizer.lr,") == 2
    table = [[c.strip() for c in line.strip(" |").split("|")]
             for line in (out / "suite.md").read_text().splitlines() if line.startswith("| task |")
             or (line.startswith("| ") and "---" not in line)]
    header = table[0]
    rows = {r[0]: dict(zip(header, r)) for r in table[1:] if len(r) == len(header)}
    assert {"patch_camelyon", "shapes", "specialized mean", "structured mean", "mean over tasks"} <= set(rows)
    assert rows["patch_camelyon"]["adaptformer (V-PETL)"] == "83.0"  # V-PETL Bench's AdaptFormer on that task
    assert rows["shapes"]["adaptformer (V-PETL)"] == "-"  # a task of one's own has no published figure
    assert rows["structured mean"]["group"] == "1 task" and rows["structured mean"]["classes"] == ""
    assert rows["mean over tasks"]["linear (V-PETL)"] == "-"  # the published mean is over all 19 tasks
    suite_json = json.loads((out / "suite.json").read_text())
    for method in ("adaptformer", "linear"):
        bank = suite_json["taskbank"][method]
        assert bank["tasks"] == 2 and bank["max_abs_logit_difference"] < 1e-5 and bank["tuned_bytes"] > 0
    # The mean over tasks is the mean of the two tasks' test top-1.
    tops = [json.loads((out / t / "adaptformer" / "seed0" / "summary.json").read_text())["test_top1"]
            for t in ("patch_camelyon", "shapes")]
    assert rows["mean over tasks"]["adaptformer top-1 %"] == f"{100 * sum(tops) / 2:.1f}"

    compared = json.loads((out / "suite_comparisons.json").read_text())
    assert [c["pair"] for c in compared] == ["adaptformer − linear"] and compared[0]["images"] == 12
    assert (out / "suite.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = run_tool([sys.executable, TRAIN, "-c", str(suite), "--resume"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already finished") == 12  # 2 tasks x 2 methods x (2 choices + 1 final)


def test_a_suite_with_a_missing_task_folder_is_one_line_before_any_run(suite, tmp_path):
    r = run_tool([sys.executable, TRAIN, "-c", str(suite), "-o", "suite.tasks=[dtd,patch_camelyon]"])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith("has no folder for dtd; pass -o suite.tasks=[...] to run the others")
    assert not (tmp_path / "out").exists()
    os.remove(tmp_path / "vtab" / "shapes" / "images" / "test" / "000003.png")  # read by the final runs only
    r = run_tool([sys.executable, TRAIN, "-c", str(suite)])
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith("000003.png does not exist")
    assert not (tmp_path / "out").exists()
    r = run_tool([sys.executable, TRAIN, "-c", str(suite), "-o", "data.data_dir=/x"])
    assert r.returncode == 2 and "a study sets data.data_dir per run" in r.stderr


def test_the_suite_table_means_over_groups_and_tasks_and_shows_published_means_for_all_19(tmp_path):
    from types import SimpleNamespace

    from adaptformer.data.kinds.vtab import GROUPS, TASKS
    from adaptformer.study.benchmarks import VTAB
    from adaptformer.study.suite import Task
    from adaptformer.study.suite_report import write_suite_report

    tasks = [Task(name, "", n, VTAB.groups[name], False) for name, n in TASKS.items()]
    top = {name: 0.5 + 0.01 * i for i, name in enumerate(TASKS)}
    results = {name: {"adaptformer": [{"test_top1": top[name] - 0.02, "trainable_params": 7},
                                      {"test_top1": top[name] + 0.02, "trainable_params": 7}]} for name in TASKS}
    suite = SimpleNamespace(name="s", output_dir=str(tmp_path), seeds=[0, 1], methods=[SimpleNamespace(name="adaptformer")],
                            sweep=SimpleNamespace(key=None, values=[]), compare=[])
    write_suite_report(suite, VTAB, tasks, results, {"adaptformer": None})
    lines = (tmp_path / "suite.md").read_text().splitlines()
    row = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines if line.startswith("| ")}
    assert row["dtd"][2] == f"{100 * top['dtd']:.1f} ± {100 * 0.02 * 2 ** 0.5:.1f}"  # mean ± sample sd of two seeds
    natural = [top[t] for t in GROUPS["natural"]]
    assert row["natural mean"][2] == f"{100 * sum(natural) / 7:.1f}"
    assert row["mean over tasks"][2] == f"{100 * sum(top.values()) / 19:.1f}" and row["mean over tasks"][3] == "72.3"
    assert row["natural mean"][3] == "-"  # V-PETL's group means are not quoted: only its tasks' and overall figures
    csv = (tmp_path / "suite.csv").read_text().splitlines()
    assert csv[0] == "task,group,classes,adaptformer_top1,adaptformer_trainable_params" and len(csv) == 1 + 19 + 3 + 1


def test_tasks_of_ones_own_named_like_vtab_tasks_get_no_published_figures(tmp_path):
    """The miniature's dsprites_loc is not VTAB-1k's: with only tasks of one's own, no V-PETL column."""
    from types import SimpleNamespace

    from adaptformer.study.benchmarks import VTAB
    from adaptformer.study.suite import Task
    from adaptformer.study.suite_report import write_suite_report

    tasks = [Task("dsprites_loc", "", 16, "structured", True), Task("digits", "", 10, "far", True)]
    results = {t.name: {"adaptformer": [{"test_top1": 0.5, "trainable_params": 7}]} for t in tasks}
    suite = SimpleNamespace(name="s", output_dir=str(tmp_path), seeds=[0], methods=[SimpleNamespace(name="adaptformer")],
                            sweep=SimpleNamespace(key=None, values=[]), compare=[])
    write_suite_report(suite, VTAB, tasks, results, {"adaptformer": None})
    text = (tmp_path / "suite.md").read_text()
    assert "V-PETL)" not in text.split("| task |", 1)[1].split("\n", 1)[0] and "76.3" not in text


def test_suite_comparisons_pair_images_within_tasks_and_weigh_tasks_equally(tmp_path):
    """Two tasks of different sizes: the difference is the mean of the two tasks' differences (not
    of the pooled images), McNemar counts pool the images, and the interval holds the difference."""
    from adaptformer.study.suite import Task
    from adaptformer.study.suite_report import comparison_rows

    def preds(labels, right):
        return {"labels": labels, "best": [y if ok else (y + 1) % 3 for y, ok in zip(labels, right)]}

    big, small = [0, 1, 2] * 100, [0, 1, 2] * 10  # 300 and 30 test images
    a_big = [True] * 300
    b_big = [i % 10 != 0 for i in range(300)]  # A is right on 30 images more: +10 points
    a_small = [i % 2 == 0 for i in range(30)]
    b_small = [True] * 30  # B is right on 15 images more: -50 points for A
    predictions = {"t1": {"a": [preds(big, a_big)], "b": [preds(big, b_big)]},
                   "t2": {"a": [preds(small, a_small)], "b": [preds(small, b_small)]}}
    tasks = [Task("t1", "", 3, "natural", True), Task("t2", "", 3, "natural", True)]
    (row,) = comparison_rows([["a", "b"]], tasks, predictions)
    assert abs(row["per_task"]["t1"] - 10.0) < 1e-9 and abs(row["per_task"]["t2"] + 50.0) < 1e-9
    assert abs(row["diff"] - (10.0 - 50.0) / 2) < 1e-9  # tasks weigh equally; pooled it would be +4.5
    assert row["mcnemar"].startswith("30/15 ")  # only A right / only B right over both tasks' images
    assert row["ci_low"] < row["diff"] < row["ci_high"] and row["images"] == 330


def test_an_fgvc_suite_finds_the_sets_as_distributed_chooses_on_val_and_tests_once(tmp_path):
    from adaptformer.models import create_model
    from adaptformer.weights.checkpoint import save_state
    from test_benchmark_datasets import write_fgvc

    paddle.seed(0)
    backbone = str(tmp_path / "backbone.pdparams")
    save_state(create_model(TINY_MODEL["name"], num_classes=0, **TINY_MODEL["kwargs"]).state_dict(), backbone)
    write_fgvc(str(tmp_path / "fgvc" / "OxfordFlower"), task_dir="", n_classes=102)  # folder names as distributed
    write_fgvc(str(tmp_path / "fgvc" / "Stanford-dogs"), task_dir="Images", n_classes=120, first_id=0)
    base = {"model": {**TINY_MODEL, "pretrained": backbone, "reset_head": True},
            "data": {"dataset": "fgvc", "img_size": 32, "batch_size": 64, "num_workers": 0,
                     "augment": {"random_crop_padding": 0, "hflip": 0.0, "color_jitter_p": 0.0, "rotation": 0}},
            "method": {"name": "adaptformer", "adaptformer": {"bottleneck": 4, "dropout": 0.0}},
            "optimizer": {"name": "momentum", "lr": 0.05}, "scheduler": {"name": "cosine"},
            "train": {"epochs": 2, "log_every": 100}}
    (tmp_path / "adaptformer.yaml").write_text(yaml.safe_dump(base))
    spec = {"suite": {"name": "fg", "benchmark": "fgvc", "output_dir": str(tmp_path / "out"),
                      "data_root": str(tmp_path / "fgvc"), "tasks": ["flowers", "stanford_dogs"],
                      "methods": [{"name": "adaptformer", "config": "adaptformer.yaml"}],
                      "sweep": {"key": "optimizer.lr", "values": [0.01, 0.1]}, "seeds": [0]}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(spec))
    r = run_tool([sys.executable, TRAIN, "-c", str(tmp_path / "suite.yaml")])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    out = tmp_path / "out"
    for task, classes in (("oxford_flowers", 102), ("stanford_dogs", 120)):
        for lr in (0.01, 0.1):  # the search runs read train.json and val.json, never test.json
            run = out / task / "adaptformer" / "sweep" / f"optimizer.lr={lr}"
            summary = json.loads((run / "summary.json").read_text())
            assert summary["selected_on"] == "val" and summary["test_top1"] is None
            assert yaml.safe_load((run / "config.yaml").read_text())["data"]["fgvc"]["protocol"] == "search"
        final = out / task / "adaptformer" / "seed0"
        summary = json.loads((final / "summary.json").read_text())
        assert summary["selected_on"] == "val" and summary["test_images"] == classes  # one test image a class
        config = yaml.safe_load((final / "config.yaml").read_text())
        assert config["data"]["fgvc"] == {"task": task, "protocol": "final"} and config["model"]["num_classes"] == classes
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in (out / "suite.md").read_text().splitlines() if line.startswith("| ")}
    assert rows["oxford_flowers"][0] == "fine-grained" and rows["oxford_flowers"][3] == "99.2"  # V-PETL's figure
    assert rows["mean over tasks"][3] == "-"  # V-PETL's FGVC mean is over all five sets
    assert "FGVC: test top-1 of the final runs (train.json, the epoch chosen on val.json" in (out / "suite.md").read_text()
    assert json.loads((out / "suite.json").read_text())["taskbank"]["adaptformer"]["tasks"] == 2
