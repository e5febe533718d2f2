"""The CPU defaults, applied when the package is imported: the only module with import-time effects.

- MKL_DEBUG_CPU_TYPE=5 on AMD CPUs (Paddle's MKL is about 3x faster on GEMM there);
- FLAGS_use_stride_kernel off (copies instead of strided views: faster ViT steps on CPU);
- every usable core for Paddle's CPU kernels, set right after Paddle is first imported.

Each is skipped when the user set its variable (MKL_DEBUG_CPU_TYPE, FLAGS_use_stride_kernel,
OMP_NUM_THREADS). Importing this module does not import Paddle.
"""
import importlib.abc
import importlib.util
import os
import sys
import warnings

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


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _use_every_core(paddle) -> None:
    # Paddle's CPU kernels run on one thread unless told otherwise (a float32 GEMM here ran
    # at about half the 2-thread rate). Setting OMP_NUM_THREADS before import works but makes
    # Paddle print "PLEASE USE OMP_NUM_THREADS WISELY" on every start; its own call after
    # import sets the same OpenMP/MKL thread count silently (bench/threads.py). Paddle
    # also writes OMP_NUM_THREADS=1 into the environment when it is unset; that is taken out
    # again so that child processes start from the user's environment, not from "1".
    if not _USER_SET_THREADS:
        os.environ.pop("OMP_NUM_THREADS", None)
        paddle.base.core.set_num_threads(_usable_cores())


def _when_paddle_loads(setup) -> None:
    """setup(paddle) at once if Paddle is loaded, else right after its first import: importing the
    package (its errors, config validation, the file readers) does not load Paddle itself."""
    if "paddle" in sys.modules:
        setup(sys.modules["paddle"])
        return

    class AfterPaddle(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "paddle":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.loader is not None:
                load = spec.loader.exec_module

                def exec_module(module):
                    load(module)
                    setup(module)

                spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, AfterPaddle())


_USER_SET_THREADS = "OMP_NUM_THREADS" in os.environ
_prefer_fast_mkl_on_amd()
_prefer_copies_to_strided_views()
# Paddle warns on every import that ccache (for compiling C++ extensions) is absent; nothing here compiles.
warnings.filterwarnings("ignore", message="No ccache found")
_when_paddle_loads(_use_every_core)
