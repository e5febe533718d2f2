"""One command that checks a GPU runs what the package does, then measures it.

    python tools/gpu_check.py                      # GPU 0: ViT-B/16 + AdaptFormer-64, 224 px
    python tools/gpu_check.py --device cpu         # fp32 only, a tiny ViT (the test suite runs this)
    python tools/gpu_check.py --precisions fp32,o2-bf16 --out output/gpu_check

For each precision (fp32, then AMP O1 and O2 in float16 and bfloat16 on a GPU) it trains on
synthetic images, from a backbone it saves first, with the epoch chosen on a validation hold-out,
and checks:
  train      the run finishes, its final test evaluates every test image with a top-1 in [0, 1]
  eval       tools/eval.py's evaluation of best.pdparams gives the final test's top-1
  resume     a run stopped by Ctrl-C at the start of its last epoch and resumed ends with the
             straight run's weights (bit for bit unless --resume-atol)
  tuned      the tuned folder rebuilt on the saved backbone gives the run's logits
  taskbank   one TaskBank serving every precision's tuned folder gives each the same logits
  export     paddle.jit.save + Paddle Inference on the device give the dynamic graph's logits
Then tools/benchmark.py prints its table (images/s, memory, step time and memory against full
fine-tuning) for full, linear and AdaptFormer, in fp32 and bfloat16 O2 on a GPU. The process exits
1 when a check fails, naming it, and 2 on a bad option. Tolerances: docs/mixed_precision.md.
"""
import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import _cli

# name -> train.amp section; fp32 has AMP off
PRECISIONS = {
    "fp32": {"enabled": False},
    "o1-fp16": {"enabled": True, "dtype": "float16", "level": "O1"},
    "o1-bf16": {"enabled": True, "dtype": "bfloat16", "level": "O1"},
    "o2-fp16": {"enabled": True, "dtype": "float16", "level": "O2"},
    "o2-bf16": {"enabled": True, "dtype": "bfloat16", "level": "O2"},
}
# logits compared as max|a - b| <= atol + rtol * max|b|; the low-precision runs' models are
# rebuilt in float32 from weights that were rounded while training, hence the wider bands
TOLERANCE = {"fp32": (1e-5, 1e-5), "float16": (1e-3, 1e-2), "bfloat16": (1e-2, 5e-2)}
# top-1 of the final test (under the run's autocast) against tools/eval.py's float32 evaluation
TOP1_SLACK = {"fp32": 0, "float16": 2, "bfloat16": 3}  # test images that may flip

