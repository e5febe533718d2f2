"""Evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix, JSON.

    python tools/eval.py                                   # best checkpoint of configs/cifar10_frozen.yaml's run
    python tools/eval.py --checkpoint output/x/best.pdparams   # uses output/x/config.yaml
    python tools/eval.py -c CONFIG --checkpoint PATH [-o key=value ...] [--json OUT]
"""
import argparse
import json
import os

import _cli

DEFAULT_CONFIG = os.path.join(_cli.ROOT, "configs", "cifar10_frozen.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", help="run config (default: the checkpoint's saved config.yaml, "
                        "else configs/cifar10_frozen.yaml)")
    parser.add_argument("--checkpoint", help="weights to evaluate (default: best.pdparams in train.output_dir)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", help="where to write the results (default: next to the checkpoint)")
    args = parser.parse_args()

    from adaptformer.checkpoint import CheckpointError
    from adaptformer.config import load_config
    from adaptformer.engine import evaluate
    from adaptformer.engine.trainer import BEST
    from adaptformer.utils import require_writable_dir

    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = os.path.join(load_config(args.config or DEFAULT_CONFIG, args.override).train.output_dir, BEST)
    if not os.path.isfile(checkpoint):
        raise CheckpointError(
            f"no checkpoint at {checkpoint}: train first (python tools/train.py -c "
            f"{args.config or 'configs/cifar10_frozen.yaml'}) or pass --checkpoint PATH"
        )
    config = args.config
    if config is None:
        saved = os.path.join(os.path.dirname(checkpoint), "config.yaml")
        config = saved if os.path.isfile(saved) else DEFAULT_CONFIG
    out = args.json or os.path.splitext(checkpoint)[0] + "_eval.json"
    require_writable_dir(os.path.dirname(os.path.abspath(out)))  # fail before the evaluation, not after
    result = evaluate(load_config(config, args.override), checkpoint)

    print(f"checkpoint {checkpoint} (config {config})")
    print(f"top-1 {result['top1']:.4f}" + (f"  top-5 {result['top5']:.4f}" if "top5" in result else "")
          + f"  loss {result['loss']:.4f}  on {result['num_samples']} images")
    width = max(len(n) for n in result["class_names"])
    for name, acc in result["per_class_accuracy"].items():
        print(f"  {name:<{width}}  {acc:.4f}")
    from adaptformer.utils import atomic_write_text

    atomic_write_text(out, json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    _cli.run(main)
