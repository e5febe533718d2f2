"""adaptformer.data: CIFAR archives generated into tmp_path, transforms, synthetic set."""
from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import sys
import warnings

import numpy as np
import paddle
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cifar_archive import class_colour, names, write_cifar_archive  # noqa: E402

from adaptformer.config import AugmentConfig, DataConfig  # noqa: E402
from adaptformer.data import DataError, build_dataset, class_names, num_classes  # noqa: E402
from adaptformer.data.kinds import cifar  # noqa: E402
from adaptformer.data.image_files import bad_image_label, load_rgb  # noqa: E402
from adaptformer.data.kinds.synthetic import SyntheticImages, class_pattern  # noqa: E402
from adaptformer.data.transforms import RandomApply, build_transforms  # noqa: E402

NO_AUG = AugmentConfig(random_crop_padding=0, hflip=0.0, color_jitter_p=0.0, rotation=0.0)
RAW = dict(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], augment=NO_AUG)


@pytest.fixture(scope="module")
def c10(tmp_path_factory) -> str:
    return write_cifar_archive(str(tmp_path_factory.mktemp("c10") / "c10.tar.gz"), "cifar10", 3, 2)


@pytest.fixture(scope="module")
def c100(tmp_path_factory) -> str:
    return write_cifar_archive(str(tmp_path_factory.mktemp("c100") / "c100.tar.gz"), "cifar100", 1, 1)


@pytest.fixture
def no_cache(tmp_path, monkeypatch) -> str:
    """Point Paddle's dataset cache at an empty folder and forbid real downloads."""
    home = tmp_path / "paddle_home"
    home.mkdir()
    monkeypatch.setattr(paddle.dataset.common, "DATA_HOME", str(home))

    def no_network(*args, **kwargs):
        raise AssertionError("the test tried to download")

    monkeypatch.setattr(paddle.dataset.common, "download", no_network)
    return str(home)


def labels_of(ds) -> np.ndarray:
    return np.array([int(ds[i][1]) for i in range(len(ds))])


# --------------------------------------------------------------------------- CIFAR loading


def test_cifar10_loads_from_generated_archive(c10):
    cfg = DataConfig(dataset="cifar10", data_file=c10)
    train, ev = build_dataset(cfg, "train"), build_dataset(cfg, "eval")
    assert (len(train), len(ev)) == (30, 20)
    img, label = ev[0]
    assert isinstance(img, np.ndarray) and img.dtype == np.float32 and list(img.shape) == [3, 32, 32]
    assert np.asarray(label).dtype == np.int64
    assert np.bincount(labels_of(train), minlength=10).tolist() == [3] * 10
    assert np.bincount(labels_of(ev), minlength=10).tolist() == [2] * 10
    lo = (0 - np.array(cfg.mean)) / np.array(cfg.std)
    hi = (1 - np.array(cfg.mean)) / np.array(cfg.std)
    x = np.stack([ev[i][0] for i in range(len(ev))])
    assert (x.min(axis=(0, 2, 3)) >= lo - 1e-5).all() and (x.max(axis=(0, 2, 3)) <= hi + 1e-5).all()
    assert x.std() > 0.5  # normalised, not left in [0, 1]
    assert class_names(cfg) == names("cifar10")
    assert num_classes(cfg) == 10


def test_pixels_decode_in_rgb_plane_order(c10):
    ev = build_dataset(DataConfig(data_file=c10, **RAW), "eval")
    for i in range(len(ev)):
        img, label = ev[i]
        mean_rgb = img.mean(axis=(1, 2)) * 255
        assert np.abs(mean_rgb - class_colour(int(label))).max() < 3


def test_cifar100_loads_with_fine_labels_and_names(c100):
    cfg = DataConfig(dataset="cifar100", data_file=c100, **RAW)
    train, ev = build_dataset(cfg, "train"), build_dataset(cfg, "eval")
    assert (len(train), len(ev)) == (100, 100)
    assert sorted(labels_of(ev).tolist()) == list(range(100))
    img, label = train[5]
    assert np.abs(img.mean(axis=(1, 2)) * 255 - class_colour(int(label))).max() < 3
    assert class_names(cfg) == names("cifar100")
    assert num_classes(cfg) == 100


def test_data_dir_resolution(tmp_path, c10):
    folder = tmp_path / "cifar"
    folder.mkdir()
    os.symlink(c10, folder / "cifar-10-python.tar.gz")
    assert len(build_dataset(DataConfig(data_dir=str(folder)), "eval")) == 20
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(dataset="cifar100", data_dir=str(folder)), "eval")
    assert "data.data_dir" in str(e.value) and str(folder / "cifar-100-python.tar.gz") in str(e.value)


def test_data_file_wins_over_data_dir(tmp_path, c10):
    cfg = DataConfig(data_file=c10, data_dir=str(tmp_path / "nowhere"))
    assert len(build_dataset(cfg, "eval")) == 20


