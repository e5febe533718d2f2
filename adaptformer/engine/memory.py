"""Peak memory of a run: GPU memory allocated by Paddle when it runs on a GPU, else the process's peak
resident set size (Linux VmHWM, reset at the start of each run through /proc/self/clear_refs)."""
from __future__ import annotations

from typing import Optional

import paddle


def on_gpu() -> bool:
    """Whether the run computes on a GPU: the device in use, not what the build could use (a CUDA
    build runs on the CPU after paddle.set_device("cpu") or with CUDA_VISIBLE_DEVICES empty)."""
    return paddle.device.get_device().startswith("gpu")


def reset_peak() -> None:
    if on_gpu():  # not measured here: no GPU on the development machines
        paddle.device.cuda.reset_max_memory_allocated()
        paddle.device.cuda.reset_max_memory_reserved()
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS to the current RSS
    except OSError:
        pass


def _status_mb(field: str) -> Optional[float]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_mb() -> Optional[float]:
    """Memory in use now: GPU memory allocated, else the resident set size."""
    if on_gpu():
        return paddle.device.cuda.memory_allocated() / 2**20
    return _status_mb("VmRSS")


def peak_reserved_mb() -> Optional[float]:
    """GPU memory held by Paddle's allocator at its peak (None on CPU)."""
    return paddle.device.cuda.max_memory_reserved() / 2**20 if on_gpu() else None


def peak_mb() -> Optional[float]:
    if on_gpu():
        return paddle.device.cuda.max_memory_allocated() / 2**20
    return _status_mb("VmHWM")
