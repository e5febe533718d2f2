"""Real CIFAR-10 images (../shared/data, the project's development subset). Slow: run with
    python -m pytest -m slow
"""
import json
import os
import sys

import pytest

from conftest import ROOT, run_tool
from test_engine import TRAIN, records

ARCHIVE = os.path.join(ROOT, "..", "shared", "data", "cifar10-subset", "cifar-10-python.tar.gz")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.isfile(ARCHIVE), reason="needs ../shared/data/cifar10-subset"),
]


def test_frozen_transfer_on_real_images_beats_chance(tmp_path):
    out = tmp_path / "pre"
    base = ["-o", f"data.data_file={ARCHIVE}", "-o", "data.num_workers=0"]
    r = run_tool([sys.executable, TRAIN, "-c", "configs/cpu/pretrain_first5.yaml", *base,
                  "-o", "train.epochs=2", "-o", f"train.output_dir={out}"])
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_tool([sys.executable, TRAIN, "-c", "configs/cpu/transfer_adaptformer.yaml", *base,
                  "-o", "train.epochs=2", "-o", f"model.pretrained={out}/best.pdparams",
                  "-o", f"train.output_dir={tmp_path / 'frozen'}"])
    assert r.returncode == 0, r.stderr[-2000:]
    recs = records(str(tmp_path / "frozen"))
    # Epochs are judged on the hold-out (20 % of each class's training images: 368 of the 1,841 of
    # classes 5-9); the archive's test batch (480 images of those classes) only at the end.
    assert recs[-1]["eval_num_samples"] == 368
    with open(tmp_path / "frozen" / "summary.json", encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["test_images"] == 480
    assert max(x["eval_top1"] for x in recs) > 0.3 and summary["test_top1"] > 0.3  # 5 classes: chance is 0.2