def test_missing_data_file_names_key_and_path(tmp_path):
    missing = str(tmp_path / "absent.tar.gz")
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(data_file=missing), "train")
    msg = str(e.value)
    assert "data.data_file" in msg and missing in msg and "\n" not in msg
    with pytest.raises(DataError, match="directory"):
        build_dataset(DataConfig(data_file=str(tmp_path)), "train")


def test_paddle_cache_is_used(no_cache, c10):
    os.makedirs(os.path.join(no_cache, "cifar"))
    os.symlink(c10, os.path.join(no_cache, "cifar", "cifar-10-python.tar.gz"))
    assert len(build_dataset(DataConfig(download=False), "train")) == 30


# --------------------------------------------------------------------------- class subsets


def test_class_subset_relabels_in_given_order(c10):
    cfg = DataConfig(data_file=c10, classes=[5, 7, 9], **RAW)
    train, ev = build_dataset(cfg, "train"), build_dataset(cfg, "eval")
    assert (len(train), len(ev)) == (9, 6)
    assert sorted(set(labels_of(train).tolist())) == [0, 1, 2]
    for i in range(len(train)):
        img, label = train[i]
        original = cfg.classes[int(label)]
        assert np.abs(img.mean(axis=(1, 2)) * 255 - class_colour(original)).max() < 3
    all_names = names("cifar10")
    assert class_names(cfg) == [all_names[5], all_names[7], all_names[9]]
    assert num_classes(cfg) == 3


def test_class_subset_order_matters(c10):
    a = build_dataset(DataConfig(data_file=c10, classes=[9, 5], **RAW), "eval")
    img, label = a[0]
    assert np.abs(img.mean(axis=(1, 2)) * 255 - class_colour([9, 5][int(label)])).max() < 3
    assert class_names(DataConfig(data_file=c10, classes=[9, 5])) == ["truck", "dog"]


@pytest.mark.parametrize("classes", [[3, 10], [-1], [0, 100]])
def test_bad_class_id(c10, classes):
    with pytest.raises(DataError, match=r"data\.classes"):
        build_dataset(DataConfig(data_file=c10, classes=classes), "train")


def test_class_id_valid_for_cifar100_only(c100):
    assert num_classes(DataConfig(dataset="cifar100", data_file=c100, classes=[99, 10])) == 2
    with pytest.raises(DataError, match=r"data\.classes"):
        class_names(DataConfig(dataset="cifar10", data_file=c100, classes=[99]))


# --------------------------------------------------------------------------- download / offline


def reachable(monkeypatch):
    monkeypatch.setattr(cifar, "check_reachable", lambda url: None)


def test_download_failure_is_one_line(no_cache, monkeypatch):
    calls = []

    def offline(url, module_name, md5sum, save_name=None):
        calls.append((url, module_name))
        raise RuntimeError("Cannot download https://example.invalid/cifar-10-python.tar.gz within retry limit 3")

    reachable(monkeypatch)
    monkeypatch.setattr(paddle.dataset.common, "download", offline)
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(download=True), "train")
    msg = str(e.value)
    assert calls == [("https://dataset.bj.bcebos.com/cifar/cifar-10-python.tar.gz", "cifar")]
    assert "\n" not in msg
    hint = "CIFAR-10 archive not available offline: pass -o data.data_file=/path/to/cifar-10-python.tar.gz"
    assert msg.startswith(hint)
    assert "data.data_dir" in msg and "download failed: RuntimeError: Cannot download" in msg


def test_unreachable_host_fails_before_the_downloader_starts(no_cache, monkeypatch, capfd):
    def unreachable(url):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar, "check_reachable", unreachable)  # no_cache: the downloader itself would fail the test
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(download=True), "train")
    assert "download failed: OSError: [Errno -3] Temporary failure" in str(e.value) and "\n" not in str(e.value)
    assert capfd.readouterr().err == ""


def test_download_off_and_nothing_cached(no_cache, monkeypatch):
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(dataset="cifar100", download=False), "eval")
    msg = str(e.value)
    assert "CIFAR-100 archive not available offline" in msg and "data.download is false" in msg
    assert os.path.join(no_cache, "cifar", "cifar-100-python.tar.gz") in msg and "\n" not in msg


def test_download_branch_reads_the_downloaded_archive(no_cache, monkeypatch, c10):
    def fake_download(url, module_name, md5sum, save_name=None):
        target = os.path.join(no_cache, module_name, os.path.basename(url))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(c10, target)
        return target

    reachable(monkeypatch)
    monkeypatch.setattr(paddle.dataset.common, "download", fake_download)
    cfg = DataConfig(download=True, classes=[1, 0])
    assert len(build_dataset(cfg, "eval")) == 4
    assert class_names(DataConfig(download=False)) == names("cifar10")  # now from the cache


# --------------------------------------------------------------------------- bad archives


def test_non_tar_file(tmp_path):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"this is not an archive" * 10)
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(data_file=str(bad)), "train")
    assert str(bad) in str(e.value) and "CIFAR-10" in str(e.value) and "\n" not in str(e.value)


