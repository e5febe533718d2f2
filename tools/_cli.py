"""Shared start-up for the command-line tools: import path and one-line errors."""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import adaptformer  # noqa: E402,F401  (sets CPU environment before paddle loads)


def run(main) -> None:
    """Run main(); the package's own errors print as one line and exit 2."""
    from adaptformer.checkpoint import CheckpointError
    from adaptformer.config import ConfigError
    from adaptformer.data import DataError

    try:
        main()
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
