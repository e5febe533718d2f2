"""Images/s of the training DataLoader, per worker, against a bare loop of the same work.

`python tools/benchmark.py --data-only ...` runs `run()`: every configuration (data source x
loader: the bare loop, 0 workers, N workers with batches through a pipe or in shared memory)
is measured in a process of its own (`python -m adaptformer.engine.data_benchmark --case JSON`),
once per round, the order rotated each round so that a busy neighbour slows all of them alike.
A child that fails or outlives --timeout (its workers die with it: data/workers.py) is a failed
attempt of that configuration, counted, never a hang.

- loader: the package's own training loader (data/loading.guarded_loader over the dataset kind
  `folder` or `cifar10`, the training transform of data.augment with every augmentation off:
  Resize((img_size, img_size)) bilinear, then ToNormalizedArray), batches of --batch drawn by
  the PlannedBatchSampler; the first batch (workers starting) is not timed.
- bare: one process, no DataLoader: PIL decode, RGB, the same resize, the same to-array and
  normalisation, image after image (no collation, no hand-over): what one worker could at most do.
- transfer (optional): a dataset returning one ready array: the hand-over alone, no decoding.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

SOURCES = ("folder", "cifar", "transfer")
TRANSPORTS = ("pipe", "shm")
STARTED = "measuring"  # the child's line once dataset and settings are ready
TARGET = 0.9  # each worker should deliver this fraction of the bare loop's images/s
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the 224-px recipe's (configs/paper/_base_.yaml)


class BenchError(ValueError):
    """A bad option of the data benchmark (printed as one line by tools/benchmark.py)."""


# --------------------------------------------------------------------------- the configurations


def cases(sources: Sequence[str], workers: Sequence[int], transports: Sequence[str]) -> List[Dict]:
    """Every configuration, in a fixed order: per source the bare loop, then each worker count;
    0 workers once (Paddle has no hand-over there: shared memory is off), N > 0 once per transport."""
    out = []
    for source in sources:
        if source != "transfer":
            out.append({"source": source, "mode": "bare", "workers": 0, "transport": None})
        for w in workers:
            for t in ((None,) if w == 0 else transports):
                out.append({"source": source, "mode": "loader", "workers": w, "transport": t})
    return out


def label(case: Dict) -> str:
    if case["mode"] == "bare":
        return f"{case['source']} bare loop"
    hand = "in the main process" if case["workers"] == 0 else f"{case['transport']}"
    return f"{case['source']} loader, {case['workers']} workers, {hand}"


def data_config(case: Dict, args: Dict):
    """The DataConfig the package's loader is built from for `case`."""
    from adaptformer.config.schema import AugmentConfig, DataConfig

    augment = AugmentConfig(random_crop_padding=0, hflip=0.0, color_jitter_p=0.0, rotation=0.0)
    common = dict(img_size=args["img_size"], batch_size=args["batch"], num_workers=case["workers"],
                  shared_memory=case["transport"] == "shm", augment=augment, mean=list(MEAN), std=list(STD))
    if case["source"] == "folder":
        return DataConfig(dataset="folder", data_dir=args["folder"], **common)
    if case["source"] == "cifar":
        return DataConfig(dataset="cifar10", data_file=args["archive"], download=False, **common)
    return DataConfig(dataset="synthetic", **common)


# --------------------------------------------------------------------------- the bare loop


def bare_normalize(img: Image.Image, mean=MEAN, std=STD) -> np.ndarray:
    """HWC uint8 -> CHW float32, (x / 255 - mean) / std: the package's own ToNormalizedArray."""
    from adaptformer.data.transforms import ToNormalizedArray

    return ToNormalizedArray(mean, std)(img)


def bare_image(item, size: int, mean=MEAN, std=STD) -> np.ndarray:
    """One image (a file path, or an HWC uint8 array for CIFAR) decoded, resized, normalised."""
    from adaptformer.data.images import open_rgb  # the loader's own decoding (data/image_files.py)

    img = open_rgb(item) if isinstance(item, str) else Image.fromarray(item)
    return bare_normalize(img.resize((size, size), Image.BILINEAR), mean, std)


def bare_items(dataset, source: str) -> Sequence:
    """What the bare loop decodes: the dataset's file paths, or its uint8 CIFAR images."""
    return [path for path, _ in dataset.samples] if source == "folder" else dataset.images