def test_truncated_archive(tmp_path, c10):
    cut = tmp_path / "cut.tar.gz"
    data = open(c10, "rb").read()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.tar.gz"):
        build_dataset(DataConfig(data_file=str(cut)), "eval")


def test_wrong_kind_of_archive(c10, c100):
    with pytest.raises(DataError, match="this is a CIFAR-100 archive, but data.dataset is CIFAR-10"):
        build_dataset(DataConfig(dataset="cifar10", data_file=c100), "train")
    with pytest.raises(DataError, match="this is a CIFAR-10 archive, but data.dataset is CIFAR-100"):
        build_dataset(DataConfig(dataset="cifar100", data_file=c10), "eval")


def test_tar_without_cifar_members(tmp_path):
    import tarfile

    other = tmp_path / "other.tar.gz"
    (tmp_path / "hello.txt").write_text("hi")
    with tarfile.open(other, "w:gz") as tar:
        tar.add(tmp_path / "hello.txt", arcname="hello.txt")
    with pytest.raises(DataError, match=r"not a CIFAR-10 archive \(found hello.txt\)"):
        build_dataset(DataConfig(data_file=str(other)), "train")


# --------------------------------------------------------------------------- transforms


def test_eval_transform_is_deterministic(c10):
    ev = build_dataset(DataConfig(data_file=c10), "eval")
    random.seed(1)
    np.random.seed(1)
    a = ev[3][0]
    random.seed(2)
    np.random.seed(2)
    b = ev[3][0]
    assert np.array_equal(a, b)


def _augmented(ds, seed: int) -> np.ndarray:
    random.seed(seed)
    np.random.seed(seed)
    return np.stack([ds[i][0] for i in range(6)])


def test_train_augmentation_reproducible_after_reseed(c10):
    cfg = DataConfig(data_file=c10, augment=AugmentConfig(color_jitter_p=1.0, brightness=0.4, contrast=0.4))
    train = build_dataset(cfg, "train")
    first, again, other = _augmented(train, 5), _augmented(train, 5), _augmented(train, 6)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    no_aug = DataConfig(data_file=c10, augment=NO_AUG)
    assert not np.array_equal(first, _augmented(build_dataset(no_aug, "train"), 5))


def test_no_augmentation_equals_eval_transform(c10):
    cfg = DataConfig(data_file=c10, augment=NO_AUG)
    from PIL import Image

    img = Image.fromarray(np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3))
    assert np.array_equal(build_transforms(cfg, True)(img), build_transforms(cfg, False)(img))


def test_resize_when_img_size_differs(c10):
    cfg = DataConfig(data_file=c10, img_size=48)
    random.seed(0)
    assert list(build_dataset(cfg, "train")[0][0].shape) == [3, 48, 48]
    assert list(build_dataset(cfg, "eval")[0][0].shape) == [3, 48, 48]


def test_random_apply_uses_python_random():
    hits = []
    ra = RandomApply([lambda x: hits.append(x) or x + 1], p=0.3)
    random.seed(0)
    out = [ra(0) for _ in range(2000)]
    assert 0.25 < len(hits) / 2000 < 0.35 and set(out) == {0, 1}
    random.seed(0)
    assert [ra(0) for _ in range(2000)] == out
    assert RandomApply([lambda x: x + 1], p=0.0)(0) == 0


def test_transform_contains_configured_ops():
    ops = build_transforms(DataConfig(), True).transforms
    kinds = [type(t).__name__ for t in ops]
    assert kinds == ["RandomCrop", "RandomApply", "RandomHorizontalFlip", "RandomRotation", "ToNormalizedArray"]
    assert [type(t).__name__ for t in ops[1].transforms] == ["BrightnessTransform", "ContrastTransform"]
    assert [type(t).__name__ for t in build_transforms(DataConfig(img_size=64), False).transforms] == [
        "Resize",
        "ToNormalizedArray",
    ]


@pytest.mark.parametrize("field,value", [("hflip", 1.5), ("color_jitter_p", -0.1), ("rotation", -3.0)])
def test_bad_augment_value(field, value):
    aug = AugmentConfig(**{field: value})
    with pytest.raises(DataError, match=f"data.augment.{field}"):
        build_transforms(DataConfig(augment=aug), True)


def test_custom_train_transform_is_used(c10):
    ds = build_dataset(DataConfig(data_file=c10), "train", train_transform=lambda img: np.asarray(img))
    img, _ = ds[0]
    assert isinstance(img, np.ndarray) and img.shape == (32, 32, 3) and img.dtype == np.uint8


def test_dataloader_batches(c10):
    loader = paddle.io.DataLoader(build_dataset(DataConfig(data_file=c10), "train"), batch_size=8, shuffle=False)
    x, y = next(iter(loader))
    assert list(x.shape) == [8, 3, 32, 32] and x.dtype == paddle.float32
    assert list(y.shape) == [8] and y.dtype == paddle.int64


# --------------------------------------------------------------------------- synthetic


