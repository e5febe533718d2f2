"""Size of tuned weights for ViT-B/16 with AdaptFormer-64 (all 12 blocks, learnable scale) and a
100-class head, against the full model's state dict; and the resident memory a TaskBank adds per
task on that backbone (bench/task_memory.py, in child processes). Random weights: sizes depend
on shapes only.

    python bench/tuned_size.py --json docs/benchmarks/tuned_size.json
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import adaptformer  # noqa: E402,F401  (CPU environment before paddle loads)
import paddle  # noqa: E402

from adaptformer import freeze  # noqa: E402
from adaptformer.weights.checkpoint import save_state  # noqa: E402
from adaptformer.config import from_dict  # noqa: E402
from adaptformer.methods import apply_method  # noqa: E402
from adaptformer.models import create_model  # noqa: E402
from adaptformer.serve.tuned import META, WEIGHTS, save_tuned  # noqa: E402

CFG = {"model": {"name": "vit_base_patch16_224", "num_classes": 100},
       "method": {"name": "adaptformer", "adaptformer": {"bottleneck": 64, "learnable_scale": True}},
       "data": {"img_size": 224}}
TASK_MEMORY = os.path.join(ROOT, "bench", "task_memory.py")


def sizes(folder: str) -> dict:
    cfg = from_dict(CFG, "bench/tuned_size.py")
    paddle.seed(0)
    model = create_model(cfg.model.name, num_classes=cfg.model.num_classes)
    apply_method(model, cfg.method)
    tuned = save_tuned(model, os.path.join(folder, "tuned"), cfg, [f"class_{i}" for i in range(100)])
    full = os.path.join(folder, "full.pdparams")
    save_state(model.state_dict(), full)
    summary = freeze.summary(model)
    return {
        "tuned_pdparams_bytes": os.path.getsize(os.path.join(tuned, WEIGHTS)),
        "tuned_json_bytes": os.path.getsize(os.path.join(tuned, META)),
        "full_pdparams_bytes": os.path.getsize(full),
        "trainable_params": summary.trainable,
        "total_params": summary.total,
    }


# glibc raises its mmap threshold as large blocks are freed, after which freed tensors stay in the
# heap and count as resident; a fixed threshold returns them, so RSS follows live memory.
ENVIRONMENTS = {"default_malloc": {}, "fixed_mmap_threshold_64k": {"MALLOC_MMAP_THRESHOLD_": "65536"}}


def task_memory(folder: str) -> dict:
    subprocess.run([sys.executable, TASK_MEMORY, "write", folder], check=True)
    results = {}
    for name, env in ENVIRONMENTS.items():
        done = subprocess.run([sys.executable, TASK_MEMORY, "measure", folder], capture_output=True, text=True,
                              check=True, env={**os.environ, **env})
        result = json.loads(done.stdout.strip().splitlines()[-1])
        later = result["growth"][1:]  # the first task also fills one-off caches
        results[name] = {**result, "growth_later_tasks_mib": [round(g / 2**20, 2) for g in later],
                         "growth_over_file": [round(g / f, 3) for g, f in zip(later, result["file_size"][1:])],
                         "layer_objects_mib": round(result["layer_objects"] / 2**20, 2)}
    return results


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return (f"{names[0] if names else platform.machine()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} "
            "usable by this run), "
            f"Python {platform.python_version()}, paddlepaddle {paddle.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = {
            "command": "python bench/tuned_size.py" + (f" --json {args.json}" if args.json else ""),
            "machine": machine(),
            "model": "vit_base_patch16_224, 100 classes, AdaptFormer bottleneck 64 in all 12 blocks, learnable scale",
            **sizes(folder),
        }
        result["tuned_over_full"] = round(result["tuned_pdparams_bytes"] / result["full_pdparams_bytes"], 4)
        with tempfile.TemporaryDirectory() as tasks:
            result["task_bank"] = task_memory(tasks)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
