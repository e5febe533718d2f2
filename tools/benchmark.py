"""Training and evaluation speed and memory of tuning methods, side by side.

    python tools/benchmark.py [-c configs/bench/vit_b16.yaml] [--methods full,linear,adaptformer]
                              [--steps 5] [--json OUT] [--report OUT.md] [--torch PYTHON]

Each method runs in a fresh process (python -m adaptformer.engine.benchmark), one after
the other, so its peak memory is its own. A method may carry config overrides after
'@', separated by ';': `adaptformer@train.recompute=true`. Ratios are to the 'full' row.
With --torch, bench/torch_vit.py runs the same network and step in PyTorch right after
each Paddle method it knows (full, linear, adaptformer). `env:NAME=VALUE` items set an
environment variable for that method's process, e.g. `full@env:FLAGS_use_stride_kernel=1`.

The data path alone (docs/data_loader.md): the training loader's images/s per worker, through
a pipe and in shared memory, against a bare decode + resize loop, every configuration in its
own process, --rounds times (adaptformer/engine/data_benchmark.py):

    python tools/benchmark.py --data-only --archive cifar-10-python.tar.gz [--folder DIR]
                              [--sources folder,cifar,transfer] [--workers 0,1,2] [--transports pipe,shm]
                              [--rounds 3] [--json OUT] [--report OUT.md]
"""
import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys

import _cli

DEFAULT_CONFIG = os.path.join("configs", "bench", "vit_b16.yaml")
TORCH_SCRIPT = os.path.join(_cli.ROOT, "bench", "torch_vit.py")
TORCH_METHODS = ("full", "linear", "adaptformer")


class BenchmarkError(RuntimeError):
    pass


def _run_json(cmd, env, what):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BenchmarkError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def _worker(extra, env, what):
    """One measurement in a fresh process: python -m adaptformer.engine.benchmark EXTRA."""
    return _run_json([sys.executable, "-m", "adaptformer.engine.benchmark"] + extra, env, what)


def parse_variant(spec):
    """'adaptformer@train.recompute=true;env:FLAGS_x=1' -> ('adaptformer', [overrides], {env})."""
    method, _, rest = spec.partition("@")
    overrides, env = [], {}
    for item in (o.strip() for o in rest.split(";")):
        if item.startswith("env:"):
            name, _, value = item[4:].partition("=")
            env[name.strip()] = value.strip()
        elif item:
            overrides.append(item)
    return method.strip(), overrides, env