def test_synthetic_sizes_names_and_determinism():
    cfg = DataConfig(dataset="synthetic", synthetic_train_size=40, synthetic_eval_size=12, synthetic_num_classes=4)
    train, ev = build_dataset(cfg, "train"), build_dataset(cfg, "eval")
    assert (len(train), len(ev)) == (40, 12)
    assert np.bincount(labels_of(train)).tolist() == [10] * 4
    assert class_names(cfg) == ["class_0", "class_1", "class_2", "class_3"] and num_classes(cfg) == 4
    again = build_dataset(cfg, "eval")
    for i in range(len(ev)):
        assert np.array_equal(ev[i][0], again[i][0]) and int(ev[i][1]) == int(again[i][1])
    t0 = build_dataset(cfg, "train")
    assert np.array_equal(_augmented(train, 3), _augmented(t0, 3))
    raw_train = SyntheticImages(40, 4, 32, seed=0, transform=None)
    raw_eval = SyntheticImages(40, 4, 32, seed=1, transform=None)
    assert not np.array_equal(np.asarray(raw_train.image(0)), np.asarray(raw_eval.image(0)))


def test_synthetic_classes_are_separable():
    def features(ds):
        x = np.stack([np.asarray(ds.image(i), dtype=np.float32) for i in range(len(ds))])
        colour = x.mean(axis=(1, 2))
        vertical = np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3))[:, None]
        horizontal = np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))[:, None]
        return np.concatenate([colour, vertical, horizontal], axis=1)

    train = SyntheticImages(200, 10, 32, seed=0, transform=None)
    ev = SyntheticImages(100, 10, 32, seed=1, transform=None)
    ftr, fev = features(train), features(ev)
    centroids = np.stack([ftr[train.labels == c].mean(axis=0) for c in range(10)])
    pred = np.argmin(((fev[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == ev.labels).mean() > 0.9


def test_synthetic_class_subset_keeps_patterns():
    full = SyntheticImages(30, 6, 16, seed=0, transform=None)
    sub = SyntheticImages(30, 6, 16, seed=0, transform=None, classes=[4, 1])
    assert set(sub.labels.tolist()) == {0, 1}

    palette = np.stack([class_pattern(c)[0] for c in range(6)])
    for ds, patterns in ((sub, [4, 1]), (full, list(range(6)))):
        for i in range(len(ds)):
            mean = np.asarray(ds.image(i), dtype=np.float32).mean(axis=(0, 1))
            nearest = np.argmin(np.abs(palette / palette.mean(1, keepdims=True) - mean / mean.mean()).sum(1))
            assert nearest == patterns[int(ds.labels[i])]
    cfg = DataConfig(dataset="synthetic", synthetic_num_classes=6, classes=[4, 1], synthetic_eval_size=8)
    assert class_names(cfg) == ["class_4", "class_1"] and len(build_dataset(cfg, "eval")) == 8
    with pytest.raises(DataError, match=r"data\.classes"):
        build_dataset(DataConfig(dataset="synthetic", synthetic_num_classes=6, classes=[6]), "train")


def test_garbage_member_inside_valid_tar(tmp_path, c10):
    import tarfile

    broken = tmp_path / "broken.tar.gz"
    with tarfile.open(c10) as src, tarfile.open(broken, "w:gz") as dst:
        for member in src:
            payload = src.extractfile(member).read() if member.isfile() else None
            if member.name.endswith("test_batch"):
                payload = b"not a pickle"
                member.size = len(payload)
            dst.addfile(member, io.BytesIO(payload) if payload is not None else None)
    assert len(build_dataset(DataConfig(data_file=str(broken)), "train")) == 30
    with pytest.raises(DataError) as e:
        build_dataset(DataConfig(data_file=str(broken)), "eval")
    assert "broken.tar.gz" in str(e.value) and "cannot read the CIFAR-10 test data" in str(e.value)


WORKER_SEED_SCRIPT = """
import sys
import numpy as np
import paddle
from adaptformer.config import DataConfig
from adaptformer.data import build_dataset

train = build_dataset(DataConfig(data_file=sys.argv[1]), "train")
batches = {}
for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    np.random.seed(seed)
    # As build_loaders: Paddle 3.3's shared-memory transport fails intermittently.
    loader = paddle.io.DataLoader(train, batch_size=10, shuffle=False, num_workers=1, use_shared_memory=False)
    batches[name] = np.concatenate([images.numpy() for images, _ in loader])  # whole epoch: workers end cleanly
np.savez(sys.argv[2], **batches)
"""


def test_worker_augmentation_follows_numpy_seed(c10, tmp_path):
    """DataLoader workers reseed `random` from a base seed drawn from numpy in the main process.

    Runs in its own process: Paddle arms a process-wide SIGCHLD handler for its workers, which must
    not outlive this test inside the pytest process.
    """
    out = tmp_path / "batches.npz"
    r = subprocess.run([sys.executable, "-c", WORKER_SEED_SCRIPT, c10, str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(out)
    assert got["a"].shape == (30, 3, 32, 32)
    assert np.array_equal(got["a"], got["b"]) and not np.array_equal(got["a"], got["c"])


# --------------------------------------------------------------------------- image folders

from PIL import Image  # noqa: E402

from adaptformer.config import ConfigError, load_config  # noqa: E402
from adaptformer.data.transforms import RandomResizedCrop  # noqa: E402

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
FOLDER_COLOURS = {"ant": RED, "bee": GREEN, "cat": BLUE}
RRC_AUG = AugmentConfig(random_resized_crop=True, random_crop_padding=0, hflip=0.0, color_jitter_p=0.0, rotation=0.0)


def _solid(colour, size) -> Image.Image:
    return Image.new("RGB", size, colour)


def _palette_with_transparency(colour, size) -> Image.Image:
    img = Image.new("P", size, 1)
    img.putpalette([0, 0, 0, *colour] + [0] * (256 * 3 - 6))
    return img


def write_image_folder(root) -> str:
    """train/{ant,bee,cat} with 3/2/2 images and val/ with one per class, in several modes and sizes."""
    root = str(root)
    files = {
        "train/ant/a0.jpg": (_solid(RED, (30, 20)), {"quality": 100}),
        "train/ant/a1.png": (Image.new("L", (17, 23), 120), {}),  # grayscale
        "train/ant/sub/a2.png": (Image.new("RGBA", (24, 24), (*RED, 128)), {}),  # nested, with alpha
        # A palette with a half-transparent entry, stored as bytes (PIL warns converting it straight to RGB).
        "train/bee/b0.png": (_palette_with_transparency(GREEN, (10, 12)), {"transparency": b"\x00\x80"}),
        "train/bee/b1.PNG": (_solid(GREEN, (40, 12)), {}),
        "train/cat/c0.bmp": (_solid(BLUE, (9, 9)), {}),
        "train/cat/c1.png": (Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)), {}),  # 16-bit gray
        "val/ant/v0.png": (_solid(RED, (21, 13)), {}),
        "val/bee/v1.png": (_solid(GREEN, (13, 21)), {}),
        "val/cat/v2.png": (_solid(BLUE, (16, 16)), {}),
    }
    for rel, (img, kwargs) in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        img.save(path, **kwargs)
    with open(os.path.join(root, "train", "ant", "notes.txt"), "w") as f:
        f.write("not an image")  # ignored: not an image extension
    os.makedirs(os.path.join(root, "train", ".cache"))  # ignored: hidden folder, not a class
    return root


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> str:
    return write_image_folder(tmp_path_factory.mktemp("folder"))


@pytest.fixture
def image_copy(image_root, tmp_path) -> str:
    """A private copy of the image folder that a test may break."""
    import shutil

    return shutil.copytree(image_root, str(tmp_path / "images"))


def folder_cfg(root, **kwargs) -> DataConfig:
    return DataConfig(dataset="folder", data_dir=root, **{**RAW, **kwargs})


def test_folder_dataset_lengths_labels_and_names(image_root):
    cfg = folder_cfg(image_root)
    train, ev = build_dataset(cfg, "train"), build_dataset(cfg, "eval")
    assert (len(train), len(ev)) == (7, 3)
    assert labels_of(train).tolist() == [0, 0, 0, 1, 1, 2, 2] and labels_of(ev).tolist() == [0, 1, 2]
    assert class_names(cfg) == ["ant", "bee", "cat"] and num_classes(cfg) == 3
    for ds in (train, ev):
        for i in range(len(ds)):
            img, label = ds[i]
            assert list(img.shape) == [3, 32, 32] and img.dtype == np.float32  # any size -> img_size
            assert np.asarray(label).dtype == np.int64 and np.asarray(label).shape == ()
    x, y = next(iter(paddle.io.DataLoader(ev, batch_size=3, shuffle=False)))
    assert list(x.shape) == [3, 3, 32, 32] and y.numpy().tolist() == [0, 1, 2]


def test_folder_images_are_rgb_whatever_the_file_mode(image_root):
    train = build_dataset(folder_cfg(image_root), "train", train_transform=lambda img: img)
    expected = [RED, (120, 120, 120), RED, GREEN, GREEN, BLUE, (155, 155, 155)]  # 40000 // 257 = 155
    for i, colour in enumerate(expected):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. PIL's warning for a palette with transparency
            img, _ = train[i]
        assert isinstance(img, Image.Image) and img.mode == "RGB"
        assert np.abs(np.asarray(img, dtype=np.int64).reshape(-1, 3) - colour).max() <= 2, train.samples[i][0]
    eval_pixels = build_dataset(folder_cfg(image_root), "eval")[1][0].mean(axis=(1, 2)) * 255
    assert np.abs(eval_pixels - GREEN).max() < 2


def test_folder_class_subset_relabels_in_given_order(image_root):
    cfg = folder_cfg(image_root, classes=[2, 0])
    train, ev = build_dataset(cfg, "train"), build_dataset(cfg, "eval")
    assert (len(train), len(ev)) == (5, 2)
    assert class_names(cfg) == ["cat", "ant"] and num_classes(cfg) == 2
    raw = build_dataset(cfg, "train", train_transform=lambda img: img)
    for i in range(len(raw)):
        label = raw[i][1]
        folder = os.path.basename(os.path.dirname(raw.samples[i][0].replace(os.sep + "sub", "")))
        assert class_names(cfg)[int(label)] == folder
    assert sorted(labels_of(ev).tolist()) == [0, 1]
    for i in range(len(ev)):
        colour = FOLDER_COLOURS[class_names(cfg)[int(ev[i][1])]]
        assert np.abs(ev[i][0].mean(axis=(1, 2)) * 255 - colour).max() < 2
    with pytest.raises(DataError, match=r"data\.classes: ids \[3\] are outside \[0, 3\)"):
        build_dataset(folder_cfg(image_root, classes=[0, 3]), "train")


def test_imagenet_style_transform_ops_and_shapes(image_root):
    cfg = folder_cfg(image_root, img_size=16, eval_resize_crop=0.875, augment=RRC_AUG)
    train_ops = build_transforms(cfg, True).transforms
    eval_ops = build_transforms(cfg, False).transforms
    assert [type(t).__name__ for t in train_ops] == ["RandomResizedCrop", "ToNormalizedArray"]
    assert isinstance(train_ops[0], paddle.vision.transforms.RandomResizedCrop)
    assert train_ops[0].interpolation == "bicubic" and tuple(train_ops[0].scale) == (0.08, 1.0)
    assert train_ops[0].ratio == pytest.approx((0.75, 4 / 3))
    assert [type(t).__name__ for t in eval_ops] == ["Resize", "CenterCrop", "ToNormalizedArray"]
    assert eval_ops[0].size == 18 and eval_ops[0].interpolation == "bicubic"  # int(16 / 0.875)
    paper = folder_cfg(image_root, img_size=224, eval_resize_crop=0.875)
    assert build_transforms(paper, False).transforms[0].size == 256
    random.seed(0)
    for split in ("train", "eval"):
        ds = build_dataset(cfg, split)
        assert all(list(ds[i][0].shape) == [3, 16, 16] for i in range(len(ds)))


def test_eval_resize_crop_is_bicubic_shorter_side_then_centre(image_root):
    cfg = folder_cfg(image_root, img_size=16, eval_resize_crop=0.875)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, size=(20, 40, 3), dtype=np.uint8))  # 40 wide, 20 high
    got = build_transforms(cfg, False)(img).transpose(1, 2, 0)
    resized = np.asarray(img.resize((36, 18), Image.BICUBIC))  # shorter side 20 -> 18
    want = resized[1:17, 10:26] / 255.0
    assert got.shape == (16, 16, 3) and np.abs(got - want).max() < 1e-6


def test_random_resized_crop_draws_only_from_python_random():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(48, 64, 3), dtype=np.uint8))
    rrc = RandomResizedCrop(12, interpolation="bicubic")

    def crops(py_seed, np_seed):
        random.seed(py_seed)
        np.random.seed(np_seed)
        return np.stack([np.asarray(rrc(img)) for _ in range(8)])

    first = crops(3, 0)
    assert first.shape == (8, 12, 12, 3)
    assert np.array_equal(first, crops(3, 1))  # numpy's state does not matter
    assert not np.array_equal(first, crops(4, 0))
    random.seed(3)
    boxes = [rrc.crop_box(img) for _ in range(8)]
    assert len(set(boxes)) == 8


