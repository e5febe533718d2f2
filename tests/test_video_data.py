"""Clips from real video files the tests write with PyAV (H.264 and MPEG-4 in .mp4, VP9 in .webm),
listed as SSv2 / HMDB51 list them (`path label`): frame sampling as the official code does it,
the clip transforms, every kind of bad video as one line (or left out under on_bad_image: skip),
and a video model trained on them with tools/train.py."""
import os
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, run_tool

av = pytest.importorskip("av", reason="the video tests need PyAV (pip install -e '.[test]')")

from adaptformer.config import from_dict  # noqa: E402
from adaptformer.data import build_dataset  # noqa: E402
from adaptformer.data.clips import segment_indices, stride_indices  # noqa: E402
from adaptformer.errors import DataError  # noqa: E402

TRAIN = os.path.join(ROOT, "tools", "train.py")
SIZE = 32  # frames of 48x32 pixels, clips of 32x32


def frame_value(i: int) -> int:
    return 8 + 16 * i  # a grey level per frame index, far enough apart to survive lossy coding


def write_video(path, count, codec="libx264", width=48, height=32):
    """`count` frames, frame i a uniform grey of frame_value(i % 15)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(count):
            pixels = np.full((height, width, 3), frame_value(i % 15), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_set(root, videos, lists):
    """videos {name: (frames, codec)}; lists {list name: [(video name, label)]}."""
    os.makedirs(os.path.join(root, "videos"), exist_ok=True)
    for name, (count, codec) in videos.items():
        write_video(os.path.join(root, "videos", name), count, codec)
    for list_name, rows in lists.items():
        with open(os.path.join(root, list_name), "w") as f:
            f.write("".join(f"videos/{name} {label}\n" for name, label in rows))


def data_cfg(root, **video):
    return from_dict({"model": {"num_classes": 3}, "data": {
        "dataset": "video", "data_dir": str(root), "img_size": SIZE, "mean": [0.0] * 3, "std": [1.0] * 3,
        "video": {"num_classes": 3, "num_frames": 4, **video}}}, "test").data


def frame_indices(clip):
    """The frame index each frame of a normalised clip (mean 0, std 1) shows."""
    grey = clip.mean(axis=(0, 2, 3)) * 255
    return [int(round((g - 8) / 16)) for g in grey]


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "set"
    write_set(str(root), {"a.mp4": (30, "libx264"), "b.mp4": (12, "mpeg4"), "c.webm": (9, "libvpx-vp9")},
              {"train.csv": [("a.mp4", 0), ("b.mp4", 1), ("c.webm", 2)], "test.csv": [("a.mp4", 0), ("c.webm", 2)]})
    return root


def test_evaluation_clips_take_the_official_frames_from_every_codec(videos):
    """Stride 2 from the middle; segments' middles (ssv2): the frames read are the ones asked for."""
    test = build_dataset(data_cfg(videos, sampling="stride", sampling_rate=2), "test")
    clip, label = test[0]
    assert clip.shape == (3, 4, SIZE, SIZE) and clip.dtype == np.float32 and int(label) == 0
    assert frame_indices(clip) == [i % 15 for i in stride_indices(30, 4, 2, train=False)] == [11, 13, 0, 2]
    segment = build_dataset(data_cfg(videos, task=None, sampling="segment"), "test")
    assert frame_indices(segment[1][0]) == segment_indices(9, 4, train=False) == [1, 3, 5, 7]  # VP9 .webm


def test_the_test_split_gives_every_view_clips_spread_over_the_video_and_crops_along_it(videos):
    """2 clips x 3 crops (VideoMAE's test): clip starts at the ends of the room left by the span,
    crops from the left, centre and right of the wider frame; validation stays one view."""
    test = build_dataset(data_cfg(videos, sampling="stride", sampling_rate=2, test_clips=2, test_crops=3), "test")
    views, label = test[0]
    assert views.shape == (6, 3, 4, SIZE, SIZE) and int(label) == 0
    room = 30 - 7
    expected = [[(s + 2 * k) % 15 for k in range(4)] for s in (0, room)]
    assert [frame_indices(v) for v in views] == [expected[0]] * 3 + [expected[1]] * 3
    assert test.shape == (6, 3, 4, SIZE, SIZE)  # what a blank (unreadable) sample is made of


def test_evaluation_averages_the_logits_of_the_views():
    import paddle

    from adaptformer.engine.trainer import view_averaged_logits
    from adaptformer.models.videomae import VideoVisionTransformer

    model = VideoVisionTransformer(img_size=16, patch_size=8, num_frames=2, embed_dim=16, depth=1, num_heads=2,
                                   num_classes=3)
    model.eval()
    views = paddle.randn([2, 3, 3, 2, 16, 16])  # 2 videos, 3 views each
    with paddle.no_grad():
        got = view_averaged_logits(model, views).numpy()
        each = model(views.reshape([6, 3, 2, 16, 16])).numpy().reshape([2, 3, 3])
        single = view_averaged_logits(model, views[:, 0]).numpy()
    np.testing.assert_allclose(got, each.mean(axis=1), atol=1e-6, rtol=0)
    np.testing.assert_allclose(single, each[:, 0], atol=1e-6, rtol=0)  # one view: the model's own logits