# --------------------------------------------------------------------------- one measurement (child)


class _Ready:
    """`n` samples, each the same ready CHW float32 array: the hand-over without any decoding."""

    def __init__(self, n: int, size: int):
        self.n, self.image = n, np.zeros((3, size, size), np.float32)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        return self.image, np.array(index % 10, np.int64)


def _dataset(case: Dict, cfg, args: Dict):
    from adaptformer.data import build_dataset

    if case["source"] == "transfer":
        return _Ready(args["batch"] * (args["batches"] + 1), args["img_size"])
    return build_dataset(cfg, "train")


def _worker_pids() -> List[int]:
    """This process's children (the DataLoader's workers), from /proc."""
    me, pids = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        pids.append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    return pids


def _cpu_s(pids: Sequence[int]) -> float:
    """utime + stime of `pids` (every thread), in seconds."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue
    return total


def measure(case: Dict, args: Dict, keep: List) -> Dict:
    """Images/s of `case`, timed over args["batches"] batches after one untimed batch, and the CPU
    seconds per image of this process and of its workers over the same window (a busy machine
    slows the clock, not the work). The iterator is left in `keep`, to be shut down after the
    result is out."""
    import paddle
    from adaptformer.data.loading import guarded_loader, uses_shared_memory

    cfg = data_config(case, args)
    dataset = _dataset(case, cfg, args)
    batch, batches = args["batch"], args["batches"]
    need = batch * (batches + 1)
    if len(dataset) < need:
        raise BenchError(f"{label(case)}: {len(dataset)} images, fewer than the {need} that --batch {batch} and "
                         f"--batches {batches} read (one untimed batch first)")
    np.random.seed(0)
    print(STARTED, flush=True)  # what fails before this line is the setting up, not the loading
    if case["mode"] == "bare":
        items = bare_items(dataset, case["source"])
        order = np.random.permutation(len(items))[:need]
        for i in order[:batch]:
            bare_image(items[i], cfg.img_size)
        start, cpu, workers = time.perf_counter(), time.process_time(), []
        for i in order[batch:]:
            bare_image(items[i], cfg.img_size)
        elapsed, seen = time.perf_counter() - start, len(order) - batch
        main_cpu, workers_cpu = time.process_time() - cpu, 0.0
        shared = None
    else:
        loader = guarded_loader(dataset, cfg, batch, shuffle=True, log=lambda *a, **k: None)
        loader.batch_sampler.set_epoch(0)
        shared = loader.loader.use_shared_memory
        it = iter(loader)
        keep.append(it)
        next(it)
        workers = _worker_pids()
        start, cpu, cpu_workers, seen = time.perf_counter(), time.process_time(), _cpu_s(workers), 0
        for _ in range(batches):
            images, _labels = next(it)
            seen += images.shape[0]
        elapsed = time.perf_counter() - start
        main_cpu, workers_cpu = time.process_time() - cpu, _cpu_s(workers) - cpu_workers
    return {**case, "images": seen, "seconds": elapsed, "images_per_s": seen / elapsed,
            "main_cpu_ms_per_image": 1e3 * main_cpu / seen, "workers_cpu_ms_per_image": 1e3 * workers_cpu / seen,
            "worker_processes": len(workers),
            "use_shared_memory": shared, "device": paddle.device.get_device(),
            "auto_shared_memory": uses_shared_memory(type(cfg)())}


def _child(argv=None) -> None:
    parser = argparse.ArgumentParser(description="One data-loader measurement (used by tools/benchmark.py --data-only).")
    parser.add_argument("--case", required=True, help="JSON: the case and the settings")
    spec = json.loads(parser.parse_args(argv).case)
    from adaptformer.errors import UserError, one_line

    keep: List = []
    try:
        result = measure(spec["case"], spec["args"], keep)
    except (UserError, BenchError) as e:  # a bad setting, not a loader failure: the parent stops on it
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # The loader shuts down after the result is out, so a crash there is told apart. The epoch was
    # left unfinished (training never does that): closing the guard's generator drops Paddle's
    # iterator, whose __del__ joins its thread and stops its workers, here and not in the
    # interpreter's teardown. Then the process ends without that teardown. Left to it, C++ could
    # destroy a loader thread that was never joined ("terminate called without an active
    # exception", exit -6), seen once in a CI run under load.
    for it in keep:
        it.close()
    keep.clear()
    gc.collect()
    sys.stderr.flush()
    os._exit(0)


# --------------------------------------------------------------------------- the JPEG folder


def write_jpeg_folder(archive: str, out: str, count: int, min_side: int = 320, max_side: int = 500,
                      quality: int = 90, seed: int = 0) -> str:
    """data_dir for data.dataset folder: the first `count` training images of the CIFAR archive,
    upscaled (bicubic) to a random size between min_side and max_side on each side, as JPEGs of
    `quality` under train/<class>/ (and one per class under val/, which the folder kind expects)."""
    from adaptformer.config.schema import DataConfig
    from adaptformer.data.kinds.cifar import load_cifar

    data = load_cifar(DataConfig(dataset="cifar10", data_file=archive, download=False), "train")
    if len(data) < count:
        raise BenchError(f"--archive {archive}: {len(data)} training images, fewer than the {count} to write")
    rng = np.random.default_rng(seed)
    seen = set()
    for i in range(count):
        label = int(data.labels[i])
        splits = ["train"] + (["val"] if label not in seen else [])
        seen.add(label)
        w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
        img = Image.fromarray(data.images[i]).resize((w, h), Image.BICUBIC)
        for split in splits:
            folder = os.path.join(out, split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            img.save(os.path.join(folder, f"{i:05d}.jpg"), quality=quality)
    return out


# --------------------------------------------------------------------------- the whole benchmark (parent)


def snapshot_package(out: str) -> str:
    """A copy of the adaptformer package under `out` (returned: the folder to import it from), so
    that every child of one run measures the same code, whatever is edited meanwhile."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copytree(package, os.path.join(out, "adaptformer"), ignore=shutil.ignore_patterns("__pycache__"))
    return out


