"""Process-group helpers: the same code runs alone or under
`python -m paddle.distributed.launch --nproc_per_node N`."""
from __future__ import annotations

import numpy as np
import paddle
import paddle.distributed as dist


def world_size() -> int:
    return dist.get_world_size()


def rank() -> int:
    return dist.get_rank()


def is_main() -> bool:
    return rank() == 0


def init() -> None:
    """Join the process group once when launched with several processes."""
    if world_size() > 1 and not dist.is_initialized():
        dist.init_parallel_env()


def all_reduce_sum(values: np.ndarray) -> np.ndarray:
    """Element-wise sum over all processes (float64 on the host)."""
    values = np.asarray(values, dtype=np.float64)
    if world_size() == 1:
        return values
    t = paddle.to_tensor(values)
    dist.all_reduce(t)
    return t.numpy()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
