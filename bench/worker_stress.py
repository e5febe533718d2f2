"""DataLoader workers under load: how often a short multi-worker read of a CIFAR archive fails,
with the package's loader settings against Paddle's defaults, interleaved in one run.

- "package": transforms end in NumPy (no Paddle tensor in a worker) and batches come
  through a pipe (use_shared_memory=False), as `adaptformer.engine.runner.build_loaders` does;
- "paddle_defaults": the same images through Paddle's ToTensor + Normalize in the worker and
  shared-memory batches, as the package did before.

Each attempt is a fresh process reading three epochs with one worker, while `--busy` other
processes spin on the CPU. A failure is a non-zero exit, a crash or a hang (timeout).

    python bench/worker_stress.py --archive ../shared/data/cifar10-subset/cifar-10-python.tar.gz \
        --attempts 12 --json docs/benchmarks/worker_stress.json
"""
import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time

ATTEMPT = """
import sys
import numpy as np
import paddle
import paddle.vision.transforms as T
from adaptformer.config import DataConfig
from adaptformer.data import build_dataset

mode, archive = sys.argv[1], sys.argv[2]
cfg = DataConfig(data_file=archive, classes=[0, 1, 2, 3, 4])
train = build_dataset(cfg, "train")
if mode == "paddle_defaults":
    ops = train.transform.transforms[:-1] + [T.ToTensor(), T.Normalize(mean=cfg.mean, std=cfg.std)]
    train.transform = T.Compose(ops)
for epoch in range(3):
    np.random.seed(epoch)
    loader = paddle.io.DataLoader(train, batch_size=64, shuffle=True, num_workers=1,
                                  use_shared_memory=(mode == "paddle_defaults"))
    for images, labels in loader:
        pass
print("ok")
"""


def spin(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 31 + 7) % 1000003


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", required=True)
    parser.add_argument("--attempts", type=int, default=12, help="per mode")
    parser.add_argument("--busy", type=int, default=2, help="CPU-spinning processes beside each attempt")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--json")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    outcomes = {"package": [], "paddle_defaults": []}
    for _ in range(args.attempts):
        for mode in outcomes:
            busy = [multiprocessing.Process(target=spin, args=(time.time() + args.timeout,)) for _ in range(args.busy)]
            for p in busy:
                p.start()
            try:
                r = subprocess.run([sys.executable, "-c", ATTEMPT, mode, args.archive], env=env,
                                   capture_output=True, text=True, timeout=args.timeout)
                outcome = "ok" if r.returncode == 0 and r.stdout.strip().endswith("ok") else \
                    f"exit {r.returncode}: {(r.stderr.strip().splitlines() or [''])[-1][:160]}"
            except subprocess.TimeoutExpired:
                outcome = f"hang (no exit in {args.timeout:.0f} s)"
            finally:
                for p in busy:
                    p.terminate()
                    p.join()
            outcomes[mode].append(outcome)
            print(mode, outcome, flush=True)
    result = {
        "command": "python bench/worker_stress.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "failures": {m: sum(o != "ok" for o in v) for m, v in outcomes.items()},
        "attempts": {m: len(v) for m, v in outcomes.items()},
        "outcomes": outcomes,
    }
    print(json.dumps({k: result[k] for k in ("failures", "attempts")}))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
