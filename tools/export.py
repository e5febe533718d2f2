"""Export a trained run or tuned folder for deployment: Paddle Inference files (LoRA merged into
the weights) and a JSON of the input preparation; optionally ONNX.

    python tools/export.py -c output/x/config.yaml [--checkpoint PATH] -o exported/model
    python tools/export.py --tuned output/x/tuned [--backbone PATH] -o exported/model [--onnx]
    python tools/export.py -o exported/model                      # the most recent run under output/

Writes PREFIX.json + PREFIX.pdiparams (Paddle 3.x; PREFIX.pdmodel with older versions),
PREFIX.meta.json and, with --onnx, PREFIX.onnx. The batch dimension is dynamic unless
--batch-size fixes it. Details and loading in a few lines: docs/predict_export.md.
"""
import argparse
import os
import sys

import _cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", required=True, metavar="PREFIX",
                        help="path prefix of the files written (exported/model -> exported/model.json, ...)")
    _cli.add_model_arguments(parser, override=("--override",))
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch-size-dynamic", action="store_true",
                       help="any batch size at run time (the default)")
    batch.add_argument("--batch-size", type=int, metavar="N", help="fix the batch dimension to N")
    parser.add_argument("--onnx", action="store_true", help="also convert to PREFIX.onnx (needs the [onnx] extra)")
    args = parser.parse_args()
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")

    from adaptformer.errors import ExportError
    from adaptformer.serve.export import ONNX_INSTALL, convert_onnx, export, export_outputs, onnx_available
    from adaptformer.files import check_outputs

    if args.onnx and not onnx_available():  # before any work
        raise ExportError(f"--onnx needs the optional packages: {ONNX_INSTALL}")
    outputs = export_outputs(args.output, onnx=args.onnx)  # a prefix that is a folder is refused here
    check_outputs(outputs, [args.config, args.checkpoint, args.backbone])
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731
    trained = _cli.load_trained(parser, args, verb="exporting", log=log)
    check_outputs(outputs, trained.inputs)
    meta = export(trained, args.output, batch_size=args.batch_size)
    folder = os.path.dirname(args.output)
    print(f"wrote {os.path.join(folder, meta['program'])}, {os.path.join(folder, meta['params'])} and "
          f"{args.output}.meta.json "
          f"(input {meta['input']['shape']}, {len(meta['class_names'])} classes, "
          f"{meta['lora_layers_merged']} LoRA layers merged)")
    if args.onnx:
        print(f"wrote {convert_onnx(args.output, args.output + '.onnx')}")


if __name__ == "__main__":
    _cli.run(main)