def run_case(case: Dict, args: Dict, env: Dict, timeout: float, cwd: Optional[str] = None) -> Dict:
    """`case` in a child process: its JSON row, or {"ok": False, "reason": ...}."""
    cmd = [sys.executable, "-m", "adaptformer.engine.data_benchmark", "--case", json.dumps({"case": case, "args": args})]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's session: it and its DataLoader workers
        proc.communicate()
        return {"ok": False, "reason": f"no result within {timeout:.0f} s (killed)"}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return {"ok": True, **json.loads(lines[-1])}
    tail = [ln for ln in err.strip().splitlines() if ln.strip()]
    why = tail[-1].strip() if tail else "no output"
    if proc.returncode == 2 and why.startswith("error: "):
        raise BenchError(why[len("error: "):])
    if lines:  # measured, then the loader's shutdown failed: the rate stands, the failure counts
        return {"ok": False, "measured": True, **json.loads(lines[-1]),
                "reason": f"after measuring, at shutdown: exit {proc.returncode}: {why[:300]}"}
    if STARTED not in out.splitlines():  # e.g. an import broken by an edit under way: not the loader's doing
        return {"ok": False, "setup": True, "reason": f"before loading (setup): exit {proc.returncode}: {why[:300]}"}
    return {"ok": False, "reason": f"exit {proc.returncode}: {why[:300]}"}


