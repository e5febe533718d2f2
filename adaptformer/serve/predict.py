"""Classify images with a trained model: files or PIL images in, top-k (class name, probability) out.

    predictor = Predictor.from_run("output/x/config.yaml")          # or Predictor.from_tuned("output/x/tuned")
    for p in predictor.predict(["a.jpg", "b.png"], topk=3):
        print(p.source, p.error or p.top)                             # [("cat", 0.91), ("dog", 0.05), ...]

A video model (data.dataset video) classifies video files instead: each is decoded as the test
split's clips are (data/kinds/video.py: test_clips x test_crops views, logits averaged).

Images are decoded by adaptformer/data/images.py (the training folders' rules: EXIF
orientation, 16-bit scaled, alpha dropped, a pixel limit; JPEGs decoded reduced when
much larger than the model's input) and prepared by the run's evaluation transform. Unlike
the CIFAR evaluation, every image is resized, whatever its size. A file that cannot be read
gives a Prediction with `error` set; the others are still classified, `batch_size` at a time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from adaptformer.errors import DataError, InputFileError, quoted, short_reason
from adaptformer.data.images import MAX_PIXELS, ImageTooLarge, open_rgb, walk_images
from adaptformer.data.transforms import eval_resize, eval_transform
from adaptformer.serve.trained import TrainedModel, from_run, from_tuned

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")
Source = Union[str, Image.Image]


@dataclass
class Prediction:
    source: str  # the path, or "<image i>" for the i-th PIL image given
    top: List[Tuple[str, float]] = field(default_factory=list)  # (class name, softmax probability), best first
    error: Optional[str] = None  # why the image could not be classified

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {"path": self.source, "predictions": [{"class": n, "score": s} for n, s in self.top],
                "error": self.error}


def prediction_transform(data_cfg):
    """The evaluation transform of `data_cfg`, resizing every image to the model's input (as for
    image folders; the CIFAR transform assumes 32x32 images already)."""
    return eval_transform(data_cfg, any_size=True)


def resize_target(data_cfg) -> int:
    """The side the evaluation transform resizes to before any crop."""
    plan = eval_resize(data_cfg, any_size=True)
    return plan["shorter_side"] if "shorter_side" in plan else plan["size"][0]


def describe_error(e: BaseException, source: Source = None) -> str:
    """One line for an image (or video) that could not be classified."""
    if isinstance(e, InputFileError):
        return e.reason
    if isinstance(e, DataError):  # a video: its message names the file first
        text = str(e)
        return text.split(": ", 1)[1] if isinstance(source, str) and text.startswith(quoted(source) + ": ") else text
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "is a folder, not an image"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, (ImageTooLarge, Image.DecompressionBombError)):
        return f"image too large: {e}"
    if isinstance(e, UnidentifiedImageError):
        if isinstance(source, str) and os.path.isfile(source) and os.path.getsize(source) == 0:
            return "empty file (0 bytes)"
        return "not an image format PIL can read (or a corrupt header)"
    return f"cannot read this image ({short_reason(e)})"


class Predictor:
    """`model` (eval mode) with its `class_names`; `data` is the run's DataConfig (its evaluation
    transform is used, and JPEGs at least twice its resize target are decoded reduced) or any
    callable taking an RGB PIL image to a float32 CHW array."""

    def __init__(self, model, class_names: Sequence[str], data: Union[Any, Callable], batch_size: int = 32,
                 max_pixels: Optional[int] = MAX_PIXELS):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.model.eval()
        self.class_names = list(class_names)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.video = None if callable(data) or getattr(data, "dataset", None) != "video" else data
        if callable(data):
            self.transform, self.draft_size = data, None
        elif self.video is not None:
            from adaptformer.data.kinds.video import eval_transform, test_views

            self.transform, self.draft_size = eval_transform(data, test_views(data)), None
        else:
            side = 2 * resize_target(data)  # the final resize still halves: no aliasing from the DCT scaling
            self.transform, self.draft_size = prediction_transform(data), (side, side)

    @classmethod
    def from_trained(cls, trained: TrainedModel, **kwargs) -> "Predictor":
        return cls(trained.model, trained.class_names, trained.data, **kwargs)

    @classmethod
    def from_run(cls, config, checkpoint: Optional[str] = None, overrides: Sequence[str] = (), log=print,
                 **kwargs) -> "Predictor":
        """From a run config (path or Config) and its best.pdparams (or `checkpoint`)."""
        return cls.from_trained(from_run(config, checkpoint, overrides, log=log), **kwargs)

    @classmethod
    def from_tuned(cls, tuned_dir: str, backbone_weights: Optional[str] = None, force: bool = False, log=print,
                   **kwargs) -> "Predictor":
        """From a tuned folder (tuned.pdparams + tuned.json) on its backbone."""
        return cls.from_trained(from_tuned(tuned_dir, backbone_weights, force, log=log), **kwargs)

    @property
    def extensions(self) -> Tuple[str, ...]:
        """What folders are walked for: video files for a video model, else images."""
        return VIDEO_EXTENSIONS if self.video is not None else IMAGE_EXTENSIONS

    def load(self, source: Source):
        """The RGB image the transform takes (decoding rules in adaptformer/data/images.py); for a
        video model, the frames of the test split's clips [clips * T, H, W, 3]."""
        if self.video is not None:
            from adaptformer.data.kinds.video import read_frames, test_views

            if not isinstance(source, str):
                raise ValueError("a video model classifies video files, given by path")
            return read_frames(source, self.video, False, test_views(self.video)[0])
        return open_rgb(source, draft_size=self.draft_size, max_pixels=self.max_pixels)

    def preprocess(self, source: Source) -> np.ndarray:
        """The float32 CHW array the model is given for `source`."""
        return np.asarray(self.transform(self.load(source)), dtype=np.float32)

    def iter_predict(self, sources: Iterable[Source], topk: int = 5) -> Iterator[Prediction]:
        """One Prediction per source, in order, as each batch is classified."""
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        batch: List[Tuple[int, str, Optional[np.ndarray], Optional[str]]] = []
        for i, source in enumerate(sources):
            name = source if isinstance(source, str) else f"<image {i}>"
            try:
                batch.append((i, name, self.preprocess(source), None))
            except Exception as e:  # any decoding failure is this file's, not the run's
                batch.append((i, name, None, describe_error(e, source)))
            if len(batch) == self.batch_size:
                yield from self._classify(batch, topk)
                batch = []
        if batch:
            yield from self._classify(batch, topk)

    def predict(self, sources: Iterable[Source], topk: int = 5) -> List[Prediction]:
        return list(self.iter_predict(sources, topk))

    def probabilities(self, arrays: np.ndarray) -> np.ndarray:
        """Softmax probabilities [N, num_classes] for a batch of preprocessed arrays [N, 3, H, W] (clips
        [N, 3, T, H, W]; several views [N, V, 3, T, H, W], their logits averaged)."""
        import paddle

        from adaptformer.engine.trainer import view_averaged_logits

        with paddle.no_grad():
            logits = view_averaged_logits(self.model, paddle.to_tensor(arrays))
            return paddle.nn.functional.softmax(logits.astype("float32"), axis=-1).numpy()

    def _classify(self, batch, topk: int) -> List[Prediction]:
        good = [arr for _, _, arr, _ in batch if arr is not None]
        probs = iter(self.probabilities(np.stack(good)) if good else [])
        k = min(topk, len(self.class_names))
        out = []
        for _, name, arr, error in batch:
            if arr is None:
                out.append(Prediction(name, error=error))
                continue
            p = next(probs)
            order = np.argsort(-p, kind="stable")[:k]
            out.append(Prediction(name, [(self.class_names[j], float(p[j])) for j in order]))
        return out


def expand_inputs(inputs: Sequence[str], extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Tuple[List[str], List[str]]:
    """(file paths, folders holding none): each folder walked for files with `extensions` (sorted;
    hidden files and folders skipped), every other argument kept as given, whatever its extension."""
    paths, empty = [], []
    for item in inputs:
        if not os.path.isdir(item):
            paths.append(item)
            continue
        found = walk_images(item, tuple(extensions))
        paths.extend(found)
        if not found:
            empty.append(item)
    return paths, empty


def true_label(path: str, class_names: Sequence[str]) -> Optional[str]:
    """The class an image is filed under (its folder's name), when that is a class name."""
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return parent if parent in class_names else None