SIZES = {  # per device: the model, its data and the benchmark's batch
    "gpu": {"model": {"name": "vit_base_patch16_224", "kwargs": {}}, "bottleneck": 64, "img_size": 224,
            "batch": 32, "train_images": 128, "test_images": 64, "bench_batch": 64, "bench_steps": 10},
    "cpu": {"model": {"name": "vit_tiny_patch4_32", "kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2}},
            "bottleneck": 4, "img_size": 32, "batch": 16, "train_images": 64, "test_images": 24,
            "bench_batch": 8, "bench_steps": 1},
}
NUM_CLASSES = 4


class Checks:
    """Each check's outcome, printed as it comes; what the runs print goes to LOG."""

    def __init__(self, log):
        self.rows, self.log = [], log

    def run(self, precision, name, fn, quiet=True):
        start = time.perf_counter()
        try:
            with open(self.log, "a") as log, contextlib.redirect_stdout(log if quiet else sys.stdout):
                print(f"--- {precision} {name}", file=log, flush=True)
                detail = fn()
            ok = True
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001  (every failure is reported, the next check runs)
            from adaptformer.errors import one_line

            ok, detail = False, f"{type(e).__name__}: {one_line(e)}"
        self.rows.append((precision, name, ok, detail))
        print(f"[{'ok' if ok else 'FAIL'}] {precision:8s} {name:9s} {detail} ({time.perf_counter() - start:.1f} s)",
              flush=True)
        return ok

    @property
    def failed(self):
        return [f"{p} {n}" for p, n, ok, _ in self.rows if not ok]


class CheckFailed(AssertionError):
    pass


def compare(what, got, want, atol, rtol):
    import numpy as np

    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise CheckFailed(f"{what}: shape {got.shape}, expected {want.shape}")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    bound = atol + rtol * float(np.max(np.abs(want))) if want.size else atol
    if not np.isfinite(diff) or diff > bound:
        raise CheckFailed(f"{what}: max |difference| {diff:.3g} > {bound:.3g}")
    return diff


def run_config(work, size, precision, name, overrides=()):
    """The run config of one training, written to WORK/NAME.yaml and loaded."""
    import yaml

    from adaptformer.config import load_config

    cfg = {
        "model": {**size["model"], "num_classes": NUM_CLASSES, "pretrained": os.path.join(work, "backbone.pdparams")},
        "method": {"name": "adaptformer", "adaptformer": {"bottleneck": size["bottleneck"], "scale": 0.1,
                                                          "dropout": 0.1}},
        "data": {"dataset": "synthetic", "img_size": size["img_size"], "synthetic_num_classes": NUM_CLASSES,
                 "synthetic_train_size": size["train_images"], "synthetic_eval_size": size["test_images"],
                 "val_fraction": 0.25, "batch_size": size["batch"], "num_workers": 0},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05},
        "scheduler": {"name": "cosine", "warmup_steps": 2},
        "train": {"epochs": 2, "seed": 0, "log_every": 1000, "output_dir": os.path.join(work, name),
                  "amp": PRECISIONS[precision]},
    }
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return load_config(path, list(overrides))


def fixed_batch(size, seed=7):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 3, size["img_size"], size["img_size"])).astype("float32")


def logits(model, x):
    import paddle

    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).astype("float32").numpy()


def weights_of(last):
    """The model tensors of a run's last.pdckpt, as NumPy arrays."""
    import numpy as np

    from adaptformer.weights.checkpoint import read_resume_state

    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            for k, v in read_resume_state(last)["model"].items()}


