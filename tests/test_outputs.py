"""A run's output folder: nothing of an earlier run lost, one writer at a time, durable and
tidy atomic writes, metrics.jsonl that survives a crash."""
import json
import os
import shutil
import socket
import stat

import pytest

from adaptformer.config import ConfigError, load_config
from adaptformer.engine import train
from adaptformer.engine.logger import RunLogger, read_records
from adaptformer.files.run_folder import LOCK, acquire_lock, record_written, release_lock
from adaptformer.engine.trainer import BEST, LAST
from adaptformer.errors import OutputError
from adaptformer.files.atomic import atomic_write, atomic_write_text, remove_stale_temp_files, staged_folder


def test_a_staged_folder_appears_whole_or_not_at_all_and_never_over_an_existing_one(tmp_path):
    with staged_folder(str(tmp_path / "data")) as staging:
        (tmp_path / "data").exists() and pytest.fail("the folder appeared before it was complete")
        open(os.path.join(staging, "a.txt"), "w").write("a")
    assert os.listdir(tmp_path) == ["data"] and (tmp_path / "data" / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError):
        with staged_folder(str(tmp_path / "other")) as staging:
            os.makedirs(os.path.join(staging, "sub"))
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == ["data"]
    with pytest.raises(OutputError, match="data exists already"):
        with staged_folder(str(tmp_path / "data")):
            pass
    assert os.listdir(tmp_path / "data") == ["a.txt"]


def test_atomic_write_gives_the_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(str(tmp_path / "a.txt"), "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o644


def test_a_full_disk_is_one_line_and_leaves_the_old_file(tmp_path):
    target = tmp_path / "last.pdckpt"
    target.write_bytes(b"old")

    def no_space(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"last.pdckpt: cannot write, the disk or file size limit is full") as e:
        atomic_write(str(target), no_space)
    assert "\n" not in str(e.value) and target.read_bytes() == b"old" and os.listdir(tmp_path) == ["last.pdckpt"]


def test_temporary_files_of_a_killed_run_are_removed_but_nothing_else(tmp_path):
    for name in (".last.pdckpt.ab12_xYz.tmp", "notes.tmp", ".hidden", "best.pdparams"):
        (tmp_path / name).write_text("")
    assert remove_stale_temp_files(str(tmp_path)) == [".last.pdckpt.ab12_xYz.tmp"]
    assert sorted(os.listdir(tmp_path)) == [".hidden", "best.pdparams", "notes.tmp"]


def test_a_torn_last_line_is_dropped_and_the_file_rewritten_whole(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 1}) + "\n" + json.dumps({"epoch": 2}) + "\n" + '{"epoch": 3, "tr')
    assert read_records(str(path)) == [{"epoch": 1}, {"epoch": 2}]
    logger = RunLogger(str(tmp_path))
    logger.truncate_records(1)
    logger.record({"epoch": 2, "again": True})
    assert read_records(str(path)) == [{"epoch": 1}, {"epoch": 2, "again": True}]
    assert path.read_text().endswith("\n")


def test_overwrite_replaces_files_only_as_the_new_run_writes_them(tiny_config, monkeypatch):
    path = tiny_config(train={"epochs": 1})
    cfg = load_config(path)
    out = cfg.train.output_dir
    train(cfg)
    record_written(out, "best_test_eval.json")  # as tools/eval.py does: the new run never writes it
    with open(os.path.join(out, "best_test_eval.json"), "w") as f:
        f.write("{}")
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("the user's own file")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg)
    old_best = os.stat(os.path.join(out, BEST)).st_ino
    seen_at_first_epoch = {}
    from adaptformer.engine.trainer import Trainer

    original = Trainer.train_one_epoch

    def look_then_train(self, epoch):
        seen_at_first_epoch.update(best_inode=os.stat(os.path.join(out, BEST)).st_ino,
                                   files=sorted(os.listdir(out)))
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", look_then_train)
    train(cfg, overwrite=True)
    assert seen_at_first_epoch["best_inode"] == old_best  # still the earlier run's, until replaced
    assert "best_test_eval.json" in seen_at_first_epoch["files"]
    assert os.stat(os.path.join(out, BEST)).st_ino != old_best
    assert "best_test_eval.json" not in os.listdir(out) and LOCK not in os.listdir(out)  # removed once finished
    assert (open(os.path.join(out, "notes.txt")).read() == "the user's own file")  # no run wrote it: kept
    assert len(os.listdir(os.path.join(out, "vdl"))) == 1  # the earlier VisualDL log went too
    assert [r["epoch"] for r in read_records(os.path.join(out, "metrics.jsonl"))] == [1]


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, capsys):
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)  # a process id that no longer runs
    (tmp_path / LOCK).write_text(f"{child} {socket.gethostname()}\n")
    acquire_lock(str(tmp_path))
    assert f"left by process {child}, which is no longer running" in capsys.readouterr().out
    assert (tmp_path / LOCK).read_text().split()[0] == str(os.getpid())
    release_lock(str(tmp_path))
    assert not (tmp_path / LOCK).exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    (tmp_path / LOCK).write_text("1 some-other-host\n")
    with pytest.raises(ConfigError, match="in use by process 1 on some-other-host"):
        acquire_lock(str(tmp_path))


def test_a_refused_resume_releases_the_lock_and_keeps_the_checkpoint(tiny_config):
    cfg = load_config(tiny_config(train={"epochs": 1}))
    train(cfg)
    more = load_config(tiny_config(train={"epochs": 2}))  # same output folder, another config
    with pytest.raises(ConfigError, match="another config"):
        train(more, resume=True)
    assert LOCK not in os.listdir(cfg.train.output_dir)
    assert os.path.exists(os.path.join(cfg.train.output_dir, LAST))


def test_a_moved_run_folder_resumes_from_where_it_is_now(tiny_config, tmp_path):
    cfg = load_config(tiny_config(train={"epochs": 1}))
    train(cfg)
    moved = str(tmp_path / "moved")
    shutil.move(cfg.train.output_dir, moved)
    again = load_config(tiny_config(train={"epochs": 1}), [f"train.output_dir={moved}"])
    assert train(again, resume=True)["best_epoch"] == 1
    assert load_config(os.path.join(moved, "config.yaml")).train.output_dir == moved
    with pytest.raises(ConfigError, match="another config"):
        train(load_config(tiny_config(train={"epochs": 1}), [f"train.output_dir={moved}", "optimizer.lr=0.5"]),
              resume=True)


def test_a_run_saved_before_a_key_existed_resumes_with_that_key_at_its_default(tiny_config):
    cfg = load_config(tiny_config(train={"epochs": 1}))
    train(cfg)
    saved = os.path.join(cfg.train.output_dir, "config.yaml")
    text = open(saved, encoding="utf-8").read()
    assert "  figures: false\n" in text
    with open(saved, "w", encoding="utf-8") as f:  # as written before train.figures was added
        f.write(text.replace("  figures: false\n", ""))
    assert train(cfg, resume=True)["best_epoch"] == 1
    with pytest.raises(ConfigError, match="another config"):
        train(load_config(tiny_config(train={"epochs": 1, "figures": True})), resume=True)
