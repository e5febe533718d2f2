import json
import os
import subprocess
import sys

import numpy as np
import paddle
import conftest
import pytest

from adaptformer.config import load_config
from adaptformer.engine import evaluate, train
from adaptformer.engine.trainer import BEST, LAST, Trainer
from conftest import ROOT, run_tool

TRAIN = os.path.join(ROOT, "tools", "train.py")
EVAL = os.path.join(ROOT, "tools", "eval.py")
from cifar_archive import write_cifar_archive


def records(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def weights(path):
    state = paddle.load(path)
    state = state.get("model", state)
    return {k: np.asarray(v) for k, v in state.items()}


def test_training_learns_and_writes_every_output(tiny_config):
    cfg = load_config(tiny_config(train={"epochs": 3}))
    summary = train(cfg)
    out = cfg.train.output_dir
    recs = records(out)
    assert [r["epoch"] for r in recs] == [1, 2, 3]
    assert recs[-1]["train_loss"] < recs[0]["train_loss"]
    assert summary["best_top1"] > 0.5  # 4 learnable synthetic classes; chance is 0.25
    assert recs[-1]["eval_num_samples"] == 24
    for name in ("config.yaml", "summary.json", LAST, BEST):
        assert os.path.isfile(os.path.join(out, name)), name
    assert any(f.startswith("vdlrecords") for f in os.listdir(os.path.join(out, "vdl")))
    assert load_config(os.path.join(out, "config.yaml")) == cfg


def test_learning_rate_warms_up_then_decays_per_step(tiny_config):
    cfg = load_config(tiny_config(scheduler={"name": "cosine", "warmup_steps": 3, "warmup_start_lr": 0.0}))
    from adaptformer.engine import build_loaders, build_model

    model = build_model(cfg)
    loader, eval_loader, names = build_loaders(cfg)
    t = Trainer(cfg, model, loader, eval_loader, names)
    lrs = []
    for _ in range(t.steps_per_epoch * cfg.train.epochs):
        lrs.append(t.optimizer.get_lr())
        t.scheduler.step()
    assert lrs[0] == 0.0 and lrs[3] == pytest.approx(0.05)
    assert lrs[1] < lrs[2] < lrs[3] and lrs[3] > lrs[5] > lrs[-1] > 0


@pytest.mark.parametrize("transfer", [False, True], ids=["from-scratch", "pretrained-new-head-adamw"])
def test_resume_reproduces_the_uninterrupted_run_exactly(tiny_config, monkeypatch, tmp_path, transfer):
    """A transfer run replaces the pretrained head before the adapters are made, its resumed run does
    not: the optimizer's moments must still reach the parameters they belong to."""
    sections = dict(train={"epochs": 3}, method={"name": "adaptformer", "adaptformer": {"bottleneck": 4, "dropout": 0.2}})
    if transfer:
        from adaptformer.models import create_model
        from adaptformer.weights.checkpoint import save_state

        paddle.seed(1)
        backbone = str(tmp_path / "backbone.pdparams")
        save_state(create_model(conftest.TINY_MODEL["name"], num_classes=7, **conftest.TINY_MODEL["kwargs"]).state_dict(),
                   backbone)
        sections.update(model={**conftest.TINY_MODEL, "num_classes": 4, "pretrained": backbone, "reset_head": True},
                        optimizer={"name": "adamw", "lr": 0.01})
    straight = load_config(tiny_config("straight", **sections))
    train(straight)

    interrupted = load_config(tiny_config("interrupted", **sections))
    original = conftest.crash_in_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted)
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    assert [r["epoch"] for r in records(interrupted.train.output_dir)] == [1, 2]
    train(interrupted, resume=True)

    a = weights(os.path.join(straight.train.output_dir, LAST))
    b = weights(os.path.join(interrupted.train.output_dir, LAST))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rs]  # noqa: E731
    assert strip(records(straight.train.output_dir)) == strip(records(interrupted.train.output_dir))


def test_resume_refuses_a_changed_config(tiny_config):
    path = tiny_config(train={"epochs": 1})
    train(load_config(path))
    from adaptformer.config import ConfigError

    with pytest.raises(ConfigError, match="another config"):
        train(load_config(path, ["optimizer.lr=0.5"]), resume=True)