def check_precision(checks, work, size, precision, device, args, bank, bank_logits, x):
    from adaptformer.engine import evaluate, train
    from adaptformer.engine.trainer import BEST, LAST, Trainer
    from adaptformer.errors import Interrupted
    from adaptformer.serve import trained
    from adaptformer.serve.export import InferenceModel, export

    low = PRECISIONS[precision].get("dtype", "fp32")
    atol, rtol = TOLERANCE[low]
    cfg = run_config(work, size, precision, precision, args.override)  # checked before any run by main
    summary = {}

    def train_straight():
        summary.update(train(cfg))
        n = summary["test_images"]
        if n != size["test_images"] or not 0 <= summary["test_top1"] <= 1:
            raise CheckFailed(f"final test of {n} images (expected {size['test_images']}), "
                              f"top-1 {summary['test_top1']}")
        return f"test top-1 {summary['test_top1']:.4f} (epoch {summary['best_epoch']} chosen on val)"

    if not checks.run(precision, "train", train_straight):
        return
    out = cfg.train.output_dir

    def eval_again():
        result = evaluate(cfg, os.path.join(out, BEST))
        flipped = round(abs(result["top1"] - summary["test_top1"]) * result["num_samples"])
        if flipped > TOP1_SLACK[low]:
            raise CheckFailed(f"tools/eval.py top-1 {result['top1']:.4f}, final test {summary['test_top1']:.4f}")
        return f"top-1 {result['top1']:.4f}, {flipped} image(s) apart"

    def resume():
        again = run_config(work, size, precision, precision + "-resumed", args.override)
        original = Trainer.train_one_epoch

        def ctrl_c_in_the_last_epoch(self, epoch):
            if epoch == again.train.epochs:
                signal.raise_signal(signal.SIGINT)  # Ctrl-C: the trainer stops after the step it is in
            return original(self, epoch)

        Trainer.train_one_epoch = ctrl_c_in_the_last_epoch
        stopped = ""
        try:
            train(again)
        except Interrupted as e:
            stopped = str(e).partition(";")[0]
        else:
            raise CheckFailed("the run was not interrupted")
        finally:
            Trainer.train_one_epoch = original
        train(again, resume=True)
        a, b = weights_of(os.path.join(out, LAST)), weights_of(os.path.join(again.train.output_dir, LAST))
        if sorted(a) != sorted(b):
            raise CheckFailed("the resumed run's checkpoint holds other tensors")
        worst = max(compare(k, b[k], a[k], args.resume_atol, 0.0) for k in a)
        return f"{stopped}, resumed: {len(a)} tensors, max |difference| {worst:.3g}"

    reference = {}

    def tuned():
        run = trained.from_run(cfg, os.path.join(out, BEST), log=lambda *a: None)
        reference["logits"] = logits(run.model, x)
        model = trained.from_tuned(os.path.join(out, "tuned"), log=lambda *a: None)
        return f"max |difference| {compare('logits', logits(model.model, x), reference['logits'], atol, rtol):.3g}"

    def taskbank():
        bank.add(precision, os.path.join(out, "tuned"))
        served = {}
        for name in bank.names:  # every task still answers as it did once another joins
            bank.activate(name)
            served[name] = bank(x).astype("float32").numpy()
        diff = compare("logits", served[precision], reference["logits"], atol, rtol)
        for name, earlier in bank_logits.items():
            compare(f"task {name} after {precision} joined", served[name], earlier, 0.0, 0.0)
        bank_logits[precision] = served[precision]
        return f"{len(bank.names)} task(s), max |difference| {diff:.3g}"

    def export_and_infer():
        model = trained.from_tuned(os.path.join(out, "tuned"), log=lambda *a: None)
        want = logits(model.model, x)
        prefix = os.path.join(work, "export", precision)
        export(model, prefix)
        got = InferenceModel(prefix, device=device)(x)
        return f"Paddle Inference on {device}, max |difference| {compare('logits', got, want, 1e-4, 1e-4):.3g}"

    checks.run(precision, "eval", eval_again)
    checks.run(precision, "resume", resume)
    if checks.run(precision, "tuned", tuned):
        checks.run(precision, "taskbank", taskbank)
    checks.run(precision, "export", export_and_infer)


