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


def test_threads_default_to_the_usable_cores_unless_set():
    probe = "import os, adaptformer, paddle; print(os.environ['OMP_NUM_THREADS'])"
    base = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    for env, expected in ((base, str(len(os.sched_getaffinity(0)))), ({**base, "OMP_NUM_THREADS": "1"}, "1")):
        proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={**env, "PYTHONPATH": ROOT},
                              capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip().splitlines()[-1] == expected, proc.stderr
