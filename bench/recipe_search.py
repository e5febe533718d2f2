"""The transfer-recipe trials behind configs/cpu/ (docs/cpu_study.md, "How the recipe was chosen"):
single transfer runs from the committed backbone (seed 0 unless a trial sets train.seed), judged
on the validation split only (the test split is never read by this script). Runs two trials at a
time, one core each, then writes one CSV row per trial of the group.

    python bench/recipe_search.py --data ../shared/data/cifar10-subset/cifar-10-python.tar.gz \
        --group before_sweep --csv docs/cpu_study/recipe_search.csv
    python bench/recipe_search.py --data ../shared/data/cifar10-subset/cifar-10-python.tar.gz \
        --group after_sweep --csv docs/cpu_study/recipe_search_after_sweep.csv
    python bench/recipe_search.py --data ../shared/data/cifar10-subset/cifar-10-python.tar.gz \
        --group seeds_16_epochs --csv docs/cpu_study/recipe_search_seeds_16_epochs.csv
"""
import argparse
import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

AF = "configs/cpu/transfer_adaptformer.yaml"
LIN = "configs/cpu/transfer_linear.yaml"
FULL = "configs/cpu/transfer_full.yaml"
FIXED = "method.adaptformer.learnable_scale=false"
R32 = "method.adaptformer.bottleneck=32"
# (name, config, overrides) against the configs at commit 58bf788, before the trials (8 epochs,
# batch 64, AdaptFormer-16 with a learnable scale starting at 0.1).
TRIALS = [
    ("lin_3e-2", LIN, ["optimizer.lr=0.03"]),
    ("lin_1e-1", LIN, ["optimizer.lr=0.1"]),
    ("af16_3e-2", AF, ["optimizer.lr=0.03"]),
    ("af16_1e-1", AF, ["optimizer.lr=0.1"]),
    ("af32_1e-2", AF, ["optimizer.lr=0.01", R32]),
    ("af32_3e-2", AF, ["optimizer.lr=0.03", R32]),
    ("af16f_1e-2", AF, ["optimizer.lr=0.01", FIXED]),
    ("af16f_3e-2", AF, ["optimizer.lr=0.03", FIXED]),
    ("af32f_1e-2", AF, ["optimizer.lr=0.01", FIXED, R32]),
    ("af32f_3e-2", AF, ["optimizer.lr=0.03", FIXED, R32]),
    ("af16_e16_1e-2", AF, ["optimizer.lr=0.01", "train.epochs=16"]),
    ("af16_e16_3e-2", AF, ["optimizer.lr=0.03", "train.epochs=16"]),
    ("lin_e16_1e-2", LIN, ["optimizer.lr=0.01", "train.epochs=16"]),
    ("lin_e16_3e-2", LIN, ["optimizer.lr=0.03", "train.epochs=16"]),
    ("full_e16_3e-4", FULL, ["optimizer.lr=0.0003", "train.epochs=16"]),
    ("af16_b32_3e-3", AF, ["optimizer.lr=0.003", "data.batch_size=32"]),
    ("af16_b32_1e-2", AF, ["optimizer.lr=0.01", "data.batch_size=32"]),
    ("lin_b32_1e-2", LIN, ["optimizer.lr=0.01", "data.batch_size=32"]),
    ("lin_b32_3e-2", LIN, ["optimizer.lr=0.03", "data.batch_size=32"]),
    ("full_b32_3e-4", FULL, ["optimizer.lr=0.0003", "data.batch_size=32"]),
]
# Against the configs after the sweep (batch 32; AdaptFormer at lr 1e-2, linear at 3e-3): the
# adapters' learning rate raised over the head's with optimizer.lr_mult, since the adapter's
# output is multiplied by its scale (0.1) and moves that much slower than the head's.
MULT10 = "optimizer.lr_mult={adapter: 10}"
AFTER_SWEEP = [
    ("af16_mult10_1e-3", AF, ["optimizer.lr=0.001", MULT10]),
    ("af16_mult10_3e-3", AF, ["optimizer.lr=0.003", MULT10]),
]
# Against the same configs: twice the epochs (16), three seeds each for the two frozen methods at
# their chosen learning rates, one for full fine-tuning; does the AdaptFormer-linear gap on the
# validation split widen with more steps, beyond the seeds' spread?
E16 = "train.epochs=16"
SEEDS_16_EPOCHS = [
    ("af16_e16_s0", AF, [E16, "train.seed=0"]),
    ("lin_e16_s0", LIN, [E16, "train.seed=0"]),
    ("af16_e16_s1", AF, [E16, "train.seed=1"]),
    ("lin_e16_s1", LIN, [E16, "train.seed=1"]),
    ("af16_e16_s2", AF, [E16, "train.seed=2"]),
    ("full_e16_s0", FULL, [E16, "train.seed=0"]),
    ("lin_e16_s2", LIN, [E16, "train.seed=2"]),
]
GROUPS = {"before_sweep": TRIALS, "after_sweep": AFTER_SWEEP, "seeds_16_epochs": SEEDS_16_EPOCHS}


def run(trial, core, data, out):
    name, config, overrides = trial
    folder = os.path.join(out, name)
    if os.path.isfile(os.path.join(folder, "summary.json")):
        return
    cmd = ["taskset", "-c", str(core), sys.executable, "tools/train.py", "-c", config, "-o", f"data.data_file={data}",
           "-o", f"train.output_dir={folder}", "--overwrite"]
    for o in overrides:
        cmd += ["-o", o]
    with open(folder + ".log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True)


def row(trial, out):
    name, config, overrides = trial
    with open(os.path.join(out, name, "metrics.jsonl"), encoding="utf-8") as f:
        epochs = [json.loads(line) for line in f if line.strip()]
    val = [e["eval_top1"] for e in epochs if "eval_top1" in e]
    return {"trial": name, "config": config, "overrides": " ".join(overrides), "epochs": len(val),
            "best_val_top1": f"{max(val):.4f}", "best_epoch": val.index(max(val)) + 1,
            "mean_val_top1_last3": f"{sum(val[-3:]) / 3:.4f}", "last_train_loss": f"{epochs[-1]['train_loss']:.3f}",
            "val_top1_per_epoch": " ".join(f"{v:.3f}" for v in val)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="output/recipe_search")
    p.add_argument("--group", choices=sorted(GROUPS), default="before_sweep")
    p.add_argument("--csv", default="docs/cpu_study/recipe_search.csv")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    trials = GROUPS[args.group]

    def queue(core):
        for trial in trials[core::2]:
            run(trial, core, args.data, args.out)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(queue, [0, 1]))
    rows = [row(t, args.out) for t in trials]
    with open(args.csv, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