def summarize(all_cases: List[Dict], rounds: List[List[Dict]]) -> List[Dict]:
    """One row per case: median images/s over the rounds it succeeded in; per worker; the median
    over rounds of (per-worker images/s / the same round's bare loop of that source)."""
    def measured(run):
        return run["ok"] or run.get("measured", False)

    def median(values):
        return statistics.median(values) if values else None

    rows = []
    for i, case in enumerate(all_cases):
        runs = [r[i] for r in rounds]
        good = [r for r in runs if measured(r)]
        ratios = []
        bare_index = next((j for j, c in enumerate(all_cases) if c["source"] == case["source"] and c["mode"] == "bare"),
                          None)
        for r in rounds:
            if measured(r[i]) and bare_index is not None and measured(r[bare_index]):
                ratios.append(r[i]["images_per_s"] / max(case["workers"], 1) / r[bare_index]["images_per_s"])
        rate = median([r["images_per_s"] for r in good])
        main_ms = median([r["main_cpu_ms_per_image"] for r in good if "main_cpu_ms_per_image" in r])
        worker_ms = median([r["workers_cpu_ms_per_image"] for r in good if "workers_cpu_ms_per_image" in r])
        row = {**case, "label": label(case), "attempts": sum(not r.get("setup") for r in runs),
               "failures": sum(not r["ok"] and not r.get("setup") for r in runs),
               "setup_failures": sum(bool(r.get("setup")) for r in runs),
               "failure_reasons": sorted({r["reason"] for r in runs if not r["ok"]}),
               "images_per_s_runs": [r["images_per_s"] for r in good], "images_per_s": rate,
               "per_worker_images_per_s": None if rate is None else rate / max(case["workers"], 1),
               "ratio_to_bare": median(ratios), "ratio_to_bare_runs": ratios,
               "main_cpu_ms_per_image": main_ms, "workers_cpu_ms_per_image": worker_ms}
        rows.append(row)
    for row in rows:  # on a core of its own: a worker's images/s over the bare loop's, from CPU time
        bare = next((r for r in rows if r["source"] == row["source"] and r["mode"] == "bare"), None)
        work = row["workers_cpu_ms_per_image"] if row["workers"] else row["main_cpu_ms_per_image"]
        ok = bare is not None and bare["main_cpu_ms_per_image"] and work
        row["cpu_ratio_to_bare"] = bare["main_cpu_ms_per_image"] / work if ok and row["mode"] != "bare" else None
        main = row["main_cpu_ms_per_image"]
        row["main_process_ceiling_images_per_s"] = 1e3 / main if row["workers"] and main else None
    return rows


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def _x(v):
    return "-" if v is None else f"{v:.2f}x"


