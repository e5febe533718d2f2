"""DataLoader workers: the code they run makes no Paddle tensor, and they die with their parent.

Paddle tensor operations inside forked DataLoader workers crashed short runs on this
project's machines ("segmentation fault encountered in DataLoader workers" as an epoch's
workers ended); every dataset therefore returns NumPy arrays and tensors are made in the
main process by the DataLoader's collation.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import paddle.vision.transforms as T
import pytest
from PIL import Image

from adaptformer.config import AugmentConfig, DataConfig
from adaptformer.data import build_dataset
from adaptformer.data.transforms import ToNormalizedArray
from cifar_archive import write_cifar_archive
from test_data import write_image_folder

EVERY_AUGMENTATION = AugmentConfig(random_crop_padding=4, hflip=0.5, color_jitter_p=1.0, brightness=0.4,
                                   contrast=0.4, rotation=15.0)
RRC = AugmentConfig(random_resized_crop=True, random_crop_padding=0)


class HostAllocations:
    """Bytes Paddle's CPU allocator handed out at its peak since the start of the block."""

    def __enter__(self):
        core = paddle.base.core
        core.host_memory_stat_reset_peak_value("Allocated", 0)
        self.start = core.host_memory_stat_current_value("Allocated", 0)
        return self

    def __exit__(self, *exc):
        self.peak = paddle.base.core.host_memory_stat_peak_value("Allocated", 0) - self.start


def dataset_configs(tmp_path):
    c10 = write_cifar_archive(str(tmp_path / "c10.tar.gz"), "cifar10", 2, 1)
    folder = write_image_folder(tmp_path / "folder")
    yield "cifar", DataConfig(data_file=c10, augment=EVERY_AUGMENTATION)
    yield "cifar-224", DataConfig(data_file=c10, img_size=48, augment=RRC, eval_resize_crop=0.875)
    yield "synthetic", DataConfig(dataset="synthetic", synthetic_train_size=8, synthetic_eval_size=4,
                                  synthetic_num_classes=2, augment=EVERY_AUGMENTATION)
    yield "folder", DataConfig(dataset="folder", data_dir=folder, img_size=40, augment=RRC, eval_resize_crop=0.875)


def test_no_dataset_item_allocates_a_paddle_tensor(tmp_path):
    """Paddle's host allocator counts every CPU tensor; its peak stays 0 while items are made."""
    for name, cfg in dataset_configs(tmp_path):
        for split in ("train", "eval"):
            ds = build_dataset(cfg, split)
            with HostAllocations() as allocated:
                items = [ds[i] for i in range(len(ds))]
            assert allocated.peak == 0, f"{name} {split}: a Paddle tensor was made while reading items"
            img, label = items[0]
            assert isinstance(img, np.ndarray) and img.dtype == np.float32 and img.shape[0] == 3, (name, split)
            assert isinstance(label, np.ndarray) and label.dtype == np.int64, (name, split)


def test_the_guard_sees_paddles_totensor():
    """The check above can fail: Paddle's ToTensor + Normalize raise the allocation peak."""
    img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    with HostAllocations() as allocated:
        T.Normalize([0.5] * 3, [0.5] * 3)(T.ToTensor()(img))
    assert allocated.peak > 0


def test_normalized_array_equals_paddles_totensor_normalize():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (7, 5, 3), dtype=np.uint8))
    mean, std = [0.4914, 0.4822, 0.4465], [0.247, 0.243, 0.261]
    expected = T.Normalize(mean, std)(T.ToTensor()(img)).numpy()
    got = ToNormalizedArray(mean, std)(img)
    assert got.shape == (3, 7, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)



def test_normalized_array_is_bit_for_bit_the_formula():
    """The per-plane arithmetic gives exactly ((x / 255) - mean) / std in float32, so runs made
    before it (committed results) read the same inputs; uint8 and float HWC arrays alike."""
    rng = np.random.default_rng(1)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    for pixels in (rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), rng.uniform(0, 255, (4, 6, 3))):
        m = np.asarray(mean, np.float32).reshape(3, 1, 1)
        s = np.asarray(std, np.float32).reshape(3, 1, 1)
        expected = (np.asarray(pixels, np.float32).transpose(2, 0, 1) / np.float32(255.0) - m) / s
        got = ToNormalizedArray(mean, std)(pixels)
        assert got.flags["C_CONTIGUOUS"] and got.dtype == np.float32
        assert np.array_equal(got, expected)
    with pytest.raises(ValueError, match="height x width x 3"):
        ToNormalizedArray(mean, std)(np.zeros((4, 4), np.uint8))

ORPHAN_SCRIPT = """
import os, sys, time
import adaptformer
from adaptformer.config import DataConfig
from adaptformer.data import build_dataset
from adaptformer.data.workers import worker_init_fn
import paddle

class Slow(paddle.io.Dataset):
    def __init__(self):
        self.inner = build_dataset(DataConfig(dataset="synthetic", synthetic_train_size=64), "train")
    def __len__(self):
        return len(self.inner)
    def __getitem__(self, i):
        with open(os.path.join(sys.argv[1], f"worker{os.getpid()}"), "w"):
            pass
        if i >= 8:
            time.sleep(600)  # a worker stuck inside an item (a hung file system): Paddle's own watchdog waits
        return self.inner[i]

loader = paddle.io.DataLoader(Slow(), batch_size=2, num_workers=2, worker_init_fn=worker_init_fn())
for _ in loader:
    print("batch", flush=True)
    time.sleep(600)  # the test kills this process here
"""


def worker_pids(folder) -> list:
    return [int(n[len("worker"):]) for n in os.listdir(folder) if n.startswith("worker")]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_workers_exit_when_the_training_process_is_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "batch"
        deadline = time.time() + 60
        while len(workers := worker_pids(tmp_path)) < 2 and time.time() < deadline:
            time.sleep(0.1)  # under load the second worker may not have started an item yet
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 20
        while any(_alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "DataLoader workers outlived the killed parent"
    finally:
        proc.kill()
        proc.stdout.close()
