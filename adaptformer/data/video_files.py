"""Frames of a video file, decoded with PyAV (`av` on PyPI, FFmpeg inside its wheel), within bounds:
the file is a regular file within the video budget (files/opener.py), a frame is at most MAX_SIDE
pixels a side, a video claims or counts at most MAX_FRAMES frames, and decoding stops at the last
frame the clip needs. A file that cannot be opened, holds no video stream or no frames, or ends
before a frame it claims (truncated) is one DataError naming it; data/loading.py then applies
data.on_bad_image as for an unreadable image.
"""
from __future__ import annotations

from typing import Callable, List

import numpy as np

from adaptformer.errors import DataError, quoted, short_reason
from adaptformer.files.opener import open_regular

MAX_SIDE = 4096
MAX_FRAMES = 200_000  # about 1.8 hours at 30 frames/s


def _av():
    try:
        import av
    except ImportError:
        raise DataError('data.dataset video decodes with PyAV: pip install -e ".[video]" (or pip install av)') from None
    return av


class _Video:
    """A container PyAV reads from the file the opener opened (never by path), closed with it."""

    def __init__(self, path: str):
        av = _av()
        self.file = open_regular(path, "video", "a video file")
        try:
            self.container = av.open(self.file, metadata_errors="ignore")
        except Exception as e:  # noqa: BLE001  (FFmpeg's many error classes: one line each)
            self.file.close()
            reason = short_reason(e).replace(f": {path!r}", "")  # FFmpeg's messages repeat the path
            raise DataError(f"{quoted(path)}: not a readable video ({reason})") from None

    def __enter__(self):
        return self.container

    def __exit__(self, *exc):
        self.container.close()
        self.file.close()


def _open(path: str) -> _Video:
    return _Video(path)


def _stream(container, path: str):
    if not container.streams.video:
        raise DataError(f"{quoted(path)}: holds no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise DataError(f"{quoted(path)}: frames of {width}x{height} pixels; expected 1 to {MAX_SIDE} a side")
    return stream


def frame_count(path: str) -> int:
    """The frames the video holds: its header's count, else its video packets counted (no decoding)."""
    with _open(path) as container:
        stream = _stream(container, path)
        count = stream.frames
        if count <= 0:
            try:
                for packet in container.demux(stream):
                    count += packet.size > 0
                    if count > MAX_FRAMES:
                        break
            except Exception as e:  # noqa: BLE001
                raise DataError(f"{quoted(path)}: cannot be read to its end ({short_reason(e)})") from None
    if count > MAX_FRAMES:
        raise DataError(f"{quoted(path)}: more than {MAX_FRAMES} frames; expected a clip-length video")
    if count <= 0:
        raise DataError(f"{quoted(path)}: holds no frames")
    return count


def read_clip(path: str, pick: Callable[[int], List[int]]) -> np.ndarray:
    """[len(indices), H, W, 3] uint8 RGB frames at `indices = pick(frame_count)` (sorted or not,
    repeats allowed), decoding only up to the last of them."""
    try:
        indices = [int(i) for i in pick(frame_count(path))]
    except DataError as e:
        if str(e).startswith(quoted(path)):
            raise
        raise DataError(f"{quoted(path)}: {e}") from None
    wanted, last, frames = set(indices), max(indices), {}
    decoded = 0
    with _open(path) as container:
        stream = _stream(container, path)
        try:
            for decoded, frame in enumerate(container.decode(stream), 1):
                if decoded - 1 in wanted:
                    frames[decoded - 1] = frame.to_ndarray(format="rgb24")
                if decoded - 1 >= last:
                    break
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{quoted(path)}: decoding failed at frame {decoded} ({short_reason(e)})") from None
    if len(frames) < len(wanted):
        raise DataError(f"{quoted(path)}: ends after {decoded} frames, before frame {last + 1} it claims "
                        "(truncated or damaged)")
    shapes = {f.shape for f in frames.values()}
    if len(shapes) > 1:
        raise DataError(f"{quoted(path)}: frames change size within the video ({sorted(shapes)})")
    return np.stack([frames[i] for i in indices])
