"""CPU inference images/s of one model three ways, measured side by side: Paddle's dynamic graph,
the same model exported for Paddle Inference (adaptformer/serve/export.py), and onnxruntime on its
paddle2onnx conversion (when the [onnx] extra is installed; skipped otherwise).

    python bench/deploy_throughput.py        # ViT-B/16 + AdaptFormer-64, 1000 classes, batch 1 and 8
    python bench/deploy_throughput.py --model vit_tiny_patch4_32 --kwargs depth=1 --rounds 2 --iters 2 \\
        --json /tmp/t.json --md /tmp/t.md    # a quick check

Weights are random (seeded): speed does not depend on them. Every round times each backend in
turn on the same input (the order rotates per round), so a slower machine moment hits all of
them; the ratios are medians of per-round ratios. Writes docs/benchmarks/deploy_throughput_cpu.json
and .md by default, with the exact command.
"""
import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import adaptformer  # noqa: E402  (threads and CPU flags before paddle loads)
import numpy as np  # noqa: E402
import paddle  # noqa: E402
import yaml  # noqa: E402

from adaptformer.config import MethodConfig  # noqa: E402
from adaptformer.methods.adaptformer import AdaptFormerConfig  # noqa: E402
from adaptformer.serve.export import InferenceModel, convert_onnx, onnx_available, onnx_session, save_inference  # noqa: E402
from adaptformer.methods import apply_method  # noqa: E402
from adaptformer.models import create_model  # noqa: E402
from adaptformer.files.atomic import atomic_write_text  # noqa: E402

OUT = os.path.join("docs", "benchmarks", "deploy_throughput_cpu")


def parse_kwargs(items):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --kwargs takes KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def build(args):
    paddle.seed(0)
    model = create_model(args.model, num_classes=args.num_classes, **parse_kwargs(args.kwargs))
    method = MethodConfig(name=args.method, adaptformer=AdaptFormerConfig(bottleneck=args.bottleneck))
    report = apply_method(model, method)
    model.eval()
    return model, str(report)


def dygraph(model):
    def run(x):
        with paddle.no_grad():
            return model(paddle.to_tensor(x)).numpy()
    return run


def images_per_s(fn, x, iters):
    start = time.perf_counter()
    for _ in range(iters):
        fn(x)
    return iters * x.shape[0] / (time.perf_counter() - start)


def measure(backends, batch, size, args):
    x = np.random.default_rng(batch).standard_normal((batch, 3, size, size)).astype(np.float32)
    outputs = {name: fn(x) for name, fn in backends.items()}
    reference = outputs["dygraph"]
    for fn in backends.values():
        for _ in range(args.warmup):
            fn(x)
    rates = {name: [] for name in backends}
    names = list(backends)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            rates[name].append(images_per_s(backends[name], x, args.iters))
    row = {"batch": batch, "images_per_s": {n: statistics.median(v) for n, v in rates.items()},
           "images_per_s_all_rounds": rates,
           "max_abs_diff_to_dygraph": {n: float(np.abs(o - reference).max()) for n, o in outputs.items()}}
    row["ratio_to_dygraph"] = {n: statistics.median(a / b for a, b in zip(v, rates["dygraph"]))
                               for n, v in rates.items()}
    return row


def markdown(result):
    names = result["backends"]
    lines = [f"Command: `{result['command']}`", "",
             f"Machine: {result['machine']}; {result['threads']} threads; Python {result['python']}; "
             f"paddlepaddle {result['versions']['paddle']}"
             + "".join(f"; {k} {v}" for k, v in result["versions"].items() if k != "paddle") + ".",
             f"Model: {result['model']} ({result['method_report']}), random weights, input {result['input']}.",
             f"Medians of {result['rounds']} interleaved rounds of {result['iters']} timed calls each, after "
             f"{result['warmup']} warm-up calls; ratios are medians of per-round ratios to the dynamic graph.",
             "", "| batch | " + " | ".join(f"{n} img/s" for n in names) + " | "
             + " | ".join(f"{n} / dygraph" for n in names[1:]) + " | max abs diff to dygraph |",
             "|---:|" + "---:|" * (2 * len(names) - 1) + "---|"]
    for row in result["rows"]:
        rates = " | ".join(f"{row['images_per_s'][n]:.2f}" for n in names)
        ratios = " | ".join(f"{row['ratio_to_dygraph'][n]:.2f}x" for n in names[1:])
        diffs = ", ".join(f"{n} {row['max_abs_diff_to_dygraph'][n]:.1e}" for n in names[1:])
        lines.append(f"| {row['batch']} | {rates} | {ratios} | {diffs} |")
    if result.get("onnx_skipped"):
        lines += ["", f"onnxruntime not measured: {result['onnx_skipped']}"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="model constructor arguments")
    parser.add_argument("--method", default="adaptformer", help="tuning method inserted (full: none)")
    parser.add_argument("--bottleneck", type=int, default=64, help="AdaptFormer bottleneck")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5, help="timed calls per backend and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--no-onnx", action="store_true", help="skip onnxruntime even when installed")
    parser.add_argument("--json", default=OUT + ".json")
    parser.add_argument("--md", default=OUT + ".md")
    args = parser.parse_args()

    paddle.base.core.set_num_threads(args.threads)
    model, report = build(args)
    size = model.patch_embed.img_size
    backends = {"dygraph": dygraph(model)}
    versions = {"paddle": paddle.__version__}
    skipped = None
    with tempfile.TemporaryDirectory(prefix="deploy_bench.") as tmp:
        prefix = os.path.join(tmp, "model")
        save_inference(model, prefix, [None, 3, size, size])
        inference = InferenceModel(prefix, threads=args.threads)
        backends["paddle_inference"] = inference
        if args.no_onnx:
            skipped = "--no-onnx"
        elif not onnx_available():
            skipped = "paddle2onnx / onnxruntime not installed (pip install -e \".[onnx]\")"
        else:
            import onnxruntime
            import paddle2onnx

            versions.update(paddle2onnx=paddle2onnx.__version__, onnxruntime=onnxruntime.__version__)
            backends["onnxruntime"] = onnx_session(convert_onnx(prefix, prefix + ".onnx"), threads=args.threads)
        rows = []
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            rows.append(measure(backends, batch, size, args))
            print(f"batch {batch}: " + ", ".join(f"{n} {v:.2f} img/s" for n, v in rows[-1]["images_per_s"].items())
                  + "; vs dygraph " + ", ".join(f"{n} {v:.2f}x" for n, v in rows[-1]["ratio_to_dygraph"].items()
                                                 if n != "dygraph"), flush=True)
    result = {
        "command": "python bench/deploy_throughput.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} usable cores",
        "python": platform.python_version(), "versions": versions, "threads": args.threads,
        "model": f"{args.model} {parse_kwargs(args.kwargs) or ''}".strip(), "method_report": report,
        "num_classes": args.num_classes, "input": [None, 3, size, size],
        "rounds": args.rounds, "iters": args.iters, "warmup": args.warmup,
        "backends": list(backends), "onnx_skipped": skipped, "rows": rows,
    }
    atomic_write_text(args.json, json.dumps(result, indent=2))
    atomic_write_text(args.md, markdown(result))
    print(f"wrote {args.json} and {args.md}")


if __name__ == "__main__":
    main()