def measure_paddle(args, spec, env):
    method, overrides, extra_env = parse_variant(spec)
    env = {**env, **extra_env}
    cmd = ["-c", args.config, "--method", method,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--eval-steps", str(args.eval_steps)]
    for o in args.override + overrides:
        cmd += ["-o", o]
    return _worker(cmd, env, f"paddle {spec}")


def measure_torch(args, paddle_row, env):
    arch = paddle_row["architecture"]
    cmd = [args.torch, TORCH_SCRIPT, "--method", paddle_row["method"], "--batch", str(paddle_row["batch"]),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--eval-steps", str(args.eval_steps),
           "--img-size", str(arch["img_size"]), "--patch", str(arch["patch"]), "--dim", str(arch["dim"]),
           "--depth", str(arch["depth"]), "--heads", str(arch["heads"]), "--mlp-ratio", str(arch["mlp_ratio"]),
           "--num-classes", str(arch["num_classes"]), "--threads", env["OMP_NUM_THREADS"]]
    if "bottleneck" in arch:
        cmd += ["--bottleneck", str(arch["bottleneck"]), "--adapter-dropout", str(arch["adapter_dropout"])]
    return _run_json(cmd, env, f"torch {paddle_row['method']}")


def pool_rounds(rounds):
    """One row per method from several rounds: step times pooled, throughput from their
    medians, memory the highest peak seen."""
    pooled = []
    for i, first in enumerate(rounds[0]):
        row = {"label": first["label"]}
        for framework in ("paddle", "torch"):
            runs = [rows[i][framework] for rows in rounds if framework in rows[i]]
            if not runs:
                continue
            merged = dict(runs[0])
            for key in ("train_step_s", "eval_step_s"):
                merged[key] = [t for run in runs for t in run[key]]
            train_s = statistics.median(merged["train_step_s"])
            merged["train_images_per_s"] = merged["batch"] / train_s
            merged["eval_images_per_s"] = merged["batch"] / statistics.median(merged["eval_step_s"])
            if "achieved_flops_per_s" in merged:
                merged["achieved_flops_per_s"] = merged["flops_per_step"]["train"] / train_s
            worst = max(runs, key=lambda run: run.get("peak_mb") or run.get("peak_rss_mb") or 0)
            for key in ("baseline_mb", "peak_mb", "train_memory_mb", "baseline_rss_mb", "peak_rss_mb"):
                if key in worst:
                    merged[key] = worst[key]
            row[framework] = merged
        pooled.append(row)
    return pooled


def _fmt(value, spec=".1f", none="-"):
    return none if value is None else format(value, spec)


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def median_step(row):
    return statistics.median(row["train_step_s"])


def tables(rows, peak_flops, unit="img"):
    """Markdown tables: every method against full, then Paddle against PyTorch."""
    full = next((r for r in rows if r["label"] == "full"), None)
    out = [
        f"| method | trainable params | train {unit}/s | step s | step vs full | eval {unit}/s | peak MB | "
        "train memory MB | memory vs full | GFLOP/step | GFLOP/s | of peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = r["paddle"]
        out.append(
            f"| {r['label']} | {p['trainable_params']:,} | {p['train_images_per_s']:.2f} | {median_step(p):.2f} | "
            f"{_fmt(_ratio(median_step(p), full and median_step(full['paddle'])), '.2f')}x | "
            f"{p['eval_images_per_s']:.2f} | {_fmt(p['peak_mb'], '.0f')} | {_fmt(p['train_memory_mb'], '.0f')} | "
            f"{_fmt(_ratio(p['train_memory_mb'], full and full['paddle']['train_memory_mb']), '.2f')}x | "
            f"{p['flops_per_step']['train'] / 1e9:.1f} | {p['achieved_flops_per_s'] / 1e9:.1f} | "
            f"{_fmt(_ratio(p['achieved_flops_per_s'], peak_flops), '.0%')} |"
        )
    torch_rows = [r for r in rows if r.get("torch")]
    if torch_rows:
        out += [
            "",
            "| method | Paddle train img/s | PyTorch train img/s | Paddle / PyTorch | Paddle eval img/s | "
            "PyTorch eval img/s | Paddle / PyTorch | Paddle train memory MB | PyTorch train memory MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in torch_rows:
            p, t = r["paddle"], r["torch"]
            out.append(
                f"| {r['label']} | {p['train_images_per_s']:.2f} | {t['train_images_per_s']:.2f} | "
                f"{p['train_images_per_s'] / t['train_images_per_s']:.2f}x | {p['eval_images_per_s']:.2f} | "
                f"{t['eval_images_per_s']:.2f} | {p['eval_images_per_s'] / t['eval_images_per_s']:.2f}x | "
                f"{_fmt(p['train_memory_mb'], '.0f')} | {_fmt(t['train_memory_mb'], '.0f')} |"
            )
    return "\n".join(out)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, {platform.system()}"


DATA_OPTIONS = (  # (flag, default, help) of --data-only
    ("--archive", None, "the CIFAR-10 python archive: the cifar source, and the images of the JPEG folder"),
    ("--folder", None, "a data.dataset folder root (train/<class>/*.jpg) instead of JPEGs written from --archive"),
    ("--sources", "folder,cifar,transfer", "folder (JPEGs), cifar (the archive), transfer (ready arrays: the "
                                           "hand-over alone)"),
    ("--workers", "0,1,2", "DataLoader worker counts"),
    ("--transports", "pipe,shm", "how workers hand batches over: pipe, shm (shared memory)"),
    ("--batch", 128, "batch size"),
    ("--batches", 6, "timed batches per measurement, after one untimed"),
    ("--images", 1536, "JPEGs to write from --archive (320-500 px a side, quality 90)"),
    ("--img-size", 224, "the training resize"),
    ("--timeout", 180.0, "seconds a measurement may take before it counts as failed (hung)"),
)


def data_only(args, atomic_write_text):
    """--data-only: adaptformer/engine/data_benchmark.py's configurations, side by side."""
    from adaptformer.engine import data_benchmark as db

    env = dict(os.environ, PYTHONPATH=_cli.ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        result = db.run(args, env)
    except db.BenchError as e:
        raise BenchmarkError(str(e)) from None
    table = db.table(result["rows"])
    lines = db.verdicts(result["rows"], os.cpu_count() or 1, args.img_size)
    print()
    print(table)
    print("\n".join(lines))
    import paddle
    from PIL import __version__ as pil_version

    command = "python tools/benchmark.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    variables = " ".join(f"{k}={os.environ[k]}" for k in ("MKL_DEBUG_CPU_TYPE", "OMP_NUM_THREADS") if k in os.environ)
    versions = f"paddlepaddle {paddle.__version__}, Pillow {pil_version}, NumPy {__import__('numpy').__version__}"
    result.update(command=command, environment=variables, machine=machine(), versions=versions)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    if args.report:
        failed = [f"- {r['label']}: {'; '.join(r['failure_reasons'])}" for r in result["rows"] if r["failure_reasons"]]
        s = result["settings"]
        atomic_write_text(args.report, "\n".join([
            f"Command: `{variables + ' ' if variables else ''}{command}`",
            "",
            f"Machine: {machine()}; {versions}; device {result['device']} (data.shared_memory auto here: "
            f"{result['auto_shared_memory']}).",
            f"{s['img_size']} px, batch {s['batch']}, {args.batches} timed batches after one untimed, per "
            f"configuration, in a process of its own, in each of {args.rounds} round(s) (order rotated per round); "
            "img/s is the median over rounds, the ratio the median of each round's per-worker img/s over that "
            "round's bare loop." + (" JPEGs written from the archive (320-500 px a side, quality 90)."
                                    if result["written_folder"] else ""),
            "",
            table,
            "",
            f"Target: each worker >= {db.TARGET}x the bare loop.",
            *lines,
            *(["", "Failed attempts (those 'before loading' are not counted in the table's attempts):", *failed]
              if failed else []),
            "",
        ]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"run config (default {DEFAULT_CONFIG})")
    parser.add_argument("--methods", default="full,linear,adaptformer",
                        help="comma-separated methods, each optionally METHOD@key=value;key=value")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every method (repeatable)")
    parser.add_argument("--steps", type=int, default=5, help="timed training and eval steps per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--eval-steps", type=int, default=None, help="timed eval steps (default: --steps)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole sequence; step times are pooled (evens out a noisy machine)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the measured processes (default: inherited, else all cores)")
    parser.add_argument("--torch", metavar="PYTHON", help="also run bench/torch_vit.py with this Python (has torch)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="device peak for the 'of peak' column (default: a measured 2048^3 float32 matmul)")
    parser.add_argument("--data", action="store_true",
                        help="also time the config's training DataLoader (needs its dataset on disk)")
    parser.add_argument("--json", metavar="OUT", help="write all measurements as JSON")
    parser.add_argument("--report", metavar="OUT.md", help="write a markdown report (machine, versions, command)")
    data = parser.add_argument_group("the data path alone (--data-only; docs/data_loader.md)")
    data.add_argument("--data-only", action="store_true",
                      help="measure only the training loader, per worker, against a bare decode + resize loop")
    for flag, default, help_text in DATA_OPTIONS:
        data.add_argument(flag, default=default, type=type(default) if default is not None else str, help=help_text)
    args = parser.parse_args()
    args.eval_steps = args.eval_steps or args.steps

    from adaptformer.config import ConfigError, load_config
    from adaptformer.files.atomic import atomic_write_text

    if args.data_only:
        return data_only(args, atomic_write_text)
    given = [flag for flag, default, _ in DATA_OPTIONS if getattr(args, flag[2:].replace("-", "_")) != default]
    if given:
        raise ConfigError(f"{', '.join(given)} go(es) with --data-only")

    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        raise ConfigError(f"--steps and --rounds must be >= 1 and --warmup >= 0, got {args.steps}, "
                          f"{args.rounds} and {args.warmup}")
    specs = [s.strip() for s in args.methods.split(",") if s.strip()]
    for spec in specs:  # every config error before the first long measurement
        method, overrides, _ = parse_variant(spec)
        cfg = load_config(args.config, args.override + overrides, method=method)
    unit = "clip" if cfg.data.dataset == "video" else "img"  # a video model's samples are clips
    if args.torch and not os.path.isfile(args.torch):
        raise ConfigError(f"--torch {args.torch}: no such Python (get one with ../shared/tools/torch-ref-env.sh)")

    env = dict(os.environ, PYTHONPATH=_cli.ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["OMP_NUM_THREADS"] = str(args.threads or os.environ.get("OMP_NUM_THREADS") or os.cpu_count())
    gemm = _worker(["--gemm"], env, "matmul peak")
    peak = args.peak_tflops * 1e12 if args.peak_tflops else gemm["gemm_flops_per_s"]
    print(f"threads {env['OMP_NUM_THREADS']}; peak for 'of peak': {peak / 1e9:.1f} GFLOP/s "
          f"({'given' if args.peak_tflops else 'measured float32 matmul'})", flush=True)
    torch_gemm = None
    if args.torch:
        torch_gemm = _run_json([args.torch, TORCH_SCRIPT, "--gemm", "--threads", env["OMP_NUM_THREADS"]], env,
                               "torch matmul peak")["gemm_flops_per_s"]
        print(f"the same matmul in PyTorch: {torch_gemm / 1e9:.1f} GFLOP/s", flush=True)

    rounds = []
    for r in range(args.rounds):
        rows = []
        for spec in specs:
            row = {"label": spec, "paddle": measure_paddle(args, spec, env)}
            p = row["paddle"]
            line = (f"{spec}: train {p['train_images_per_s']:.2f} {unit}/s, eval {p['eval_images_per_s']:.2f} {unit}/s, "
                    f"train memory {_fmt(p['train_memory_mb'], '.0f')} MB")
            wanted = args.torch and "@" not in spec and p["method"] in TORCH_METHODS
            if wanted and (not p["architecture"]["reference_wiring"] or p["amp"]):
                line += " | no PyTorch run: bench/torch_vit.py builds only ViTs with the default adapter wiring, no AMP"
            elif wanted:
                row["torch"] = measure_torch(args, p, env)
                t = row["torch"]
                line += f" | torch train {t['train_images_per_s']:.2f} img/s, eval {t['eval_images_per_s']:.2f} img/s"
            print((f"round {r + 1}: " if args.rounds > 1 else "") + line, flush=True)
            rows.append(row)
        rounds.append(rows)
    rows = pool_rounds(rounds)

    table = tables(rows, peak, unit)
    if args.data:
        data = _worker(["-c", args.config, "--loader"] + [a for o in args.override for a in ("-o", o)], env,
                       "data loader")
        slowest = min(r["paddle"]["train_images_per_s"] for r in rows)
        fastest = max(r["paddle"]["train_images_per_s"] for r in rows)
        table += (f"\n\nData loader ({data['dataset']}, {data['num_workers']} workers): "
                  f"{data['loader_images_per_s']:.0f} img/s; the training steps above consume "
                  f"{slowest:.1f} to {fastest:.1f} img/s.")
    print()
    print(table)
    command = "python tools/benchmark.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = {"command": command, "machine": machine(), "threads": int(env["OMP_NUM_THREADS"]),
              "peak_flops_per_s": peak, "peak_source": "given" if args.peak_tflops else "measured matmul",
              "paddle_matmul_flops_per_s": gemm["gemm_flops_per_s"], "torch_matmul_flops_per_s": torch_gemm,
              "rows": rows}
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    if args.report:
        versions = f"paddlepaddle {rows[0]['paddle']['version']}" if rows else ""
        torch_version = next((r["torch"]["version"] for r in rows if r.get("torch")), None)
        if torch_version:
            versions += f", torch {torch_version}"
        atomic_write_text(args.report, "\n".join([
            f"Command: `OMP_NUM_THREADS={env['OMP_NUM_THREADS']} {command}`",
            "",
            f"Machine: {machine()}; {versions}; device {rows[0]['paddle']['device'] if rows else '?'}.",
            f"Peak for 'of peak': {peak / 1e9:.1f} GFLOP/s ({result['peak_source']})."
            + (f" The same 2048^3 float32 matmul: Paddle {gemm['gemm_flops_per_s'] / 1e9:.1f}, "
               f"PyTorch {torch_gemm / 1e9:.1f} GFLOP/s." if torch_gemm else ""),
            f"Medians of {args.steps} timed steps after {args.warmup} warm-up steps in each of {args.rounds} "
            "round(s), one fixed batch; each method and framework in its own process.",
            "",
            table,
            "",
        ]))


if __name__ == "__main__":
    def _main():
        try:
            main()
        except BenchmarkError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    _cli.run(_main)
