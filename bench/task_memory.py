"""Resident memory per task of a TaskBank on ViT-B/16, each phase in its own process
(run by bench/tuned_size.py and tests/test_tasks.py).

    python bench/task_memory.py write DIR     three AdaptFormer-64 tuned folders (100 classes) for
                                              the seeded ViT-B/16, tuned values random
    python bench/task_memory.py measure DIR   the seeded ViT-B/16 again, the three tasks added; prints
                                              JSON: each task's RSS growth (the three share one
                                              model shape), the seconds add() took and
                                              its file size, and the growth of a task's layer objects alone

The backbone is rebuilt from the same seed in each process, so the fingerprints agree without a
330 MB file. `measure` reads /proc/self/statm after gc.collect(); the first task is a warm-up
(its growth includes one-off caches). "layer objects" is the same task built without tensors:
the model under LazyGuard, backbone tensors shared, the method applied still under LazyGuard.
"""
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import adaptformer  # noqa: E402,F401  (CPU environment before paddle loads)
import paddle  # noqa: E402

from adaptformer.config import from_dict  # noqa: E402
from adaptformer.methods import apply_method  # noqa: E402
from adaptformer.models import create_model  # noqa: E402
from adaptformer.serve.tasks import TaskBank  # noqa: E402
from adaptformer.serve.tuned import WEIGHTS, read_tuned_meta, save_tuned, tuned_config  # noqa: E402

TASKS = 3
CFG = {"model": {"name": "vit_base_patch16_224", "num_classes": 100},
       "method": {"name": "adaptformer", "adaptformer": {"bottleneck": 64, "learnable_scale": True}},
       "data": {"img_size": 224}}


def backbone():
    paddle.seed(0)
    return create_model("vit_base_patch16_224", num_classes=100)


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write(out: str) -> None:
    cfg = from_dict(CFG, "task_memory")
    model = backbone()
    apply_method(model, cfg.method)
    for i in range(TASKS):
        paddle.seed(100 + i)
        with paddle.no_grad():
            for p in model.parameters():
                if not p.stop_gradient:
                    p.set_value(paddle.randn(p.shape) * 0.02)
        save_tuned(model, os.path.join(out, f"task{i}"), cfg, [f"c{j}" for j in range(100)])


def layer_objects(bank: TaskBank, tuned_dir: str) -> int:
    """RSS growth of a task's model without its tensors (kept alive until measured)."""
    meta = read_tuned_meta(tuned_dir)
    cfg = tuned_config(meta, tuned_dir)
    before = rss()
    with paddle.LazyGuard():
        model = create_model(cfg.model.name, num_classes=cfg.model.num_classes, **cfg.model.kwargs)
        bank._share(model, set(meta["tensors"]), tuned_dir)
        apply_method(model, cfg.method)
    grown = rss() - before
    del model
    return grown


def measure(out: str) -> None:
    bank = TaskBank(backbone(), log=lambda *a: None)
    growth, seconds = [], []
    for i in range(TASKS):
        before, start = rss(), time.perf_counter()
        bank.add(f"task{i}", os.path.join(out, f"task{i}"))
        seconds.append(round(time.perf_counter() - start, 3))
        growth.append(rss() - before)
    result = {
        "growth": growth,
        "add_seconds": seconds,
        "file_size": [os.path.getsize(os.path.join(out, f"task{i}", WEIGHTS)) for i in range(TASKS)],
        "layer_objects": layer_objects(bank, os.path.join(out, "task0")),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    {"write": write, "measure": measure}[sys.argv[1]](sys.argv[2])
