"""Train one run, a study of chained runs, or a benchmark suite (tasks x methods) from a YAML config.

    python tools/train.py -c configs/cifar10_frozen.yaml [-o optimizer.lr=0.05 ...] [--resume]
    python tools/train.py -c configs/vtab/suite.yaml -o suite.data_root=/data/vtab-1k [--resume]
    python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py -c CONFIG
"""
import argparse

import _cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help="run, study or suite YAML file")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="set a config key, e.g. -o train.epochs=5 (repeatable; values are YAML)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in train.output_dir from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in a non-empty train.output_dir (its files are replaced as the new "
                             "run writes its own; none is deleted before)")
    args = parser.parse_args()

    from adaptformer.config import is_study, is_suite, load_config
    from adaptformer.engine import train
    from adaptformer.study.run import run_study

    if is_suite(args.config):
        from adaptformer.study.suite import run_suite

        run_suite(args.config, args.override, resume=args.resume, overwrite=args.overwrite)
    elif is_study(args.config):
        run_study(args.config, args.override, resume=args.resume, overwrite=args.overwrite)
    else:
        train(load_config(args.config, args.override), resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    _cli.run(main)
