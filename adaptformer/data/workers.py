"""What every DataLoader worker process does first.

Workers are forked from the training process. If that process is killed (kill -9,
the OOM killer), Paddle's workers would live on, blocked on their queues and
holding their memory; on Linux the kernel can instead send them SIGKILL when their
parent dies (prctl PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from typing import Callable

_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int, worker_id: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def worker_init_fn() -> Callable[[int], None]:
    """A `worker_init_fn` for paddle.io.DataLoader, bound to the calling (parent) process."""
    return functools.partial(_die_with, os.getpid())