def test_cli_train_from_a_real_format_archive_then_eval(tmp_path, tiny_config):
    archive = write_cifar_archive(str(tmp_path / "cifar-10-python.tar.gz"), "cifar10", train_per_class=6, test_per_class=3)
    cfg = tiny_config(
        "cifar",
        model={"num_classes": 3},
        data={"dataset": "cifar10", "data_file": archive, "classes": [2, 7, 9]},
        train={"epochs": 1},
    )
    r = run_tool([sys.executable, TRAIN, "-c", cfg, "-o", "optimizer.lr=0.02"])
    assert r.returncode == 0, r.stderr[-2000:]
    out = str(tmp_path / "cifar" / "out")
    assert records(out)[0]["eval_num_samples"] == 9
    e = run_tool([sys.executable, EVAL, "--checkpoint", os.path.join(out, BEST)])
    assert e.returncode == 0, e.stderr[-2000:]
    result = json.load(open(os.path.join(out, "best_test_eval.json")))
    assert result["class_names"] == ["bird", "horse", "truck"]
    assert np.array(result["confusion_matrix"]).sum() == 9
    assert result["top1"] == pytest.approx(records(out)[0]["eval_top1"])
    assert set(result["per_class_accuracy"]) == {"bird", "horse", "truck"}


def test_cli_errors_are_one_line(tmp_path, tiny_config):
    cases = [
        ([sys.executable, TRAIN, "-c", tiny_config(), "-o", "train.epoch=2"], "unknown key 'train.epoch'"),
        ([sys.executable, TRAIN, "-c", os.path.join(ROOT, "configs", "cifar10_frozen.yaml")],
         "model.pretrained: output/cifar100_pretrain/best.pdparams does not exist"),
        ([sys.executable, TRAIN, "-c", tiny_config(data={"dataset": "cifar10", "data_file": "/no/such.tar.gz"})],
         "/no/such.tar.gz"),
        ([sys.executable, EVAL], "no trained run under"),
    ]
    for args, message in cases:
        r = run_tool(args, cwd=str(tmp_path))
        assert r.returncode == 2, r.stderr[-2000:]
        assert message in r.stderr
        assert "Traceback" not in r.stderr
        assert len([line for line in r.stderr.splitlines() if line.startswith("error:")]) == 1
    # A rejected start leaves no output folder behind.
    assert not os.path.exists(tmp_path / "output" / "cifar10_frozen")


def test_study_chains_stages_and_writes_results(tmp_path, tiny_config):
    pre = tiny_config("pre", method={"name": "full"}, train={"epochs": 1})
    frozen = tiny_config("frozen", train={"epochs": 1})
    linear = tiny_config("linear", method={"name": "linear"}, train={"epochs": 1})
    study = tmp_path / "study.yaml"
    import yaml

    study.write_text(yaml.safe_dump({"study": {"name": "s", "output_dir": str(tmp_path / "study_out"), "stages": [
        {"name": "pre", "config": os.path.basename(pre)},
        {"name": "frozen", "config": os.path.basename(frozen), "pretrained_from": "pre"},
        {"name": "linear", "config": os.path.basename(linear), "pretrained_from": "pre"},
    ]}}))
    r = run_tool([sys.executable, TRAIN, "-c", str(study), "-o", "data.synthetic_train_size=32"])
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "study_out"
    table = (out / "results.md").read_text().splitlines()
    assert [row.split("|")[1].strip() for row in table[2:]] == ["pre", "frozen", "linear"]
    # Both transfer stages load pre's checkpoint whole: same class count, so the head is loaded too.
    pre_best = os.path.join(str(out), "pre", BEST)
    assert r.stdout.count(f"tensors from {pre_best} (pdparams, paddle layout)") == 2, r.stdout[-3000:]
    assert "re-initialised (head)" not in r.stdout  # what load_pretrained reports for a fresh head
    csv_rows = (out / "results.csv").read_text().splitlines()
    assert csv_rows[0].startswith("stage,method,trainable_params")
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "accuracy_vs_params.png").read_bytes()[:4] == b"\x89PNG"
    assert csv_rows[0].endswith(",peak_memory_mb")
    assert all(float(line.split(",")[-1]) > 50 for line in csv_rows[1:])  # MB: at least the Python + Paddle process
    trainable = {line.split(",")[0]: int(line.split(",")[2]) for line in csv_rows[1:]}
    assert trainable["linear"] < trainable["frozen"] < trainable["pre"]
    # --resume skips finished stages.
    again = run_tool([sys.executable, TRAIN, "-c", str(study), "-o", "data.synthetic_train_size=32", "--resume"])
    assert again.returncode == 0 and again.stdout.count("already finished") == 3