def benchmark(checks, work, size, args):
    """tools/benchmark.py on the check's model at the device's batch; its table is printed as is."""
    amp = "train.amp.enabled=true;train.amp.dtype=bfloat16;train.amp.level=O2"
    methods = ["full", "linear", "adaptformer"]
    if args.device == "gpu" and "o2-bf16" in args.precisions:
        methods += [f"full@{amp}", f"adaptformer@{amp}"]
    run_config(work, size, "fp32", "bench")  # writes WORK/bench.yaml, checked as it is loaded
    path = os.path.join(work, "bench.yaml")
    cmd = [sys.executable, os.path.join(_cli.ROOT, "tools", "benchmark.py"), "-c", path,
           "--methods", ",".join(methods), "--steps", str(size["bench_steps"]), "--warmup", "1",
           "-o", f"data.batch_size={size['bench_batch']}", "-o", "model.pretrained=null",
           "--json", os.path.join(work, "benchmark.json")]

    def run():
        proc = subprocess.run(cmd, capture_output=True, text=True)
        print(proc.stdout, end="", flush=True)  # the table, to the terminal
        if proc.returncode != 0:
            raise CheckFailed(f"tools/benchmark.py exit {proc.returncode}: "
                              + " | ".join(proc.stderr.strip().splitlines()[-3:]))
        return f"{len(methods)} rows in {os.path.join(work, 'benchmark.json')}"

    checks.run("-", "benchmark", run, quiet=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu",
                        help="gpu: GPU 0 with a CUDA build of Paddle (default); cpu: fp32 and a tiny ViT")
    parser.add_argument("--precisions", default=None,
                        help=f"comma-separated, of {', '.join(PRECISIONS)} (default: all on gpu, fp32 on cpu)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config key for every training run (repeatable)")
    parser.add_argument("--resume-atol", type=float, default=0.0,
                        help="allowed |difference| of resumed weights (default 0: bit for bit)")
    parser.add_argument("--out", help="keep the runs in this new folder (default: a temporary one, removed)")
    parser.add_argument("--no-benchmark", action="store_true", help="skip the benchmark table")
    args = parser.parse_args()
    args.precisions = [p.strip() for p in (args.precisions or ("fp32" if args.device == "cpu" else
                                                               ",".join(PRECISIONS))).split(",") if p.strip()]
    unknown = [p for p in args.precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"--precisions: unknown {', '.join(unknown)}; expected some of {', '.join(PRECISIONS)}")
    if args.device == "cpu" and args.precisions != ["fp32"]:
        parser.error("--device cpu runs fp32 only: Paddle's CPU build runs AMP in float32")
    if args.resume_atol < 0:
        parser.error(f"--resume-atol must be >= 0, got {args.resume_atol}")
    if args.out and os.path.lexists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        parser.error(f"--out {args.out}: must be a new or empty folder")

    import paddle

    if args.device == "gpu":
        if not paddle.is_compiled_with_cuda() or paddle.device.cuda.device_count() < 1:
            from adaptformer.errors import UserError

            raise UserError("--device gpu: this Paddle has no GPU to use (install the CUDA build, "
                            "pip install paddlepaddle-gpu, on a machine with one) or pass --device cpu")
        paddle.set_device("gpu:0")
        paddle.set_flags({"FLAGS_cudnn_deterministic": True})  # for the bit-for-bit resume
        device = "gpu:0"
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the benchmark's processes too
        paddle.set_device("cpu")
        device = "cpu"

    from adaptformer.models import create_model
    from adaptformer.serve.tasks import TaskBank
    from adaptformer.weights import load_pretrained
    from adaptformer.weights.checkpoint import save_state

    size = SIZES[args.device]
    work = args.out or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(work, exist_ok=True)
    started = time.perf_counter()
    print(f"gpu_check on {paddle.device.get_device()} (Paddle {paddle.__version__}): {size['model']['name']} + "
          f"AdaptFormer-{size['bottleneck']}, {size['img_size']} px, precisions {', '.join(args.precisions)}; "
          f"runs in {work}", flush=True)
    checks = Checks(os.path.join(work, "gpu_check.log"))
    try:
        for precision in args.precisions:  # a bad -o is one line before any training
            run_config(work, size, precision, precision, args.override)
        paddle.seed(0)
        backbone = create_model(size["model"]["name"], num_classes=0, **size["model"]["kwargs"])
        save_state(backbone.state_dict(), os.path.join(work, "backbone.pdparams"))  # what every run starts from
        served = create_model(size["model"]["name"], num_classes=0, **size["model"]["kwargs"])
        load_pretrained(served, os.path.join(work, "backbone.pdparams"))
        bank, bank_logits = TaskBank(served, log=lambda *a: None), {}
        x = fixed_batch(size)
        for precision in args.precisions:
            check_precision(checks, work, size, precision, device, args, bank, bank_logits, x)
        if not args.no_benchmark:
            benchmark(checks, work, size, args)
    finally:
        if not args.out and not checks.failed:
            shutil.rmtree(work, ignore_errors=True)
    took = time.perf_counter() - started
    if checks.failed:
        print(f"gpu_check: {len(checks.failed)} of {len(checks.rows)} checks failed in {took:.0f} s: "
              f"{', '.join(checks.failed)}; the runs and their log are in {work}", file=sys.stderr)
        sys.exit(1)
    print(f"gpu_check: all {len(checks.rows)} checks passed in {took:.0f} s")


if __name__ == "__main__":
    _cli.run(main)
