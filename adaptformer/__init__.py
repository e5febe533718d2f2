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


_prefer_fast_mkl_on_amd()

# Paddle warns on every import that ccache (for compiling C++ extensions) is absent; nothing here compiles.
warnings.filterwarnings("ignore", message="No ccache found")
