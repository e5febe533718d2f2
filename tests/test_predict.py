"""Prediction: every kind of image file a user may have, batching, the model's own argmax, the CLI."""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
import paddle
import pytest
from PIL import Image

from adaptformer.config import load_config
from adaptformer.data.images import open_rgb
from adaptformer.engine import train
from adaptformer.serve.predict import Predictor, expand_inputs, true_label
from conftest import ROOT, run_tool, tiny_run_config

PREDICT = os.path.join(ROOT, "tools", "predict.py")
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run (4 synthetic classes, 32x32) under <tmp>/output/tiny, as tools expect runs."""
    root = tmp_path_factory.mktemp("predict")
    config = tiny_run_config(root, "tiny", train={"epochs": 1, "output_dir": str(root / "output" / "tiny")})
    train(load_config(config))
    return root, config


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor.from_run(run[1], batch_size=3)


def rgb(h=20, w=30):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def png_header_only(width, height):
    """A PNG whose IHDR declares width x height RGB pixels, with no pixel data at all."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def save(path, img, **kwargs):
    img.save(str(path), **kwargs)
    return str(path)


# --------------------------------------------------------------------------- decoding


def test_palette_with_transparency_keeps_the_stored_colours(tmp_path):
    img = Image.new("P", (6, 4))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putdata([0, 1] * 12)
    path = save(tmp_path / "p.png", img, transparency=1)  # entry 1 (blue) fully transparent
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    out = np.asarray(open_rgb(path))
    assert out.shape == (4, 6, 3)
    assert (out[0, 0] == [255, 0, 0]).all() and (out[0, 1] == [0, 0, 255]).all()  # alpha dropped, colour kept


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path, predictor):
    gray8 = RNG.integers(0, 256, (24, 28), dtype=np.uint8)
    path16 = save(tmp_path / "g16.png", Image.fromarray(gray8.astype(np.uint16) * 257))
    path8 = save(tmp_path / "g8.png", Image.fromarray(gray8))
    assert Image.open(path16).mode.startswith("I;16")
    np.testing.assert_array_equal(np.asarray(open_rgb(path16)), np.asarray(open_rgb(path8)))
    a16, a8 = predictor.preprocess(path16), predictor.preprocess(path8)
    np.testing.assert_allclose(a16, a8, atol=1e-6)
    p16, p8 = predictor.predict([path16, path8])
    assert p16.top[0][0] == p8.top[0][0] and abs(p16.top[0][1] - p8.top[0][1]) < 1e-5


def test_sixteen_bit_mode_i_pgm_is_scaled(tmp_path):
    values = np.array([[0, 257, 40000, 65535]], dtype=">u2")
    path = tmp_path / "g.pgm"
    path.write_bytes(b"P5\n4 1\n65535\n" + values.tobytes())
    assert Image.open(str(path)).mode == "I"  # PIL reads 16-bit PGM as 32-bit integers
    assert np.asarray(open_rgb(str(path)))[0, :, 0].tolist() == [0, 1, 155, 255]


def test_rgba_la_and_grayscale(tmp_path):
    pixels = rgb(8, 9)
    rgba = np.dstack([pixels, RNG.integers(0, 256, (8, 9), dtype=np.uint8)])
    got = np.asarray(open_rgb(save(tmp_path / "a.png", Image.fromarray(rgba, "RGBA"))))
    np.testing.assert_array_equal(got, pixels)  # alpha dropped, not composited
    gray = pixels[..., 0]
    got = np.asarray(open_rgb(save(tmp_path / "la.png", Image.fromarray(np.dstack([gray, gray]), "LA"))))
    np.testing.assert_array_equal(got, np.dstack([gray] * 3))
    got = np.asarray(open_rgb(save(tmp_path / "l.png", Image.fromarray(gray, "L"))))
    np.testing.assert_array_equal(got, np.dstack([gray] * 3))


