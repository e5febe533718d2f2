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
    """Run main(); the package's own errors, unwritable outputs and a diverged loss
    (FloatingPointError) print as one line and exit 2."""
    from adaptformer.checkpoint import CheckpointError
    from adaptformer.config import ConfigError
    from adaptformer.data import DataError
    from adaptformer.utils import OutputError

    try:
        main()
    except (ConfigError, DataError, CheckpointError, OutputError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
