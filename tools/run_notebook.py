"""Execute a notebook and save it with its outputs (by default docs/notebook.ipynb, in place).

    python tools/run_notebook.py                                         # render docs/notebook.ipynb
    python tools/run_notebook.py --data tiny.tar.gz --out /tmp/nb.ipynb   # another archive, another file

The cells run in Jupyter's `python3` kernel, with the repository root as the working
directory and first on PYTHONPATH, so the notebook imports this checkout. `--data` sets
ADAPTFORMER_NOTEBOOK_DATA, the CIFAR-10 archive the notebook reads (default: the project's
subset, ../shared/data/cifar10-subset/cifar-10-python.tar.gz). The kernel must be this
interpreter: an extra cell, not saved, compares its sys.executable and sys.prefix with this
process's. `--timeout` bounds the whole run, kernel start included (default 120 s). Any cell
that raises stops the run, exit status 1, and nothing is written.

Needs nbclient, nbformat and ipykernel: pip install -e ".[test]".
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "docs", "notebook.ipynb")
DATA_ENV = "ADAPTFORMER_NOTEBOOK_DATA"
KERNEL = "python3"
TIMEOUT = 120.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks
_PROBE = "import json, sys\nprint(json.dumps([sys.executable, sys.prefix]))"


class NotebookError(RuntimeError):
    """The notebook did not run as required (wrong kernel, over time); the message says how."""


def _kernel_env(data: Optional[str]) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if data is not None:
        env[DATA_ENV] = os.path.abspath(data)
    return env


def _check_kernel(probe) -> None:
    """The probe cell printed the kernel's [sys.executable, sys.prefix]: they must be this process's."""
    text = "".join(o.get("text", "") for o in probe.outputs if o.get("output_type") == "stream")
    found = json.loads(text.strip().splitlines()[-1])
    expected = [sys.executable, sys.prefix]
    if [os.path.abspath(p) for p in found] != [os.path.abspath(p) for p in expected]:
        raise NotebookError(f"the {KERNEL} kernel runs {found[0]} (prefix {found[1]}), not this interpreter "
                            f"{expected[0]} (prefix {expected[1]}); install ipykernel into this environment")


def execute(path: str = NOTEBOOK, out: Optional[str] = None, data: Optional[str] = None,
            timeout: float = TIMEOUT) -> float:
    """Run every cell of notebook `path` and write it with its outputs to `out` (default: `path`).
    Returns the seconds taken, kernel start included."""
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_PROBE))
    start = time.monotonic()
    deadline = start + timeout
    with tempfile.TemporaryDirectory(prefix="run_notebook.") as sockets:
        config = Config()
        # Local sockets (ipykernel warns about unencrypted TCP), at an absolute path: a relative
        # one would be resolved from this process's and from the kernel's working directory.
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = os.path.join(sockets, "kernel")
        client = NotebookClient(
            nb,
            config=config,
            kernel_name=KERNEL,
            # Every cell gets what is left of the overall budget (nbclient takes 0 as no limit).
            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
            startup_timeout=max(1, int(timeout)),
            record_timing=False,  # no execution timestamps in the saved cells
            resources={"metadata": {"path": ROOT}},
        )
        client.execute(env=_kernel_env(data))
    elapsed = time.monotonic() - start
    _check_kernel(nb.cells.pop())
    if elapsed > timeout:
        raise NotebookError(f"{path} took {elapsed:.1f} s, more than the {timeout:.0f} s allowed")
    out = out or path
    tmp = f"{out}.{os.getpid()}.tmp"
    nbformat.write(nb, tmp)
    os.replace(tmp, out)
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", nargs="?", default=NOTEBOOK, help="default: docs/notebook.ipynb")
    parser.add_argument("--out", help="where the executed notebook is written (default: in place)")
    parser.add_argument("--data", help=f"CIFAR-10 archive for the notebook (sets {DATA_ENV})")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds for the whole run (default 120)")
    args = parser.parse_args(argv)
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    try:
        elapsed = execute(args.notebook, args.out, args.data, args.timeout)
    except (RuntimeError, CellTimeoutError) as e:  # NotebookError, DeadKernelError, a kernel that did not start
        print(f"error: {e}", file=sys.stderr)
        return 1
    except CellExecutionError as e:  # its message holds the cell's source and traceback
        print(f"error: a cell raised an exception\n{_ANSI.sub('', str(e))}", file=sys.stderr)
        return 1
    print(f"executed {args.notebook} in {elapsed:.1f} s; wrote {args.out or args.notebook}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
