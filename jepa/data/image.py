"""Load still images as uint8 RGB arrays so they can join video batches as clips."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageDecodeError(RuntimeError):
    """An image file is missing, empty or cannot be decoded."""


def load_image(path: str | os.PathLike, target_short_side: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) as a viewer shows the file: turned by its EXIF orientation (phone
    photos are stored sideways) and, for 16-bit and float images, scaled to 8 bits rather than
    clipped. JPEGs larger than needed are decoded at reduced scale (PIL draft), which keeps the
    short side at or above `target_short_side`."""
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            if target_short_side and img.format == "JPEG":
                w, h = img.size
                scale = target_short_side / min(w, h)
                if scale < 1:
                    img.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
            return _rgb8(ImageOps.exif_transpose(img))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"{path}: cannot read image ({err})") from err


def _rgb8(img: Image.Image) -> np.ndarray:
    """PIL's own conversion clips 16-bit grey ("I;16", or "I" as PIL opens some 16-bit PNGs) at
    255, which turns a whole image white, and truncates float images in [0, 1] to black."""
    if img.mode.startswith("I"):
        grey = np.asarray(img, dtype=np.float64) / 257.0
    elif img.mode == "F":
        grey = np.asarray(img, dtype=np.float64)
        grey = grey * 255.0 if np.nanmax(grey, initial=0.0) <= 1.0 else grey
    else:
        return np.array(img.convert("RGB"))
    grey = np.nan_to_num(grey).clip(0, 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)
