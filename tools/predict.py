"""Classify image files or folders with a trained run or a tuned folder (video files with a video run).

    python tools/predict.py photos/ cat.jpg                       # the most recent run under output/
    python tools/predict.py -c output/x/config.yaml [--checkpoint PATH] IMAGES_OR_DIRS...
    python tools/predict.py --tuned output/x/tuned [--backbone PATH] [--force] IMAGES_OR_DIRS...
        [--topk 5] [--batch-size 32] [--json OUT.json] [--plot OUT.png]

Prints one line per image, `path: name1 0.83, name2 0.10, ...`, or `path: error: why`.
Folders are walked for image files (sorted). Exit status: 0 every image classified, 1 some
could not be, 2 bad arguments or config (one `error:` line). Details: docs/predict_export.md.
"""
import argparse
import json
import os
import sys
import time

import _cli

PROGRESS_EVERY_S = 5.0  # when stderr is not a terminal


class Progress:
    """A one-line counter on stderr: rewritten in place on a terminal, a line every few seconds elsewhere."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled and total > 0
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            print(f"\rclassified {done}/{self.total} images", end="", file=sys.stderr, flush=True)
        elif now - self.last >= PROGRESS_EVERY_S or done == self.total:
            print(f"classified {done}/{self.total} images", file=sys.stderr, flush=True)
            self.last = now

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and folders of images")
    _cli.add_model_arguments(parser)
    parser.add_argument("--topk", type=positive, default=5, help="classes shown per image (default 5)")
    parser.add_argument("--batch-size", type=positive, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--json", metavar="OUT", help="write every result to this JSON file")
    parser.add_argument("--plot", metavar="OUT.png", help="write a grid of the images with their predictions")
    args = parser.parse_args()

    from adaptformer.serve.predict import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Predictor, expand_inputs, true_label
    from adaptformer.errors import one_line, quoted
    from adaptformer.files import check_outputs
    from adaptformer.files.atomic import atomic_write_text, require_writable_dir

    outputs = {"--json": args.json, "--plot": args.plot}
    paths, empty = expand_inputs(args.inputs, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)  # for the output checks
    check_outputs(outputs, [args.config, args.checkpoint, args.backbone, *args.inputs, *paths])
    for out in (args.json, args.plot):
        if out:
            require_writable_dir(os.path.dirname(os.path.abspath(out)))  # fail before the work, not after
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731  (stdout: one line per image)
    trained = _cli.load_trained(parser, args, verb="predicting with", log=log)
    check_outputs(outputs, trained.inputs)
    predictor = Predictor.from_trained(trained, batch_size=args.batch_size)
    if predictor.video is not None and args.plot:
        parser.error("--plot draws images with their predictions; this is a video model")
    paths, empty = expand_inputs(args.inputs, predictor.extensions)  # folders: the files this model takes
    noun = "video" if predictor.video is not None else "image"

    for folder in empty:
        print(f"{quoted(folder)}: error: no {noun} files in this folder (looked for {', '.join(predictor.extensions)})")
    progress = Progress(len(paths), enabled=any(os.path.isdir(i) for i in args.inputs))
    predictions = []
    for p in predictor.iter_predict(paths, topk=args.topk):
        predictions.append(p)
        # Names are quoted when they hold a line break or other unprintable text: one line per image.
        if p.ok:
            print(f"{quoted(p.source)}: " + ", ".join(f"{quoted(name)} {score:.2f}" for name, score in p.top), flush=True)
        else:
            print(f"{quoted(p.source)}: error: {one_line(p.error)}", flush=True)
        progress.update(len(predictions))
    progress.close()

    failed = sum(not p.ok for p in predictions) + len(empty)
    truths = [true_label(p.source, trained.class_names) for p in predictions]
    if args.json:
        results = [{**p.to_dict(), "true_label": t} for p, t in zip(predictions, truths)]
        doc = {"model": trained.source, "class_names": trained.class_names, "topk": args.topk,
               "num_images": len(predictions), "num_failed": failed, "empty_folders": empty, "results": results}
        atomic_write_text(args.json, json.dumps(doc, indent=2))
        log(f"wrote {args.json}")
    if args.plot:
        from adaptformer.viz.predict_plot import plot_predictions

        shown = plot_predictions(predictions, truths, args.plot)
        log(f"wrote {args.plot} ({shown} images)")
    if failed:
        log(f"{failed} of {len(predictions) + len(empty)} inputs could not be classified")
        sys.exit(1)


if __name__ == "__main__":
    _cli.run(main)
