"""One image file (or PIL image) -> the RGB PIL image the transforms take.

The same rules for training folders (adaptformer/data/kinds/folder.py) and prediction
(adaptformer/serve/predict.py), so a model sees at prediction what it saw in training:

- EXIF orientation is applied (ImageOps.exif_transpose): a phone photo stored
  sideways is classified upright, as viewers show it.
- 16-bit greyscale ("I;16*", and "I", which PIL gives 16-bit PGM/TIFF) is scaled
  to 8 bits (value // 257, so 8-bit v stored as v * 257 comes back as v), not
  clipped at 255. 16-bit RGB PNGs
  come out of PIL as 8-bit RGB already.
- Alpha is dropped, not composited: RGBA, LA and palette images with a
  transparent colour keep the colour stored under each pixel. The folder dataset
  has always trained on that, so prediction does the same.
- Greyscale, palette, CMYK and the other PIL modes go through PIL's convert("RGB")
  (CMYK without an ICC profile: the plain inversion).
- Size: a header declaring more than MAX_PIXELS pixels is refused before any pixel
  is decoded (a decompression bomb, or a file no one means to classify). With
  `draft_size`, a JPEG is decoded reduced by its DCT scaling (1/2, 1/4 or 1/8), to
  no less than draft_size on either side: a 48-megapixel photo decodes as 6.
- Multi-frame files (GIF, TIFF pages): the first frame.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

from adaptformer.files import open_regular

# PIL's own hard limit (2 x Image.MAX_IMAGE_PIXELS, about 13,400 x 13,400): above every camera
# sensor sold (the largest, 150 MP), decoded in about 0.5 GB as RGB. PIL warns from half of it;
# that warning is silenced here, the limit being this one.
MAX_PIXELS = 178_956_970
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageTooLarge(ValueError):
    """The header declares more pixels than the limit."""


def check_size(size: Tuple[int, int], max_pixels: Optional[int]) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(f"{width} x {height} = {width * height:,} pixels, above the limit of "
                            f"{max_pixels:,} (decompression-bomb guard)")


ROWS_PER_CHUNK = 256


def _sixteen_to_eight_bit(img: Image.Image) -> Image.Image:
    """value // 257 (257 = 65535 / 255: v * 257 -> v), clipped to 0..65535, a band of rows at a
    time: no full-size wide copy (a 13000 x 13000 PNG would otherwise take gigabytes as int64)."""
    width, height = img.size
    out = np.empty((height, width), np.uint8)
    for top in range(0, height, ROWS_PER_CHUNK):
        rows = np.asarray(img.crop((0, top, width, min(height, top + ROWS_PER_CHUNK))))
        np.floor_divide(np.clip(rows, 0, 65535), 257, out=out[top:top + rows.shape[0]], casting="unsafe")
    return Image.fromarray(out)


def to_rgb(img: Image.Image) -> Image.Image:
    """`img` (any PIL mode, EXIF orientation applied) as an 8-bit RGB image."""
    img = ImageOps.exif_transpose(img)
    if img.mode in SIXTEEN_BIT:
        img = _sixteen_to_eight_bit(img)
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # PIL warns when a palette with transparency goes straight to RGB
    return img if img.mode == "RGB" else img.convert("RGB")


def open_rgb(source: Union[str, Image.Image], draft_size: Optional[Tuple[int, int]] = None,
             max_pixels: Optional[int] = MAX_PIXELS) -> Image.Image:
    """The image at path `source` (or a PIL image) as RGB. Raises what PIL raises for a file it
    cannot decode, ImageTooLarge over `max_pixels`; the caller words the error."""
    if isinstance(source, Image.Image):
        check_size(source.size, max_pixels)
        return to_rgb(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with open_regular(source, "image", "an image file") as f, Image.open(f) as img:
            check_size(img.size, max_pixels)
            if draft_size is not None and img.format == "JPEG":
                img.draft("RGB", draft_size)
            img.load()
            return to_rgb(img)


def is_hidden(name: str) -> bool:
    """Hidden files and folders (".DS_Store", AppleDouble "._x.png", ".git"): never images."""
    return name.startswith(".")


def walk_images(folder: str, extensions: Iterable[str]) -> List[str]:
    """The image files under `folder` (sorted, by extension, case-insensitive), for training folders and
    prediction alike: hidden names skipped; links to folders followed, but never into a folder
    already walked (a link to "." or to a sibling would list its images again, or loop)."""
    extensions = tuple(e.lower() for e in extensions)
    found: List[str] = []
    seen = set()

    def walk(path: str) -> None:
        real = os.path.realpath(path)
        if real in seen:
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if is_hidden(entry.name):
                continue
            try:
                is_dir = entry.is_dir()  # follows links; a loop of links is neither
            except OSError:
                is_dir = False
            if is_dir:
                walk(entry.path)
            elif entry.name.lower().endswith(extensions):
                found.append(entry.path)

    walk(folder)
    return found
