"""Evaluate a checkpoint on the test split: top-1/top-5, per-class accuracy, confusion matrix, JSON.

    python tools/eval.py                                       # the most recent run under output/
    python tools/eval.py --checkpoint output/x/best.pdparams   # uses output/x/config.yaml
    python tools/eval.py -c CONFIG --checkpoint PATH [-o key=value ...] [--split val] [--json OUT]
"""
import argparse
import json
import os

import _cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", help="run config (default: the config.yaml saved beside the checkpoint)")
    parser.add_argument("--checkpoint", help="weights to evaluate (default: best.pdparams of -c's train.output_dir, "
                        "else the most recent best.pdparams under output/)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="test (default), or the validation hold-out of data.val_fraction")
    parser.add_argument("--json", help="where to write the results (default: next to the checkpoint)")
    args = parser.parse_args()

    from adaptformer.config import load_config
    from adaptformer.engine import evaluate
    from adaptformer.engine.runs import resolve_run
    from adaptformer.errors import quoted
    from adaptformer.files import check_outputs
    from adaptformer.files.run_folder import holds_run, record_written
    from adaptformer.files.atomic import atomic_write_text, require_writable_dir

    config, checkpoint = resolve_run(args.config, args.checkpoint, args.override, verb="evaluating")
    out = args.json or os.path.splitext(checkpoint)[0] + f"_{args.split}_eval.json"
    folder, out_name = os.path.split(os.path.abspath(out))
    ours = args.json is None and holds_run(folder)  # the default name beside a run's checkpoint is the run's
    if not ours:
        check_outputs({"--json": out}, [config, checkpoint])
    require_writable_dir(folder)  # fail before the evaluation, not after
    result = evaluate(load_config(config, args.override), checkpoint, split=args.split)

    print(f"checkpoint {checkpoint} (config {config})")
    print(f"{args.split} top-1 {result['top1']:.4f}" + (f"  top-5 {result['top5']:.4f}" if "top5" in result else "")
          + f"  loss {result['loss']:.4f}  on {result['num_samples']} images")
    shown = {quoted(n): acc for n, acc in result["per_class_accuracy"].items()}
    width = max(len(n) for n in shown)
    for name, acc in shown.items():
        print(f"  {name:<{width}}  {acc:.4f}")
    if ours:
        record_written(folder, out_name)
    atomic_write_text(out, json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    _cli.run(main)
