"""Videos listed in annotation files (`data.dataset: video`), as AdaptFormer's and VideoMAE's video
experiments read Something-Something v2, HMDB51 and Kinetics. data.data_dir holds the lists and
the videos:

    <data_dir>/train.csv  val.csv (optional)  test.csv     each line `relative/path.mp4 label`
    <data_dir>/<relative paths>                            videos PyAV can decode (mp4, webm, avi, ...)

data.video: `task` (ssv2 174 classes, hmdb51 51, kinetics400 400; or `num_classes` for another set),
`num_frames` (the clip, as the model's num_frames), `sampling` (auto: segment for ssv2, stride
otherwise; data/clips.py), `sampling_rate` (stride: frames between sampled ones, 4), `scales` (the
training crop's, [1, .875, .75, .66]). Clips are [3, num_frames, img_size, img_size], ImageNet-
normalised with data.mean / data.std. A video that cannot be decoded, holds no frames, ends before
the frames it claims, or is shorter than num_frames follows data.on_bad_image as an image does.
The validation split is evaluated on one clip per video (the middle, centre crop); the test split
on test_clips x test_crops views whose logits are averaged (the paper: 4 x 3).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from typing import List, Optional

import numpy as np

from adaptformer.data.file_lists import data_root, read_text_list
from adaptformer.data.image_files import ImageFiles, bad_image_label
from adaptformer.data.kinds import DatasetKind
from adaptformer.errors import DataError

TASKS = {"ssv2": 174, "hmdb51": 51, "kinetics400": 400}
ALIASES = {"something_something_v2": "ssv2", "sthv2": "ssv2", "hmdb": "hmdb51", "k400": "kinetics400",
           "kinetics": "kinetics400"}
LISTS = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
SAMPLINGS = ("auto", "segment", "stride")


@dataclass
class VideoConfig:
    task: Optional[str] = None  # ssv2 | hmdb51 | kinetics400 (class count, sampling); None: num_classes
    num_classes: Optional[int] = None
    num_frames: int = 16
    sampling: str = "auto"  # auto: segment for ssv2, stride otherwise | segment | stride
    sampling_rate: int = 4
    scales: List[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    test_clips: int = 1  # the test split's temporal clips per video (the paper: 4)
    test_crops: int = 1  # and spatial crops per clip (the paper: 3); their logits are averaged


def _check(section: VideoConfig, fail) -> None:
    if section.task is not None and ALIASES.get(section.task.lower(), section.task.lower()) not in TASKS:
        fail("task", f"must be one of {', '.join(TASKS)} (or leave it out and set num_classes), got {section.task!r}")
    if section.num_classes is not None and section.num_classes < 1:
        fail("num_classes", f"must be >= 1, got {section.num_classes}")
    if not 1 <= section.num_frames <= 512:
        fail("num_frames", f"must be in [1, 512], got {section.num_frames}")
    if section.sampling not in SAMPLINGS:
        fail("sampling", f"must be one of {', '.join(SAMPLINGS)}, got {section.sampling!r}")
    if not 1 <= section.sampling_rate <= 64:
        fail("sampling_rate", f"must be in [1, 64], got {section.sampling_rate}")
    for key in ("test_clips", "test_crops"):
        if not 1 <= getattr(section, key) <= 16:
            fail(key, f"must be in [1, 16], got {getattr(section, key)}")
    if not section.scales or not all(0.1 <= s <= 1.0 for s in section.scales):
        fail("scales", f"must be fractions in [0.1, 1] of the shorter side, got {section.scales}")


def _task(data_cfg) -> Optional[str]:
    task = data_cfg.video.task
    return None if task is None else ALIASES.get(task.lower(), task.lower())


def num_classes(data_cfg) -> int:
    task, given = _task(data_cfg), data_cfg.video.num_classes
    if task is None and given is None:
        raise DataError("data.video: set task (ssv2, hmdb51, kinetics400) or num_classes")
    if task is not None and given is not None and given != TASKS[task]:
        raise DataError(f"data.video.num_classes is {given}, but {task} has {TASKS[task]} classes")
    return TASKS[task] if task is not None else given


def _root(data_cfg) -> str:
    return data_root(data_cfg, "the folder of train.csv, test.csv (val.csv) and the videos they list")


def _splits(data_cfg):
    root = data_cfg.data_dir and os.path.expanduser(data_cfg.data_dir)
    has_val = bool(root) and os.path.isfile(os.path.join(root, LISTS["val"]))
    return ("train", "val", "test") if has_val else ("train", "test")


def pick_frames(count: int, data_cfg, train: bool, clips: int = 1) -> List[int]:
    """The frame indices of `clips` clips, one after the other, from a video of `count` frames (data/clips.py)."""
    from adaptformer.data.clips import segment_indices, stride_indices

    v = data_cfg.video
    if count < v.num_frames:
        raise DataError(f"has {count} frames, fewer than the {v.num_frames} of a clip (data.video.num_frames)")
    sampling = sampling_of(data_cfg)
    indices = []
    for clip in range(clips):
        if sampling == "segment":
            indices += segment_indices(count, v.num_frames, train, clip, clips)
        else:
            indices += stride_indices(count, v.num_frames, v.sampling_rate, train, clip, clips)
    return indices


class VideoFiles(ImageFiles):
    """ImageFiles' samples and marking of unreadable files, with clips read from videos: an item is
    (transform(frames [T, H, W, 3] uint8), label); a blank clip with bad_image_label(index) for a
    video that cannot give one."""

    noun = "video"

    def __init__(self, samples, classes, transform, data_cfg, train: bool, views=(1, 1)):
        super().__init__(samples, classes, transform, data_cfg.img_size)
        self.data_cfg, self.train, self.views = data_cfg, train, tuple(views)
        views_count = self.views[0] * self.views[1]
        self.shape = clip_shape(data_cfg) if views_count == 1 else (views_count,) + clip_shape(data_cfg)

    def _clip(self, path: str) -> np.ndarray:
        return read_frames(path, self.data_cfg, self.train, self.views[0])

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        try:
            frames = self._clip(path)
        except DataError:
            return np.zeros(self.shape, np.float32), np.array(bad_image_label(index), dtype=np.int64)
        clip = self.transform(frames) if self.transform is not None else frames
        return clip, np.array(target, dtype=np.int64)

    def reason_of(self, path: str) -> str:
        try:
            self._clip(path)
        except DataError as e:
            return f"{e}; replace or remove it, or its line, under data.data_dir"
        return f"{path}: could not be read, then could (is it being written?)"


def read_frames(path: str, data_cfg, train: bool, clips: int = 1) -> np.ndarray:
    """The frames [clips * T, H, W, 3] of `clips` clips of the video at `path`, sampled as data.video says."""
    from adaptformer.data.video_files import read_clip

    return read_clip(path, partial(pick_frames, data_cfg=data_cfg, train=train, clips=clips))


def sampling_of(data_cfg) -> str:
    v = data_cfg.video
    return v.sampling if v.sampling != "auto" else ("segment" if _task(data_cfg) == "ssv2" else "stride")


def preprocess_description(data_cfg) -> dict:
    """How a video file becomes the model's inputs, as prediction does it: what an exported model's
    .meta.json records, so a program outside this package can prepare clips the same way."""
    v = data_cfg.video
    clips, crops = test_views(data_cfg)
    if sampling_of(data_cfg) == "segment":
        frames = (f"the video in {v.num_frames} equal segments of count/{v.num_frames} frames; clip c of "
                  f"{clips} takes frame int(offset + k * count/{v.num_frames}) of segment k, offset the "
                  "segment's middle for one clip, else c/clips of a segment")
    else:
        frames = (f"{v.num_frames} frames {v.sampling_rate} apart (span (T-1)*rate+1); one clip starts at "
                  f"(count - span)//2, clip c of {clips} at int(c * (count - span) / (clips - 1)); "
                  "an index past the end takes the last frame")
    return {"decode": "PyAV, every frame as RGB", "frames": v.num_frames, "sampling": sampling_of(data_cfg),
            "rate": v.sampling_rate if sampling_of(data_cfg) == "stride" else None, "frame_indices": frames,
            "resize": {"shorter_side": data_cfg.img_size, "interpolation": "bilinear"},
            "crop": (f"{data_cfg.img_size}x{data_cfg.img_size}: the centre for one crop; for {crops} crops, "
                     "offsets int(k * (longer - size) / (crops - 1)) along the longer side"),
            "views": {"clips": clips, "crops": crops, "order": "clip-major",
                      "combine": "the mean of the views' logits, then softmax"},
            "scale": "pixel / 255", "mean": list(data_cfg.mean), "std": list(data_cfg.std),
            "layout": "NCTHW (batch, channel, frame, height, width)", "dtype": "float32"}


def test_views(data_cfg):
    """(temporal clips, spatial crops) of the test split."""
    return data_cfg.video.test_clips, data_cfg.video.test_crops


def eval_transform(data_cfg, views=(1, 1)):
    from adaptformer.data.clips import ClipTransform

    return ClipTransform(data_cfg.img_size, data_cfg.mean, data_cfg.std, False, data_cfg.video.scales, views)


def clip_shape(data_cfg):
    return (3, data_cfg.video.num_frames, data_cfg.img_size, data_cfg.img_size)


def _transforms(data_cfg, train: bool):
    from adaptformer.data.clips import ClipTransform

    return ClipTransform(data_cfg.img_size, data_cfg.mean, data_cfg.std, train, data_cfg.video.scales)


def _read(data_cfg, split: str, transform=None) -> VideoFiles:
    root, n = _root(data_cfg), num_classes(data_cfg)
    what = _task(data_cfg) or "the video set"
    samples = read_text_list(os.path.join(root, LISTS[split]), root, "data.data_dir", n, f"{what} ({n} classes)",
                             what="video")
    names = [f"class_{i}" for i in range(n)]
    views = test_views(data_cfg) if split == "test" else (1, 1)
    if views != (1, 1):  # the test's views: the transform for evaluation, made for them
        transform = eval_transform(data_cfg, views)
    return VideoFiles(samples, names, transform, data_cfg, split == "train", views).keep(data_cfg.classes)


KINDS = [DatasetKind(
    "video", class_names=lambda cfg: [f"class_{i}" for i in range(num_classes(cfg))], read=_read, splits=_splits,
    count=num_classes, counted_in=lambda cfg: _task(cfg) or "the video set", order=60, section=VideoConfig,
    check=_check, transforms=_transforms, shape=clip_shape)]
