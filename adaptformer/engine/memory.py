"""Peak memory of a run: GPU memory allocated by Paddle on CUDA builds, else the process's peak
resident set size (Linux VmHWM, reset at the start of each run through /proc/self/clear_refs)."""
from __future__ import annotations

from typing import Optional

import paddle


def _on_gpu() -> bool:
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def reset_peak() -> None:
    if _on_gpu():  # not measured here: no GPU on the development machines
        paddle.device.cuda.reset_max_memory_allocated()
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS to the current RSS
    except OSError:
        pass


def peak_mb() -> Optional[float]:
    if _on_gpu():
        return paddle.device.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
