"""AdaptFormer and parameter-efficient fine-tuning of Vision Transformers in PaddlePaddle."""
import os
import sys
import warnings

__version__ = "0.1.0"


def _prefer_fast_mkl_on_amd() -> None:
    # Paddle's bundled MKL takes a generic code path on AMD CPUs unless this is set
    # before the library loads (measured about 3x on GEMM here). On Intel it would
    # force a slower path, so only AMD gets it; a value the user set always wins.
    if "paddle" in sys.modules or "MKL_DEBUG_CPU_TYPE" in os.environ:
        return
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="ignore") as f:
            amd = "AuthenticAMD" in f.read(4096)
    except OSError:
        return
    if amd:
        os.environ["MKL_DEBUG_CPU_TYPE"] = "5"


def _prefer_copies_to_strided_views() -> None:
    # With stride kernels (Paddle's default), transpose, slice and unbind return views and
    # the copy happens later in generic strided kernels; on CPU a ViT-B/16 training step
    # took 12.3 s that way and 9.1 s with them off, with identical results
    # (docs/benchmarks.md). A value the user set wins; the package itself relies on no views.
    if "FLAGS_use_stride_kernel" in os.environ:
        return
    if "paddle" in sys.modules:
        sys.modules["paddle"].set_flags({"FLAGS_use_stride_kernel": False})
    else:
        os.environ["FLAGS_use_stride_kernel"] = "0"


def _use_every_core() -> None:
    # Paddle's CPU kernels read OMP_NUM_THREADS once, when paddle loads, and run on one
    # thread without it (a float32 GEMM here: 66 GFLOP/s unset, 122 with 2 threads).
    if "paddle" in sys.modules or "OMP_NUM_THREADS" in os.environ:
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(cores)


_prefer_fast_mkl_on_amd()
_use_every_core()
_prefer_copies_to_strided_views()

# Paddle warns on every import that ccache (for compiling C++ extensions) is absent; nothing here compiles.
warnings.filterwarnings("ignore", message="No ccache found")