def test_random_resized_crop_boxes_respect_scale_and_ratio():
    img = Image.new("RGB", (100, 80))
    rrc = RandomResizedCrop(8, scale=(0.2, 0.5), ratio=(0.5, 2.0))
    random.seed(0)
    for _ in range(300):
        top, left, h, w = rrc.crop_box(img)
        assert 0 <= top <= 80 - h and 0 <= left <= 100 - w
        assert 0.2 * 8000 * 0.95 <= h * w <= 0.5 * 8000 * 1.05
        assert 0.5 * 0.9 <= w / h <= 2.0 * 1.1
    # No square crop of 90 % of the area fits a 100 x 10 strip: fall back to the centred 10 x 10 square.
    strip = np.zeros((10, 100, 3), dtype=np.uint8)
    strip[:, 45:55] = RED
    out = RandomResizedCrop(4, scale=(0.9, 1.0), ratio=(1.0, 1.0))(Image.fromarray(strip))
    assert np.array_equal(np.asarray(out).reshape(-1, 3), np.tile(RED, (16, 1)))
    whole = RandomResizedCrop(10, scale=(1.0, 1.0), ratio=(1.0, 1.0), interpolation="bicubic")
    square = Image.fromarray(np.random.default_rng(2).integers(0, 256, size=(30, 30, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(whole(square)), np.asarray(square.resize((10, 10), Image.BICUBIC)))


def test_folder_train_augmentation_reproducible_after_reseed(image_root):
    cfg = folder_cfg(image_root, img_size=16, augment=AugmentConfig(random_resized_crop=True, random_crop_padding=0))
    train = build_dataset(cfg, "train")
    first, again, other = _augmented(train, 5), _augmented(train, 5), _augmented(train, 6)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    random.seed(5)
    np.random.seed(99)  # only `random` drives the crops
    assert np.array_equal(first, np.stack([train[i][0] for i in range(6)]))


def test_new_options_off_keep_cifar_pipeline():
    assert type(build_transforms(DataConfig(), True).transforms[0]).__name__ == "RandomCrop"
    eval_ops = build_transforms(DataConfig(), False).transforms
    assert [type(t).__name__ for t in eval_ops] == ["ToNormalizedArray"]


def test_folder_errors_data_dir(tmp_path, image_root):
    with pytest.raises(DataError, match=r"^data\.data_dir must be given for data\.dataset folder"):
        build_dataset(DataConfig(dataset="folder"), "train")
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DataError) as e:
        build_dataset(folder_cfg(missing), "train")
    assert str(e.value).startswith(f"data.data_dir: {missing} does not exist") and "\n" not in str(e.value)
    with pytest.raises(DataError, match="is a file, not a folder"):
        class_names(folder_cfg(os.path.join(image_root, "val", "ant", "v0.png")))
    with pytest.raises(DataError, match=r"data\.data_file is for the CIFAR archives"):
        build_dataset(folder_cfg(image_root, data_file="x.tar.gz"), "train")


def test_folder_errors_missing_split(image_copy):
    os.rename(os.path.join(image_copy, "val"), os.path.join(image_copy, "test"))
    build_dataset(folder_cfg(image_copy), "train")  # the train split alone is fine
    with pytest.raises(DataError) as e:
        build_dataset(folder_cfg(image_copy), "eval")
    msg = str(e.value)
    assert msg.startswith(f"data.eval_split: {os.path.join(image_copy, 'val')} not found") and "\n" not in msg
    assert "set data.eval_split: test" in msg
    assert len(build_dataset(folder_cfg(image_copy, eval_split="test"), "eval")) == 3
    os.rename(os.path.join(image_copy, "train"), os.path.join(image_copy, "training"))
    with pytest.raises(DataError, match=rf"^data\.data_dir: {os.path.join(image_copy, 'train')} not found"):
        class_names(folder_cfg(image_copy))


def test_folder_errors_eval_classes_differ(image_copy):
    os.rename(os.path.join(image_copy, "val", "cat"), os.path.join(image_copy, "val", "dog"))
    with pytest.raises(DataError) as e:
        build_dataset(folder_cfg(image_copy), "eval")
    msg = str(e.value)
    assert os.path.join(image_copy, "val") in msg and os.path.join(image_copy, "train") in msg
    assert "only in train: ['cat'], only in val: ['dog']" in msg and "\n" not in msg


def test_folder_errors_class_without_images(image_copy):
    os.makedirs(os.path.join(image_copy, "train", "dog", "empty_sub"))
    with open(os.path.join(image_copy, "train", "dog", "readme.txt"), "w") as f:
        f.write("no images here")
    with pytest.raises(DataError) as e:
        build_dataset(folder_cfg(image_copy), "train")
    msg = str(e.value)
    assert msg.startswith(os.path.join(image_copy, "train", "dog") + ": class folder with no images")
    assert ".jpg" in msg and "\n" not in msg


def test_folder_errors_split_without_any_image(tmp_path):
    for split in ("train", "val"):
        os.makedirs(tmp_path / split / "a")
        os.makedirs(tmp_path / split / "b")
    with pytest.raises(DataError, match=r"/train/a and 1 more: class folder with no images"):
        build_dataset(folder_cfg(str(tmp_path)), "train")
    os.rmdir(tmp_path / "train" / "a")
    os.rmdir(tmp_path / "train" / "b")
    with pytest.raises(DataError, match="has no class folders"):
        build_dataset(folder_cfg(str(tmp_path)), "train")


@pytest.mark.parametrize("content", ["garbage", "truncated"])
def test_folder_errors_unreadable_image_names_the_file(image_copy, content):
    path = os.path.join(image_copy, "train", "bee", "b2.png")
    if content == "garbage":
        data = b"definitely not a png" * 20
    else:
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
        data = buf.getvalue()[: len(buf.getvalue()) // 2]
    with open(path, "wb") as f:
        f.write(data)
    train = build_dataset(folder_cfg(image_copy), "train")  # images are read when loaded, not listed
    index = [p for p, _ in train.samples].index(path)
    train[index - 1]
    # Inside a DataLoader an exception would hang it: the item is marked, and BadImageGuard
    # (tests/test_bad_inputs.py) raises or skips in the main process.
    assert int(train[index][1]) == bad_image_label(index)
    with pytest.raises(DataError) as e:
        load_rgb(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: cannot read this image (") and "\n" not in msg


def test_imagenet_style_option_errors(tmp_path):
    with pytest.raises(DataError, match=r"random_crop_padding must be 0 when data\.augment\.random_resized_crop is"):
        build_transforms(DataConfig(augment=AugmentConfig(random_resized_crop=True)), True)
    with pytest.raises(DataError, match=r"data\.augment\.rrc_scale must be \[min, max\] with 0 < min <= max <= 1"):
        build_transforms(DataConfig(augment=AugmentConfig(rrc_scale=[0.5, 0.2])), True)
    with pytest.raises(DataError, match=r"data\.augment\.rrc_ratio must be \[min, max\] with 0 < min <= max, got"):
        build_transforms(DataConfig(augment=AugmentConfig(rrc_ratio=[0.0, 1.0])), True)
    with pytest.raises(DataError, match=r"data\.eval_resize_crop is a crop fraction and must be in \(0, 1\], got 1"):
        build_transforms(DataConfig(eval_resize_crop=1.5), False)
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: folder\n  augment:\n    random_resized_crop: true\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: data\.augment\.random_crop_padding must be 0 when"):
        load_config(str(path))
    cfg = load_config(str(path), ["data.augment.random_crop_padding=0", "data.eval_resize_crop=0.875"])
    assert cfg.data.dataset == "folder" and cfg.data.eval_split == "val" and cfg.data.eval_resize_crop == 0.875
    with pytest.raises(ConfigError, match=r"-o: data\.eval_split must be one of val, test, got 'train'"):
        load_config(str(path), ["data.augment.random_crop_padding=0", "data.eval_split=train"])
    with pytest.raises(ConfigError, match=r"-o: data\.eval_resize_crop is a crop fraction"):
        load_config(str(path), ["data.augment.random_crop_padding=0", "data.eval_resize_crop=0"])
    with pytest.raises(ConfigError, match=r"-o: data\.augment\.rrc_scale must be \[min, max\]"):
        load_config(str(path), ["data.augment.random_crop_padding=0", "data.augment.rrc_scale=[0.1]"])


@pytest.mark.parametrize("name", ["imagenet", "inception"])
def test_named_normalisations_map_their_mean_to_zero_and_one_std_to_one(name):
    from adaptformer.data import NORMALIZATIONS

    mean, std = NORMALIZATIONS[name]
    transform = build_transforms(DataConfig(mean=list(mean), std=list(std), augment=NO_AUG), train=False)
    for shift, expected in ((0.0, 0.0), (1.0, 1.0)):
        rgb = np.round((np.array(mean) + shift * np.array(std)) * 255).astype(np.uint8)
        out = transform(Image.fromarray(np.tile(rgb, (32, 32, 1))))
        np.testing.assert_allclose(out.mean(axis=(1, 2)), expected, atol=0.03)


# --------------------------------------------------------------------------- the dataset-kind registry


def test_a_kind_with_its_own_validation_split_is_read_split_by_split(monkeypatch):
    """A format that brings a validation split (VTAB-1k's val200) is one DatasetKind: data/splits.py
    reads "val" from it, evaluates on it every epoch, and refuses a hold-out carved on top."""
    from adaptformer.data import kinds, splits
    from adaptformer.data.kinds import DatasetKind

    reads = []

    def read(cfg, split, transform):
        reads.append(split)
        return SyntheticImages({"train": 12, "val": 6, "test": 8}[split], 3, 8, seed=len(reads), transform=transform)

    kind = DatasetKind("listed", class_names=lambda cfg: ["a", "b", "c"], read=read, splits=("train", "val", "test"),
                       any_size=True)
    monkeypatch.setitem(kinds.KINDS, "listed", kind)
    cfg = DataConfig(dataset="listed", img_size=8, **RAW)
    assert splits.eval_split(cfg) == "val"
    assert [len(build_dataset(cfg, s)) for s in ("train", "val", "eval", "test")] == [12, 6, 6, 8]
    assert reads == ["train", "val", "val", "test"]
    assert class_names(DataConfig(dataset="listed", classes=[2, 0], img_size=8, **RAW)) == ["c", "a"]
    with pytest.raises(DataError, match=r"data\.val_fraction is 0\.2, but data\.dataset listed brings its own"):
        build_dataset(DataConfig(dataset="listed", val_fraction=0.2, img_size=8, **RAW), "train")
    with pytest.raises(DataError, match=r"data\.classes: ids \[3\] are outside \[0, 3\) for listed"):
        num_classes(DataConfig(dataset="listed", classes=[3], img_size=8, **RAW))
    # any_size: the evaluation transform resizes whatever comes to img_size (8 here, from 8: a Resize is there)
    assert "Resize" in repr(build_dataset(cfg, "test").transform)


def test_an_unknown_kind_is_one_line_naming_the_known_ones():
    with pytest.raises(DataError, match=r"^data\.dataset must be one of cifar10, cifar100, synthetic, folder, "
                                        r"filelist, vtab, fgvc, food101, svhn, video, got 'imagenet_lmdb'$"):
        build_dataset(DataConfig(dataset="imagenet_lmdb"), "train")