def test_cmyk_jpeg(tmp_path):
    path = save(tmp_path / "c.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), quality=100)
    assert Image.open(path).mode == "CMYK"
    got = np.asarray(open_rgb(path)).astype(int)
    assert np.abs(got - [255, 0, 0]).max() <= 3  # pure red, within JPEG rounding


@pytest.mark.parametrize("orientation, turn", [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(tmp_path / f"o{orientation}.jpg", Image.fromarray(rgb(16, 24)), quality=95, exif=exif.tobytes())
    stored = np.asarray(Image.open(path).convert("RGB"))  # the pixels as stored, not rotated
    got = np.asarray(open_rgb(path))
    np.testing.assert_array_equal(got, np.rot90(stored, k=turn))  # rot90 k=-1: clockwise


def test_large_jpeg_is_decoded_reduced(tmp_path, predictor):
    path = save(tmp_path / "big.jpg", Image.fromarray(np.tile(rgb(8, 8), (100, 128, 1))), quality=90)  # 1024x800
    assert predictor.draft_size == (64, 64)  # twice the 32-pixel input
    assert predictor.load(path).size == (128, 100)  # 1/8 scale: the smallest with both sides >= 64
    assert open_rgb(path).size == (1024, 800)  # no draft: full size
    assert predictor.predict([path])[0].ok


def test_unreadable_files_give_one_line_each_and_the_others_are_classified(tmp_path, predictor):
    good = [save(tmp_path / f"g{i}.png", Image.fromarray(rgb())) for i in range(4)]
    buf = io.BytesIO()
    Image.fromarray(rgb(64, 64)).save(buf, "PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    text = tmp_path / "text.png"
    text.write_text("not an image at all\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(100_000, 100_000))  # 10^10 pixels declared, 60 bytes on disk
    sources = [good[0], str(truncated), good[1], str(text), str(empty), good[2], str(bomb),
               str(tmp_path / "missing.jpg"), str(tmp_path), good[3]]
    results = predictor.predict(sources, topk=2)
    assert [r.source for r in results] == sources
    assert [r.ok for r in results] == [True, False, True, False, False, True, False, False, False, True]
    errors = {os.path.basename(r.source): r.error for r in results if not r.ok}
    assert errors["truncated.png"].startswith("cannot read this image (")
    assert errors["text.png"] == "not an image format PIL can read (or a corrupt header)"
    assert errors["empty.jpg"] == "empty file (0 bytes)"
    assert errors["bomb.png"].startswith("image too large:")
    assert errors["missing.jpg"] == "no such file"
    assert errors[os.path.basename(str(tmp_path))] == "is a folder, not a file"
    assert all("\n" not in e for e in errors.values())
    assert all(len(r.top) == 2 for r in results if r.ok)


def test_pixel_limit_is_checked_before_decoding(tmp_path, run):
    path = save(tmp_path / "a.png", Image.fromarray(rgb(64, 64)))
    small = Predictor.from_run(run[1], max_pixels=1000)
    (result,) = small.predict([path])
    assert result.error == "image too large: 64 x 64 = 4,096 pixels, above the limit of 1,000 " \
                           "(decompression-bomb guard)"


def test_pil_images_are_accepted(predictor):
    image = Image.fromarray(rgb())
    (result,) = predictor.predict([image.convert("RGBA")], topk=1)
    assert result.source == "<image 0>" and result.ok


# --------------------------------------------------------------------------- the model


def test_predictions_are_the_models_softmax_in_any_batching(tmp_path, run, predictor):
    paths = [save(tmp_path / f"{i}.png", Image.fromarray(rgb(20 + i, 30 - i))) for i in range(7)]
    arrays = np.stack([predictor.preprocess(p) for p in paths])
    assert arrays.shape == (7, 3, 32, 32) and arrays.dtype == np.float32
    with paddle.no_grad():
        logits = predictor.model(paddle.to_tensor(arrays)).numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for batch_size in (1, 3, 32):
        p = Predictor(predictor.model, predictor.class_names, load_config(run[1]).data, batch_size=batch_size)
        results = p.predict(paths, topk=10)
        for r, logit, prob in zip(results, logits, probs):
            assert len(r.top) == 4  # topk capped at the class count
            assert r.top[0][0] == predictor.class_names[int(np.argmax(logit))]
            np.testing.assert_allclose([s for _, s in r.top], np.sort(prob)[::-1], atol=1e-5)


def test_from_run_takes_a_config_object_and_checks_the_checkpoint(run, tmp_path):
    from adaptformer.weights.checkpoint import CheckpointError

    cfg = load_config(run[1])
    p = Predictor.from_run(cfg)
    assert p.class_names == ["class_0", "class_1", "class_2", "class_3"]
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        Predictor.from_run(cfg, checkpoint=str(tmp_path / "nothing.pdparams"))


def test_from_run_names_classes_as_the_run_recorded_them(run, tmp_path):
    import json
    import shutil

    root, config = run
    folder = tmp_path / "copy"
    shutil.copytree(root / "output" / "tiny", folder, ignore=shutil.ignore_patterns("vdl", "*.lock"))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["class_names"] == ["class_0", "class_1", "class_2", "class_3"]
    summary["class_names"] = ["ant", "bee", "cat", "dog"]  # e.g. a run whose data is not on this machine
    (folder / "summary.json").write_text(json.dumps(summary))
    checkpoint = str(folder / "best.pdparams")
    assert Predictor.from_run(config, checkpoint=checkpoint).class_names == ["ant", "bee", "cat", "dog"]
    summary["class_names"] = ["ant", "bee"]  # not the model's class count: the data's names instead
    (folder / "summary.json").write_text(json.dumps(summary))
    assert Predictor.from_run(config, checkpoint=checkpoint).class_names == ["class_0", "class_1", "class_2", "class_3"]


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    """(run config, tuned folder) of a run on a backbone file, its tuned weights saved apart."""
    import adaptformer.serve.tuned as tuned
    from adaptformer.models import create_model
    from adaptformer.serve.trained import from_run
    from conftest import TINY_MODEL

    root = tmp_path_factory.mktemp("tuned")
    backbone = root / "backbone.pdparams"
    paddle.seed(1)
    paddle.save(create_model(TINY_MODEL["name"], num_classes=4, **TINY_MODEL["kwargs"]).state_dict(), str(backbone))
    config = tiny_run_config(root, "tuned", model={"pretrained": str(backbone)}, train={"epochs": 1})
    cfg = load_config(config)
    train(cfg)
    trained = from_run(cfg)
    tuned.save_tuned(trained.model, str(root / "tuned_dir"), cfg, trained.class_names)
    return config, str(root / "tuned_dir")


def test_from_tuned_predicts_as_the_run(tuned_run, tmp_path):
    config, tuned_dir = tuned_run
    paths = [save(tmp_path / f"{i}.png", Image.fromarray(rgb())) for i in range(3)]
    want = Predictor.from_run(config).predict(paths)
    got = Predictor.from_tuned(tuned_dir).predict(paths)
    for a, b in zip(want, got):
        assert [n for n, _ in a.top] == [n for n, _ in b.top]
        np.testing.assert_allclose([s for _, s in a.top], [s for _, s in b.top], atol=1e-6)


def test_cli_with_a_tuned_folder(tuned_run, tmp_path):
    config, tuned_dir = tuned_run
    path = save(tmp_path / "a.png", Image.fromarray(rgb()))
    want = run_tool([sys.executable, PREDICT, "-c", config, path, "--topk", "4"])
    got = run_tool([sys.executable, PREDICT, "--tuned", tuned_dir, path, "--topk", "4"])
    assert got.returncode == 0 and want.returncode == 0, got.stderr[-2000:]
    assert got.stdout == want.stdout
    export = os.path.join(ROOT, "tools", "export.py")
    r = run_tool([sys.executable, export, "--tuned", tuned_dir, "-o", str(tmp_path / "m")])
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "m.meta.json").read_text())["source"] == tuned_dir


def test_expand_inputs_walks_folders_sorted(tmp_path):
    for rel in ("b/2.JPG", "b/1.png", "a/x.txt", "a/.hidden.png", ".cache/z.png", "a/sub/3.webp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    paths, empty = expand_inputs([str(tmp_path), str(tmp_path / "explicit.dat"), str(tmp_path / "empty")])
    rel = [os.path.relpath(p, tmp_path) for p in paths]
    assert rel == ["a/sub/3.webp", "b/1.png", "b/2.JPG", "explicit.dat"]
    assert empty == [str(tmp_path / "empty")]
    assert true_label(str(tmp_path / "cat" / "x.png"), ["cat", "dog"]) == "cat"
    assert true_label(str(tmp_path / "x.png"), ["cat", "dog"]) is None


# --------------------------------------------------------------------------- the command line


def _errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_cli_exit_codes_json_and_plot(run, tmp_path):
    root, config = run
    images = tmp_path / "images"
    (images / "class_2").mkdir(parents=True)
    for i in range(3):
        save(images / "class_2" / f"{i}.png", Image.fromarray(rgb()))
    save(images / "loose.jpg", Image.fromarray(rgb()))
    # Every image readable: exit 0, one line per image; the most recent run under output/ by default.
    r = run_tool([sys.executable, PREDICT, str(images), "--topk", "2"], cwd=str(root))
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and "predicting with the most recent run" in r.stderr
    for line in lines:
        path, _, rest = line.partition(": ")
        assert os.path.isfile(path)
        assert len(rest.split(", ")) == 2 and all(p.split(" ")[0].startswith("class_") for p in rest.split(", "))

    (images / "broken.png").write_text("no")
    out_json, out_png = tmp_path / "out" / "r.json", tmp_path / "out" / "grid.png"
    r = run_tool([sys.executable, PREDICT, "-c", config, str(images), "--json", str(out_json),
                  "--plot", str(out_png), "--batch-size", "2"])
    assert r.returncode == 1, r.stderr[-2000:]
    assert f"{images / 'broken.png'}: error: not an image format PIL can read" in r.stdout
    assert "Traceback" not in r.stderr
    doc = json.loads(out_json.read_text())
    assert doc["num_images"] == 5 and doc["num_failed"] == 1 and doc["topk"] == 5
    assert doc["class_names"] == ["class_0", "class_1", "class_2", "class_3"]
    by_name = {os.path.basename(x["path"]): x for x in doc["results"]}
    assert by_name["broken.png"]["predictions"] == [] and by_name["broken.png"]["error"]
    assert by_name["0.png"]["true_label"] == "class_2" and by_name["loose.jpg"]["true_label"] is None
    assert len(by_name["0.png"]["predictions"]) == 4  # topk 5, 4 classes
    assert abs(sum(p["score"] for p in by_name["0.png"]["predictions"]) - 1) < 1e-5
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(str(out_png)).size[0] > 100


@pytest.mark.parametrize("args, message", [
    (["--topk", "0", "x.png"], "--topk: must be >= 1"),
    (["--tuned", "t", "-c", "c.yaml", "x.png"], "--tuned cannot be combined"),
    (["--backbone", "b.pdparams", "x.png"], "--backbone and --force go with --tuned"),
    (["-c", "/no/such.yaml", "x.png"], "/no/such.yaml"),
    (["x.png"], "no trained run under"),
])
def test_cli_bad_arguments_exit_2(tmp_path, args, message):
    r = run_tool([sys.executable, PREDICT] + args, cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(_errors(r.stderr)) == 1 or "usage:" in r.stderr
