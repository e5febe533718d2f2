"""Which frames a clip takes, and the clip transforms, as VideoMAE and AdaptFormer's video code do.

Sampling (frame indices of one clip of `num_frames` from a video of `count` frames):
- segment (Something-Something v2, TSN style): the video in num_frames equal segments; training takes
  a random frame of each, evaluation the middle one;
- stride (Kinetics, HMDB51): num_frames frames `rate` apart; training starts at a random frame,
  evaluation in the middle; a video shorter than the span repeats its last frame.

Transforms (frames [T, H, W, 3] uint8 -> [3, T, size, size] float32, ImageNet-normalised):
- training: GroupMultiScaleCrop(size, scales): one crop for every frame, its sides drawn from
  base * scales (base: the shorter side; the two sides at most one scale step apart), placed at
  one of 13 fixed positions, resized to size x size; no flip (SSv2's labels name directions);
- evaluation: the shorter side resized to `size`, the centre size x size crop; for the test
  split, data.video.test_clips temporal clips x test_crops spatial crops (VideoMAE's multi-view
  test: clips spread over the video, crops from one end of the longer side to the other), their
  logits averaged (engine/trainer.view_averaged_logits).
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
from PIL import Image

from adaptformer.data.transforms import ToNormalizedArray


# Random draws use NumPy's global generator: Paddle seeds it in every DataLoader worker from the
# run's seed, so clips differ between workers and epochs and repeat between runs.


def segment_indices(count: int, num_frames: int, train: bool, clip: int = 0, clips: int = 1) -> List[int]:
    """One clip's frames; evaluation with `clips` > 1 shifts clip c by c/clips of a segment (VideoMAE's test)."""
    if train:
        step = count // num_frames
        if step > 0:
            return (np.arange(num_frames) * step + np.random.randint(0, step, num_frames)).tolist()
        return sorted(np.random.randint(0, count, num_frames).tolist())  # fewer frames than segments
    tick = count / num_frames
    offset = tick / 2 if clips == 1 else clip * tick / clips
    return [min(count - 1, int(offset + tick * k)) for k in range(num_frames)]


def stride_indices(count: int, num_frames: int, rate: int, train: bool, clip: int = 0, clips: int = 1) -> List[int]:
    """One clip's frames; evaluation with `clips` > 1 spreads the clips' starts evenly over the video."""
    span = (num_frames - 1) * rate + 1
    room = max(0, count - span)
    if train:
        start = int(np.random.randint(0, room + 1))
    else:
        start = room // 2 if clips == 1 else int(clip * room / (clips - 1))
    return [min(count - 1, start + k * rate) for k in range(num_frames)]


def _crop_sides(base: int, scales: Sequence[float]) -> List[tuple]:
    sizes = [int(base * s) for s in scales]
    return [(w, h) for i, w in enumerate(sizes) for j, h in enumerate(sizes) if abs(i - j) <= 1]


def _fixed_offsets(width: int, height: int, crop_w: int, crop_h: int) -> List[tuple]:
    """TSN's 13 positions: centre, the four corners, the four edge midpoints and four quarter points."""
    w, h = (width - crop_w) // 4, (height - crop_h) // 4
    return [(0, 0), (4 * w, 0), (0, 4 * h), (4 * w, 4 * h), (2 * w, 2 * h), (0, 2 * h), (4 * w, 2 * h),
            (2 * w, 4 * h), (2 * w, 0), (1 * w, 1 * h), (3 * w, 1 * h), (1 * w, 3 * h), (3 * w, 3 * h)]


def multi_scale_crop(frames: np.ndarray, size: int, scales: Sequence[float]) -> List[Image.Image]:
    height, width = frames.shape[1:3]
    sides = _crop_sides(min(width, height), scales)
    crop_w, crop_h = sides[np.random.randint(len(sides))]
    offsets = _fixed_offsets(width, height, crop_w, crop_h)
    x, y = offsets[np.random.randint(len(offsets))]
    box = (x, y, x + crop_w, y + crop_h)
    return [Image.fromarray(f).crop(box).resize((size, size), Image.BILINEAR) for f in frames]


def resized_crop(frames: np.ndarray, size: int, crop: int = 0, crops: int = 1) -> List[Image.Image]:
    """The shorter side resized to `size`, then crop `crop` of `crops` along the longer side: the centre
    for one crop; evenly spaced from one end to the other for several (VideoMAE's test)."""
    height, width = frames.shape[1:3]
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    along = max(new_w, new_h) - size
    offset = along // 2 if crops == 1 else int(crop * along / (crops - 1))
    x, y = (offset, (new_h - size) // 2) if new_w >= new_h else ((new_w - size) // 2, offset)
    return [Image.fromarray(f).resize((new_w, new_h), Image.BILINEAR).crop((x, y, x + size, y + size)) for f in frames]


class ClipTransform:
    """frames [T, H, W, 3] uint8 -> [3, T, size, size] float32 (module docstring). With views
    (clips, crops) != (1, 1), for evaluation: frames [clips * T, H, W, 3], clip after clip ->
    [clips * crops, 3, T, size, size], clip-major, whose logits the evaluation averages."""

    def __init__(self, size: int, mean, std, train: bool, scales: Sequence[float], views=(1, 1)):
        self.size, self.train, self.scales, self.views = size, train, list(scales), tuple(views)
        self.normalize = ToNormalizedArray(mean, std)

    def _clip(self, images) -> np.ndarray:
        return np.stack([self.normalize(img) for img in images], axis=1)  # [3, T, size, size]

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if self.train:
            return self._clip(multi_scale_crop(frames, self.size, self.scales))
        clips, crops = self.views
        if (clips, crops) == (1, 1):
            return self._clip(resized_crop(frames, self.size))
        per_clip = np.split(frames, clips)
        return np.stack([self._clip(resized_crop(f, self.size, k, crops)) for f in per_clip for k in range(crops)])

    def __repr__(self) -> str:
        if self.train:
            kind = f"MultiScaleCrop({self.size}, scales={self.scales})"
        else:
            kind = f"Resize({self.size}) + {self.views[1]} crop(s) of {self.size}, {self.views[0]} clip(s)"
        return f"ClipTransform({kind}, {self.normalize!r})"