def test_two_process_launch_matches_single_process_eval(tmp_path, tiny_config):
    cfg = tiny_config("dist", train={"epochs": 2})
    r = run_tool([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                  "--log_dir", str(tmp_path / "log"), TRAIN, "-c", cfg])
    logs = "".join(open(os.path.join(tmp_path, "log", f)).read() for f in sorted(os.listdir(tmp_path / "log")))
    assert r.returncode == 0, logs[-3000:]
    out = str(tmp_path / "dist" / "out")
    recs = records(out)
    assert [x["epoch"] for x in recs] == [1, 2]  # rank 0 alone wrote the records
    assert all(x["eval_num_samples"] == 24 for x in recs)  # the two shards were summed
    best = max(recs, key=lambda x: x["eval_top1"])
    single = evaluate(load_config(os.path.join(out, "config.yaml")), os.path.join(out, BEST))
    assert single["top1"] == pytest.approx(best["eval_top1"], abs=1e-9)
    assert {"workerlog.0", "workerlog.1"} <= set(os.listdir(tmp_path / "log"))


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_node_launch_trains_the_same_weights_as_one_process_with_the_global_batch(tmp_path, tiny_config):
    """Two launchers (--nnodes 2, master on 127.0.0.1, gloo on CPU) with batch 8 each step through
    the same 16 images per step as one process with batch 16, so every update must agree up to
    the float32 rounding of summing two half-batch gradients. Augmentation is off: its random
    draws are seeded per rank (different crops per process are what one wants), so with it on
    the two runs see different images."""
    no_augment = {"random_crop_padding": 0, "hflip": 0.0, "color_jitter_p": 0.0, "rotation": 0.0}
    two = tiny_config("two", data={"batch_size": 8, "augment": no_augment})
    one = tiny_config("one", data={"batch_size": 16, "augment": no_augment})
    master = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, PYTHONPATH=ROOT)
    launchers = [subprocess.Popen([sys.executable, "-m", "paddle.distributed.launch", "--nnodes", "2",
                                   "--master", master, "--rank", str(rank), "--nproc_per_node", "1",
                                   "--log_dir", str(tmp_path / f"log{rank}"), TRAIN, "-c", two],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in (0, 1)]
    try:
        outputs = [p.communicate(timeout=300)[0] for p in launchers]
    finally:
        for p in launchers:
            if p.poll() is None:
                p.kill()
    logs = "".join(open(os.path.join(tmp_path, f"log{r}", "workerlog.0")).read() for r in (0, 1)
                   if os.path.isfile(os.path.join(tmp_path, f"log{r}", "workerlog.0")))
    assert [p.returncode for p in launchers] == [0, 0], (outputs[0][-1500:], logs[-3000:])
    r = run_tool([sys.executable, TRAIN, "-c", one])
    assert r.returncode == 0, r.stderr[-2000:]
    out_two, out_one = (str(tmp_path / name / "out") for name in ("two", "one"))
    assert [x["epoch"] for x in records(out_two)] == [1, 2]  # only the master's rank 0 wrote records
    for name in (BEST, LAST):  # after epoch 1 (best on this data) and after the last step
        a, b = weights(os.path.join(out_two, name)), weights(os.path.join(out_one, name))
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=f"{name}: {key}")
    for x, y in zip(records(out_two), records(out_one)):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-6)  # the loss averaged over both nodes
        assert x["eval_num_samples"] == y["eval_num_samples"] == 24


def test_reset_head_starts_a_new_head_on_a_loaded_backbone(tmp_path, tiny_config):
    from adaptformer.weights.checkpoint import save_state
    from adaptformer.engine import build_model

    pre = build_model(load_config(tiny_config("pre", method={"name": "full"})))
    path = str(tmp_path / "pre.pdparams")
    save_state(pre.state_dict(), path)
    kept = build_model(load_config(tiny_config("kept", model={"pretrained": path})))
    fresh = build_model(load_config(tiny_config("fresh", model={"pretrained": path, "reset_head": True})))
    for m in (kept, fresh):
        np.testing.assert_array_equal(m.blocks[0].attn.qkv.weight.numpy(), pre.blocks[0].attn.qkv.weight.numpy())
    np.testing.assert_array_equal(kept.head.weight.numpy(), pre.head.weight.numpy())
    assert not np.array_equal(fresh.head.weight.numpy(), pre.head.weight.numpy())
    assert not fresh.head.weight.stop_gradient  # the method ran after the reset: the new head trains
