"""Shared start-up for the command-line tools: import path and one-line errors."""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import adaptformer  # noqa: E402,F401  (sets CPU environment before paddle loads)

# Paddle prints a two-line data-parallel warning on import whenever OMP_NUM_THREADS > 1, which
# adaptformer sets on purpose; dropping it keeps a failed command's stderr to its one error line.
_PADDLE_THREADS_BANNER = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY.")


def _import_paddle_quietly() -> None:
    import contextlib
    import io

    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        import paddle  # noqa: F401
    for line in captured.getvalue().splitlines():
        if not line.startswith(_PADDLE_THREADS_BANNER):
            print(line, file=sys.stderr)


_import_paddle_quietly()


def run(main) -> None:
    """Run main(); the package's own errors (adaptformer.errors.UserError: bad configs, files,
    outputs) and a diverged loss (FloatingPointError) print as one line and exit 2; Ctrl-C
    prints one line and exits 130."""
    from adaptformer.errors import UserError, one_line

    try:
        main()
    except (UserError, FloatingPointError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)  # one line even if a value named in it holds a break
        sys.exit(2)
    except KeyboardInterrupt as e:
        print(str(e) or "interrupted", file=sys.stderr)
        sys.exit(130)


def add_model_arguments(parser, override=("-o", "--override")) -> None:
    """The trained model a tool works on: a run (-c / --checkpoint / -o) or a tuned folder."""
    group = parser.add_argument_group("model (default: the most recent run under output/)")
    group.add_argument("-c", "--config", help="run config (default: the config.yaml saved beside --checkpoint)")
    group.add_argument("--checkpoint", help="the run's weights (default: best.pdparams in -c's train.output_dir)")
    group.add_argument(*override, dest="override", action="append", default=[], metavar="KEY=VALUE",
                       help="set a key of the run config (repeatable)")
    group.add_argument("--tuned", metavar="DIR", help="a tuned folder (tuned.pdparams + tuned.json) instead of a run")
    group.add_argument("--backbone", metavar="PATH", help="with --tuned: the backbone weights (default: the "
                       "path recorded in tuned.json)")
    group.add_argument("--force", action="store_true", help="with --tuned: accept a backbone whose fingerprint "
                       "differs from the one the tuned weights were trained on")


def load_trained(parser, args, verb: str, log=print):
    """The TrainedModel that add_model_arguments' options name; bad combinations exit 2 through argparse."""
    if args.tuned and (args.config or args.checkpoint or args.override):
        parser.error("--tuned cannot be combined with -c, --checkpoint or -o")
    if not args.tuned and (args.backbone or args.force):
        parser.error("--backbone and --force go with --tuned DIR")
    from adaptformer.serve import trained
    from adaptformer.engine.runs import resolve_run

    if args.tuned:
        return trained.from_tuned(args.tuned, args.backbone, args.force, log=log)
    config, checkpoint = resolve_run(args.config, args.checkpoint, args.override, verb=verb, log=log)
    return trained.from_run(config, checkpoint, args.override, log=log)