def test_training_clips_are_random_spans_and_crops_within_the_video(videos):
    np.random.seed(0)
    train = build_dataset(data_cfg(videos, sampling="stride", sampling_rate=3), "train")
    starts = set()
    for _ in range(12):
        clip, _ = train[0]
        shown = frame_indices(clip)
        assert [b - a for a, b in zip(shown, shown[1:])] in ([3, 3, 3], [3, 3, -12], [3, -12, 3], [-12, 3, 3])
        starts.add(shown[0])
    assert len(starts) > 2  # the span moves
    for _ in range(5):
        indices = segment_indices(30, 4, train=True)
        assert all(k * 7 <= i < (k + 1) * 7 for k, i in enumerate(indices))


def test_a_list_naming_a_missing_video_or_a_label_out_of_range_is_one_line_before_any_clip(videos):
    with open(videos / "test.csv", "a") as f:
        f.write("videos/gone.mp4 1\n")
    with pytest.raises(DataError, match=r"test.csv:3: video .*gone.mp4 does not exist"):
        build_dataset(data_cfg(videos), "test")
    with open(videos / "train.csv", "a") as f:
        f.write("videos/a.mp4 3\n")
    with pytest.raises(DataError, match=r"train.csv:4: label 3 is outside \[0, 3\)"):
        build_dataset(data_cfg(videos), "train")


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(os.urandom(3000)), "not a readable video"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3]), ""),  # truncated: one line, any reason
    (lambda p: write_video(p, 3), "has 3 frames, fewer than the 4 of a clip"),
])
def test_a_bad_video_is_one_line_or_left_out(videos, damage, reason):
    damage(videos / "videos" / "b.mp4")
    train = build_dataset(data_cfg(videos), "train")
    clip, label = train[1]
    assert int(label) < 0 and not clip.any()  # marked, for SampleGuard in the main process
    message = train.reason_of(str(videos / "videos" / "b.mp4"))
    assert message.startswith(str(videos / "videos" / "b.mp4")) and "\n" not in message and reason in message


def write_run(tmp_path, root, **data):
    from conftest import TINY_MODEL  # noqa: F401  (the image model's size, as a video model here)

    cfg = {"model": {"name": "videomae_vit_small_patch16_224", "num_classes": 3,
                     "kwargs": {"img_size": SIZE, "patch_size": 16, "num_frames": 4, "embed_dim": 32, "depth": 2,
                                "num_heads": 2}},
           "method": {"name": "adaptformer", "adaptformer": {"bottleneck": 4, "dropout": 0.0}},
           "data": {"dataset": "video", "data_dir": str(root), "img_size": SIZE, "batch_size": 3, "num_workers": 0,
                    "video": {"num_classes": 3, "num_frames": 4, "test_clips": 2, "test_crops": 3}, **data},
           "optimizer": {"name": "momentum", "lr": 0.05}, "scheduler": {"name": "cosine"},
           "train": {"epochs": 2, "output_dir": str(tmp_path / "out"), "log_every": 1}}
    path = tmp_path / "video.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_a_video_model_trains_on_clips_and_tests_them(videos, tmp_path):
    r = run_tool([sys.executable, TRAIN, "-c", write_run(tmp_path, videos)])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    import json

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["test_images"] == 2 and summary["epochs"] == 2 and summary["trainable_params"] > 0
    # Export takes the clip shape from the model and checks Paddle Inference against the dynamic graph.
    r = run_tool([sys.executable, os.path.join(ROOT, "tools", "export.py"), "-c", str(tmp_path / "out" / "config.yaml"),
                  "-o", str(tmp_path / "exported" / "model")])
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((tmp_path / "exported" / "model.meta.json").read_text())
    assert meta["input"]["shape"] == [None, 3, 4, SIZE, SIZE] and meta["output"]["shape"] == [None, 3]
    # Its preprocess record describes clips: the sampling, the views averaged, the clip layout.
    prep = meta["preprocess"]
    assert (prep["frames"], prep["sampling"], prep["rate"]) == (4, "stride", 4)
    assert (prep["views"]["clips"], prep["views"]["crops"]) == (2, 3) and "mean of the views' logits" in prep["views"]["combine"]
    assert prep["layout"].startswith("NCTHW") and prep["resize"]["shorter_side"] == SIZE and "center_crop" not in prep

    # predict on a folder of videos (walked for video files) and one broken video: top-k per video,
    # the test's 2 x 3 views averaged; the broken one is its own error line and the exit status 1.
    (videos / "videos" / "notes.txt").write_text("not a video")
    (tmp_path / "broken.mp4").write_bytes(os.urandom(500))
    r = run_tool([sys.executable, os.path.join(ROOT, "tools", "predict.py"), "-c", str(tmp_path / "out" / "config.yaml"),
                  str(videos / "videos"), str(tmp_path / "broken.mp4"), "--topk", "2", "--json",
                  str(tmp_path / "predictions.json")])
    assert r.returncode == 1, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(videos / "videos" / n) for n in ("a.mp4", "b.mp4", "c.webm")] \
        + [str(tmp_path / "broken.mp4")]
    assert all(len(line.split(": ")[1].split(", ")) == 2 for line in lines[:3])
    assert lines[3].startswith(f"{tmp_path / 'broken.mp4'}: error: not a readable video")
    from adaptformer.serve.predict import Predictor

    predictor = Predictor.from_run(str(tmp_path / "out" / "config.yaml"), log=lambda *a: None)
    clip = predictor.preprocess(str(videos / "videos" / "a.mp4"))
    assert clip.shape == (6, 3, 4, SIZE, SIZE)
    doc = json.loads((tmp_path / "predictions.json").read_text())
    top = doc["results"][0]["predictions"][0]["score"]
    assert abs(top - float(predictor.probabilities(clip[None]).max())) < 1e-5


