"""Generated bad inputs, run in one child process under resource limits (tests/test_generated_inputs.py).

Seeded mutations of the files users hand us: YAML configs (values and raw bytes), tuned.json,
images and CIFAR archives. Each case runs the reader a tool would run, with an alarm and an
address-space limit, and must end in time either normally or with one of the package's own
errors (adaptformer.errors.UserError, which the tools print as one line, exit 2). Anything else
(another exception: a traceback; the alarm: a hang; MemoryError: a blow-up) is reported.

    python tests/generated_inputs.py WORKDIR SEED COUNT   -> one JSON line: {"cases": n, "problems": [...]}
"""
from __future__ import annotations

import copy
import io
import json
import os
import random
import resource
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CASE_SECONDS = 20
MEMORY_BYTES = 6 << 30
VALUES = [-1, 0, 1, 2**31, 2**40, 10**9, 1e-45, 1e308, ".nan", "abc", "", None, True, [], {}, [[[[]]]],
          "a\nb", "(", "[", "*", "/dev/zero", "x" * 5000, [1, 2, 3], {"a": 1}, -0.5, 0.001, 1e9]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def _leaf_paths(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaf_paths(v, prefix + (k,))
        else:
            yield prefix + (k,)


def _set(d, path, value):
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


def config_cases(rng: random.Random, work: str, count: int):
    import yaml
    from adaptformer.config import dump, load_config

    base = yaml.safe_load(dump(load_config(os.path.join(ROOT, "configs", "cpu", "smoke_synthetic.yaml"))))
    base["train"]["output_dir"] = os.path.join(work, "out")
    paths = list(_leaf_paths(base))
    text = yaml.safe_dump(base).encode()
    for i in range(count):
        path = os.path.join(work, f"config{i}.yaml")
        if i % 3 == 2:  # raw bytes: flipped, cut, or anchors spliced in
            data = bytearray(text)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(len(data))]
            if rng.random() < 0.3:
                data += b"\nz: &z [" + b"*z, " * 3 + b"]\n"
            payload = bytes(data)
        else:
            doc = copy.deepcopy(base)
            for _ in range(rng.randint(1, 3)):
                _set(doc, rng.choice(paths), rng.choice(VALUES))
            payload = yaml.safe_dump(doc).encode()
        with open(path, "wb") as f:
            f.write(payload)
        yield f"config {i}", lambda p=path: _build_from_config(p)


def _build_from_config(path):
    import paddle
    from adaptformer.config import load_config
    from adaptformer.engine import build_model

    cfg = load_config(path)
    with paddle.utils.unique_name.guard():
        build_model(cfg, load_backbone=False, log=lambda *a: None)


def tuned_cases(rng: random.Random, work: str, count: int):
    from adaptformer.serve import trained

    from bad_inputs import a_run_folder
    from pathlib import Path

    a_run_folder(Path(work) / "run")
    tuned = os.path.join(work, "run", "out", "tuned")
    with open(os.path.join(tuned, "tuned.json"), encoding="utf-8") as f:
        meta = json.load(f)
    paths = list(_leaf_paths(meta))
    for i in range(count):
        folder = os.path.join(work, f"tuned{i}")
        os.makedirs(folder)
        os.link(os.path.join(tuned, "tuned.pdparams"), os.path.join(folder, "tuned.pdparams"))
        doc = copy.deepcopy(meta)
        for _ in range(rng.randint(1, 3)):
            _set(doc, rng.choice(paths), rng.choice(VALUES))
        with open(os.path.join(folder, "tuned.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f)
        backbone = os.path.join(work, "run", "backbone.pdparams")
        yield f"tuned {i}", lambda d=folder: trained.from_tuned(d, backbone, log=lambda *a: None)


def image_cases(rng: random.Random, work: str, count: int):
    import numpy as np
    from PIL import Image


    originals = []
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("PNG", "I;16"), ("GIF", "P"), ("TIFF", "RGB")):
        buf = io.BytesIO()
        arr = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert("L").convert("I;16") if mode == "I;16" else Image.fromarray(arr).convert(mode)
        img.save(buf, format=fmt)
        originals.append(buf.getvalue())

    class Tiny:  # any callable transform: only the reading is under test here
        def __call__(self, img):
            return np.zeros((3, 4, 4), np.float32)

    for i in range(count):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(min(len(data), 64 if rng.random() < 0.7 else len(data)))] = rng.randrange(256)
        path = os.path.join(work, f"image{i}.png")
        with open(path, "wb") as f:
            f.write(bytes(data))
        # Predictor.load is prediction's reader; training's (data.folder.load_rgb) is the same open_rgb.
        yield f"image {i}", lambda p=path: _read_image(p)


def _read_image(path):
    from adaptformer.data.image_files import load_rgb

    load_rgb(path)  # a DataError (UserError) for anything it cannot read


def archive_cases(rng: random.Random, work: str, count: int):
    from adaptformer.config import load_config
    from adaptformer.data import build_dataset

    from cifar_archive import write_cifar_archive

    good = write_cifar_archive(os.path.join(work, "good.tar.gz"))
    with open(good, "rb") as f:
        packed = f.read()
    import gzip

    raw = gzip.decompress(packed)
    for i in range(count):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 10)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        folder = os.path.join(work, f"archive{i}")
        os.makedirs(folder)
        path = os.path.join(folder, "cifar-10-python.tar.gz")
        with open(path, "wb") as f:
            f.write(gzip.compress(bytes(data)) if i % 2 else bytes(data[: rng.randrange(len(data))]))

        def read(p=path):
            cfg = load_config(os.path.join(ROOT, "configs", "cpu", "smoke_synthetic.yaml"),
                              ["data.dataset=cifar10", f"data.data_file={p}", "model.num_classes=10"])
            ds = build_dataset(cfg.data, "train")
            for j in range(len(ds)):
                ds[j]

        yield f"archive {i}", read


def main() -> None:
    work, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    import adaptformer  # noqa: F401
    from adaptformer.errors import UserError

    rng = random.Random(seed)
    signal.signal(signal.SIGALRM, _alarm)
    share = {"config": 0.4, "tuned": 0.2, "image": 0.25, "archive": 0.15}
    generators = [config_cases(rng, work, int(count * share["config"])),
                  tuned_cases(rng, work, int(count * share["tuned"])),
                  image_cases(rng, work, int(count * share["image"])),
                  archive_cases(rng, work, int(count * share["archive"]))]
    problems, cases = [], 0
    for generator in generators:
        for name, case in generator:
            cases += 1
            signal.alarm(CASE_SECONDS)
            try:
                case()
            except UserError as e:
                if "\n" in str(e).strip():
                    problems.append(f"{name}: an error of several lines: {str(e)[:200]!r}")
            except Hang:
                problems.append(f"{name}: no end within {CASE_SECONDS} s")
            except MemoryError:
                problems.append(f"{name}: MemoryError (more than {MEMORY_BYTES >> 30} GiB)")
            except BaseException as e:  # noqa: BLE001  (each is a traceback a user would see)
                problems.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
            finally:
                signal.alarm(0)
    print(json.dumps({"cases": cases, "problems": problems}))


if __name__ == "__main__":
    main()
