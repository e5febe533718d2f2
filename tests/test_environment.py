"""What importing the package sets in Paddle's environment, and that the user's choice wins."""
import os
import subprocess
import sys

from conftest import ROOT

PROBE = (
    "import {first}; import {second}, paddle; "
    "print(paddle.get_flags(['FLAGS_use_stride_kernel'])['FLAGS_use_stride_kernel'])"
)


def stride_kernel(first, second, **env):
    base = {k: v for k, v in os.environ.items() if k != "FLAGS_use_stride_kernel"}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(first=first, second=second)], cwd=ROOT,
                          env={**base, "PYTHONPATH": ROOT, **env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_strided_views_are_off_whether_paddle_came_first_or_not():
    assert stride_kernel("adaptformer", "paddle") == "False"
    assert stride_kernel("paddle", "adaptformer") == "False"


def test_the_users_setting_wins():
    assert stride_kernel("adaptformer", "paddle", FLAGS_use_stride_kernel="1") == "True"


THREADS_PROBE = """
import ctypes, glob, os
import adaptformer, paddle
omp = ctypes.CDLL(glob.glob(os.path.join(os.path.dirname(paddle.__file__), "libs", "libiomp5*"))[0])
print(omp.omp_get_max_threads(), os.environ.get("OMP_NUM_THREADS"))
"""


def test_threads_default_to_the_usable_cores_silently_unless_set():
    """OpenMP (which Paddle's CPU kernels and MKL use) gets every usable core without Paddle's
    OMP_NUM_THREADS warning, children inherit the user's environment, and a user's value wins."""
    base = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    cores = len(os.sched_getaffinity(0))
    for env, expected in ((base, f"{cores} None"), ({**base, "OMP_NUM_THREADS": "1"}, "1 1")):
        proc = subprocess.run([sys.executable, "-c", THREADS_PROBE], cwd=ROOT, env={**env, "PYTHONPATH": ROOT},
                              capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip().splitlines()[-1] == expected, proc.stderr
        assert "OMP_NUM_THREADS WISELY" not in proc.stderr


LAYERING_PROBE = """
import sys
import adaptformer.errors, adaptformer.files, adaptformer.methods, adaptformer.data
from adaptformer.config import load_config
from adaptformer.data.kinds import KINDS
cfg = load_config("configs/cpu/smoke_synthetic.yaml", ["model.name=iformer_small", "data.dataset=folder"], method="lora")
print("paddle" in sys.modules, cfg.method.lora.rank, ",".join(KINDS))
"""


def test_validating_a_config_does_not_load_paddle():
    """Errors, file readers, the method and dataset registries and config validation (model names
    included) are layered below the model code: checking a YAML file needs no Paddle."""
    proc = subprocess.run([sys.executable, "-c", LAYERING_PROBE], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False 8 cifar10,cifar100,synthetic,folder,filelist,vtab,fgvc,food101,svhn,video"
