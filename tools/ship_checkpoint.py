"""Copy a finished run's best checkpoint into the repository, with what made it.

    python tools/ship_checkpoint.py output/cpu/pretrain_first5 pretrained/cpu_vit6x192_cifar10_first5.pdparams

Writes DEST and DEST's name ending in .summary.json (the run's summary, per-epoch records,
resolved config and the sha256 of DEST), then prints the sha256 for the study's
`checkpoint_sha256`. A study stage with `checkpoint: DEST` then uses the file instead of training.
"""
import argparse
import json
import os
import shutil
import sys

import _cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a finished run's train.output_dir")
    parser.add_argument("dest", help="where the checkpoint goes (.pdparams)")
    args = parser.parse_args()

    from adaptformer.weights.checkpoint import CheckpointError
    from adaptformer.engine.logger import read_records
    from adaptformer.engine.trainer import BEST
    from adaptformer.study.run import sha256_of
    from adaptformer.files.atomic import atomic_write, atomic_write_text

    needed = [os.path.join(args.run_dir, n) for n in (BEST, "summary.json", "metrics.jsonl", "config.yaml")]
    missing = [p for p in needed if not os.path.isfile(p)]
    if missing:
        raise CheckpointError(f"{args.run_dir}: not a finished run (missing {', '.join(missing)})")
    atomic_write(args.dest, lambda tmp: shutil.copyfile(needed[0], tmp))
    with open(needed[1], encoding="utf-8") as f:
        summary = json.load(f)
    with open(needed[3], encoding="utf-8") as f:
        config = f.read()
    digest = sha256_of(args.dest)
    side = os.path.splitext(args.dest)[0] + ".summary.json"
    payload = {"sha256": digest, "made_by": f"python tools/train.py -c <config below>; {' '.join(sys.argv)}",
               "summary": summary, "records": read_records(needed[2]), "config": config}
    atomic_write_text(side, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.dest} and {side}\ncheckpoint_sha256: {digest}")


if __name__ == "__main__":
    _cli.run(main)
