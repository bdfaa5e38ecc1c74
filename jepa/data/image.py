"""Load still images as uint8 RGB arrays so they can join video batches as clips."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageDecodeError(RuntimeError):
    """An image file is missing, empty or cannot be decoded."""


def load_image(path: str | os.PathLike, target_short_side: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3). JPEGs larger than needed are decoded at reduced scale (PIL draft),
    which keeps the short side at or above `target_short_side`."""
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            if target_short_side and img.format == "JPEG":
                w, h = img.size
                scale = target_short_side / min(w, h)
                if scale < 1:
                    img.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
            return np.array(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"{path}: cannot read image ({err})") from err