def test_a_bad_video_under_training_is_one_line_or_skipped(videos, tmp_path):
    (videos / "videos" / "b.mp4").write_bytes(os.urandom(2000))
    r = run_tool([sys.executable, TRAIN, "-c", write_run(tmp_path, videos)])
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert "b.mp4: not a readable video" in line and "data.on_bad_image: skip" in line
    r = run_tool([sys.executable, TRAIN, "-c", write_run(tmp_path, videos, on_bad_image="skip"), "--overwrite"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "data.on_bad_image skip: leaving out" in r.stdout and "[1 unreadable video(s) so far]" in r.stdout


def test_clips_of_another_length_than_the_model_takes_are_refused_before_training(videos, tmp_path):
    r = run_tool([sys.executable, TRAIN, "-c", write_run(tmp_path, videos, video={"num_classes": 3, "num_frames": 6,
                                                                                   "test_clips": 2, "test_crops": 3})])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith(
        "data.dataset video gives clips of 6 frames [3, 6, 32, 32] but model videomae_vit_small_patch16_224 takes "
        "clips of 4 frames [3, 4, 32, 32] (set data.video.num_frames and model.kwargs.num_frames alike)")
    assert not (tmp_path / "out").exists()


def test_make_moving_clips_writes_clips_the_reader_reads_whose_label_is_their_motion(tmp_path):
    """tools/make_moving_clips.py: every frame is the first one moved by step x its index in the
    labelled direction (within H.264's error), the splits are disjoint lists, directions balanced."""
    from cifar_archive import write_cifar_archive
    from adaptformer.data.video_files import read_clip

    archive = write_cifar_archive(str(tmp_path / "cifar-10-python.tar.gz"), train_per_class=3, test_per_class=2)
    out = tmp_path / "clips"
    r = run_tool([sys.executable, os.path.join(ROOT, "tools", "make_moving_clips.py"), str(out), "--cifar", archive,
                  "--train", "8", "--val", "4", "--test", "4", "--frames", "4", "--step", "3"])
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {s: [line.split() for line in (out / f"{s}.csv").read_text().splitlines()] for s in ("train", "val", "test")}
    assert [len(v) for v in rows.values()] == [8, 4, 4]
    assert sorted(int(label) for _, label in rows["train"]) == [0, 0, 1, 1, 2, 2, 3, 3]
    shifts = {0: (1, -3), 1: (1, 3), 2: (0, -3), 3: (0, 3)}
    for rel, label in rows["train"]:
        frames = read_clip(str(out / rel), lambda n: list(range(n))).astype(np.float32)
        assert frames.shape == (4, 32, 32, 3)
        axis, step = shifts[int(label)]
        for k in range(1, 4):
            moved = np.roll(frames[0], k * step, axis=axis)
            assert np.abs(frames[k] - moved).mean() < 6  # H.264 at crf 12 on 32x32 frames
            others = [np.abs(frames[k] - np.roll(frames[0], k * s, axis=a)).mean()
                      for a, s in shifts.values() if (a, s) != (axis, step)]
            assert np.abs(frames[k] - moved).mean() < min(others)
    data = data_cfg(out, num_classes=4, num_frames=4)
    clip, label = build_dataset(data, "val")[0]
    assert clip.shape == (3, 4, SIZE, SIZE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz", "clips"]  # no staging left
    again = run_tool([sys.executable, os.path.join(ROOT, "tools", "make_moving_clips.py"), str(out), "--cifar", archive])
    assert again.returncode == 2 and "exists already" in again.stderr
    # A failure while writing (here: an image the encoder is handed cannot be moved) leaves nothing behind.
    r = run_tool([sys.executable, "-c", "import os, sys, runpy; sys.argv = sys.argv[1:]; sys.path.insert(0, os.path.dirname(sys.argv[0])); "
                  "import numpy as np; "
                  "np.roll = lambda *a, **k: (_ for _ in ()).throw(OSError(28, 'No space left on device')); "
                  "runpy.run_path(sys.argv[0], run_name='__main__')",
                  os.path.join(ROOT, "tools", "make_moving_clips.py"), str(tmp_path / "full"), "--cifar", archive,
                  "--train", "8", "--val", "4", "--test", "4"])
    assert r.returncode != 0 and "No space left on device" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz", "clips"]
