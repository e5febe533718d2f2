"""How Paddle's CPU thread count is set: OMP_NUM_THREADS before import (Paddle then prints
"PLEASE USE OMP_NUM_THREADS WISELY") against paddle.base.core.set_num_threads after import
(what `import adaptformer` does), against neither (one thread). Each mode runs in its own
process, interleaved over rounds, timing a ViT-B fc1-sized float32 matmul.

    python bench/threads.py --rounds 5 --json docs/benchmarks/threads_cpu.json
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

CHILD = """
import os, sys, time
mode, n = sys.argv[1], int(sys.argv[2])
if mode == "env":
    os.environ["OMP_NUM_THREADS"] = str(n)
import paddle
if mode == "set_num_threads":
    paddle.base.core.set_num_threads(n)
a, b = paddle.randn([1576, 768]), paddle.randn([768, 3072])
for _ in range(3):
    (a @ b).numpy()
times = []
for _ in range(10):
    t = time.perf_counter()
    (a @ b).numpy()
    times.append(time.perf_counter() - t)
times.sort()
print(2 * 1576 * 768 * 3072 / times[len(times) // 2] / 1e9)
"""
MODES = ("one_thread", "env", "set_num_threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--json")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if "AuthenticAMD" in open("/proc/cpuinfo").read(4096):
        env.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    rates = {m: [] for m in MODES}
    warned = {}
    for _ in range(args.rounds):
        for mode in MODES:
            r = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.threads)], env=env,
                               capture_output=True, text=True, check=True)
            rates[mode].append(float(r.stdout.strip().splitlines()[-1]))
            warned[mode] = "WISELY" in r.stderr
    result = {
        "command": "python bench/threads.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} usable cores",
        "threads": args.threads,
        "gflops_median": {m: statistics.median(v) for m, v in rates.items()},
        "gflops_all": rates,
        "prints_omp_warning": warned,
    }
    base = result["gflops_median"]["env"]
    result["ratio_to_env"] = {m: v / base for m, v in result["gflops_median"].items()}
    print(json.dumps({k: result[k] for k in ("gflops_median", "ratio_to_env", "prints_omp_warning")}, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