def table(rows: List[Dict]) -> str:
    out = ["| data | configuration | workers | hand-over | img/s | img/s per worker | per worker / bare loop | "
           "CPU ms/img: workers | CPU ms/img: main process | worker CPU: bare / loader | main process ceiling img/s | "
           "failed |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        config = "bare loop (no DataLoader)" if r["mode"] == "bare" else "training loader"
        hand = "-" if r["mode"] == "bare" else ("main process" if r["workers"] == 0 else
                                                 {"pipe": "pipe", "shm": "shared memory"}[r["transport"]])
        out.append(f"| {r['source']} | {config} | {r['workers']} | {hand} | {_f(r['images_per_s'], '.0f')} | "
                   f"{_f(r['per_worker_images_per_s'], '.0f')} | {'-' if r['mode'] == 'bare' else _x(r['ratio_to_bare'])} | "
                   f"{_f(r['workers_cpu_ms_per_image'] if r['workers'] else None, '.2f')} | "
                   f"{_f(r['main_cpu_ms_per_image'], '.2f')} | {_x(r['cpu_ratio_to_bare'])} | "
                   f"{_f(r['main_process_ceiling_images_per_s'], '.0f')} | {r['failures']} of {r['attempts']} |")
    return "\n".join(out)


def verdicts(rows: List[Dict], cores: int, img_size: int) -> List[str]:
    """Per source and worker configuration: the ratios against TARGET, and what 16 workers like
    these would feed, by CPU time (16 cores for workers) and by the main process's one core."""
    lines = []
    for r in rows:
        if r["mode"] == "bare" or r["workers"] == 0:
            continue
        if r["images_per_s"] is None:
            lines.append(f"- {r['label']}: no successful run")
            continue
        ceiling = r["main_process_ceiling_images_per_s"]
        worker_ms = r["workers_cpu_ms_per_image"]
        feed = 16 * 1e3 / worker_ms if worker_ms else None
        if r["source"] == "transfer":
            lines.append(f"- {r['label']}: {r['images_per_s']:.0f} img/s handed over "
                         f"({r['images_per_s'] * 3 * img_size * img_size * 4 / 1e9:.2f} GB/s of float32 images); "
                         f"the main process's CPU alone allows {_f(ceiling, '.0f')} img/s")
            continue
        crowded = " (workers + main process > cores)" if r["workers"] >= cores else ""
        wall, cpu = r["ratio_to_bare"], r["cpu_ratio_to_bare"]
        lines.append(
            f"- {r['label']}: per worker {_x(wall)} of the bare loop by the clock{crowded}, {_x(cpu)} by CPU time "
            f"({'meets' if cpu is not None and cpu >= TARGET else 'misses'} {TARGET}x); 16 such workers "
            f"{_f(feed, '.0f')} img/s, the main process's CPU {_f(ceiling, '.0f')} img/s (3,200 needed)")
    return lines


def _sources_available(args: Dict, sources: Sequence[str]) -> None:
    if "cifar" in sources or ("folder" in sources and not args.get("folder_given")):
        if not args["archive"] or not os.path.isfile(args["archive"]):
            raise BenchError(f"--archive {args['archive']}: no such file; the CIFAR-10 python archive "
                             "(cifar-10-python.tar.gz) is needed for the cifar source and to write the JPEG folder")
    if args.get("folder_given") and not os.path.isdir(os.path.join(args["folder"], "train")):
        raise BenchError(f"--folder {args['folder']}: no train/ folder in it (expected train/<class>/*.jpg)")


def parse_list(text: str, what: str, allowed: Optional[Sequence[str]] = None) -> List[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise BenchError(f"{what}: empty list")
    if allowed is not None:
        bad = [s for s in items if s not in allowed]
        if bad:
            raise BenchError(f"{what}: {', '.join(bad)} not one of {', '.join(allowed)}")
    return items


def parse_workers(text: str) -> List[int]:
    try:
        workers = [int(s) for s in parse_list(text, "--workers")]
    except ValueError:
        raise BenchError(f"--workers must be comma-separated integers >= 0, got {text!r}") from None
    if any(w < 0 or w > 64 for w in workers):
        raise BenchError(f"--workers must be integers in 0..64, got {text!r}")
    return workers


def run(opts, env: Dict, log=print) -> Dict:
    """The whole benchmark from tools/benchmark.py's parsed options; returns the JSON result."""
    sources = parse_list(opts.sources, "--sources", SOURCES)
    workers = parse_workers(opts.workers)
    transports = parse_list(opts.transports, "--transports", TRANSPORTS)
    if opts.batch < 1 or opts.batches < 1 or opts.rounds < 1 or opts.images < 1 or opts.img_size < 8:
        raise BenchError(f"--batch, --batches, --rounds and --images must be >= 1 and --img-size >= 8, got "
                         f"{opts.batch}, {opts.batches}, {opts.rounds}, {opts.images}, {opts.img_size}")
    if opts.timeout <= 0:
        raise BenchError(f"--timeout must be > 0 seconds, got {opts.timeout}")
    absolute = (lambda p: os.path.abspath(os.path.expanduser(p)) if p else p)  # the children run elsewhere
    args = {"archive": absolute(opts.archive), "folder": absolute(opts.folder), "folder_given": bool(opts.folder),
            "img_size": opts.img_size, "batch": opts.batch, "batches": opts.batches}
    _sources_available(args, sources)
    tmp = tempfile.TemporaryDirectory(prefix="adaptformer-data-bench-")
    written = "folder" in sources and not opts.folder
    try:
        src = snapshot_package(os.path.join(tmp.name, "src"))
        env = dict(env, PYTHONPATH=src + os.pathsep + env.get("PYTHONPATH", ""))
        if written:
            start = time.perf_counter()
            args["folder"] = write_jpeg_folder(args["archive"], os.path.join(tmp.name, "jpegs"), opts.images)
            log(f"wrote {opts.images} JPEGs (320-500 px a side, quality 90) to {args['folder']} in "
                f"{time.perf_counter() - start:.0f} s")
        all_cases = cases(sources, workers, transports)
        rounds = []
        for r in range(opts.rounds):
            shift = r % len(all_cases)  # rotate the order: no configuration always runs first
            order = list(range(len(all_cases)))[shift:] + list(range(len(all_cases)))[:shift]
            results: List[Optional[Dict]] = [None] * len(all_cases)
            for i in order:
                results[i] = run_case(all_cases[i], {k: v for k, v in args.items() if k != "folder_given"},
                                      env, opts.timeout, cwd=src)
                res = results[i]
                what = f"{res['images_per_s']:.0f} img/s" if res["ok"] else f"FAILED ({res['reason']})"
                log(f"round {r + 1}/{opts.rounds}: {label(all_cases[i])}: {what}", flush=True)
            rounds.append(results)
    finally:
        tmp.cleanup()
    rows = summarize(all_cases, rounds)
    first = next((x for rr in rounds for x in rr if x.get("ok")), {})
    return {"rows": rows, "rounds": rounds, "settings": {k: v for k, v in args.items() if k != "folder_given"},
            "written_folder": written, "device": first.get("device"),
            "auto_shared_memory": first.get("auto_shared_memory"), "target": TARGET}


if __name__ == "__main__":
    _child()
