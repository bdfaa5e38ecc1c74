"""Drawing helpers shared by every picture: input checks, labelled grids, legends, file writers.

Pictures are plain uint8 (H, W, 3) numpy arrays until they are written, so each renderer can be
tested by looking at pixels; PIL draws the text and writes PNG / GIF, PyAV writes MP4 (no
matplotlib and no system ffmpeg needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]
PathLike = str | Path

BACKGROUND: Color = (255, 255, 255)
TEXT_COLOR: Color = (30, 30, 30)
FONT_SIZE = 12


def check_clip(clip: np.ndarray, name: str = "clip") -> np.ndarray:
    """Return ``clip`` as a uint8 (T, H, W, 3) array or raise a ValueError saying what is wrong."""
    clip = np.asarray(clip)
    if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"{name} must be uint8 (T, H, W, 3), got {clip.dtype} {clip.shape}")
    if min(clip.shape[:3]) < 1:
        raise ValueError(f"{name} must have at least one frame and pixel, got shape {clip.shape}")
    return clip


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``image`` as a uint8 (H, W, 3) array or raise a ValueError."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"{name} must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return image


@lru_cache(maxsize=8)
def font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    """Pillow's bundled font: no font files to ship or find on the user's machine."""
    return ImageFont.load_default(size=size)


def text_size(text: str, size: int = FONT_SIZE) -> tuple[int, int]:
    """(width, height) in pixels that ``text`` occupies when drawn with :func:`font`."""
    left, top, right, bottom = font(size).getbbox(text or " ")
    return int(right - min(left, 0)), int(bottom - min(top, 0))


def draw_text(
    image: np.ndarray, text: str, xy: tuple[int, int], color: Color = TEXT_COLOR, size: int = FONT_SIZE
) -> np.ndarray:
    """Draw ``text`` with its top-left corner at ``xy`` (x, y) into a copy of ``image``."""
    pil = Image.fromarray(check_image(image))
    ImageDraw.Draw(pil).text(xy, text, fill=color, font=font(size))
    return np.asarray(pil).copy()


def canvas(height: int, width: int, color: Color = BACKGROUND) -> np.ndarray:
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = color
    return out


def text_line(text: str, width: int, size: int = FONT_SIZE, pad: int = 2) -> np.ndarray:
    """A white strip ``width`` wide holding one line of text; used for titles and row labels."""
    height = text_size(text, size)[1] + 2 * pad
    return draw_text(canvas(height, max(width, 1)), text, (pad, pad), size=size)


def hstack(images: Sequence[np.ndarray], pad: int = 2, color: Color = BACKGROUND) -> np.ndarray:
    """Images side by side, top-aligned, ``pad`` pixels apart."""
    images = [check_image(im) for im in images]
    if not images:
        raise ValueError("hstack needs at least one image")
    height = max(im.shape[0] for im in images)
    width = sum(im.shape[1] for im in images) + pad * (len(images) - 1)
    out, x = canvas(height, width, color), 0
    for im in images:
        out[: im.shape[0], x : x + im.shape[1]] = im
        x += im.shape[1] + pad
    return out


def vstack(images: Sequence[np.ndarray], pad: int = 2, color: Color = BACKGROUND) -> np.ndarray:
    """Images one below the other, left-aligned, ``pad`` pixels apart."""
    images = [check_image(im) for im in images]
    if not images:
        raise ValueError("vstack needs at least one image")
    width = max(im.shape[1] for im in images)
    height = sum(im.shape[0] for im in images) + pad * (len(images) - 1)
    out, y = canvas(height, width, color), 0
    for im in images:
        out[y : y + im.shape[0], : im.shape[1]] = im
        y += im.shape[0] + pad
    return out


def grid(
    rows: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    pad: int = 2,
) -> np.ndarray:
    """Cells laid out in rows; each row may carry a label line above it, columns a header.

    Labels go above rows rather than to their left so long descriptions do not widen the picture.
    """
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("grid needs at least one row and every row at least one cell")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"got {len(row_labels)} row labels for {len(rows)} rows")
    lines = [hstack(r, pad) for r in rows]
    width = max(line.shape[1] for line in lines)
    if row_labels is not None:
        width = max(width, *(text_size(label)[0] + 4 for label in row_labels))
    parts: list[np.ndarray] = []
    if col_labels is not None:
        if len(col_labels) != len(rows[0]):
            raise ValueError(f"got {len(col_labels)} column labels for {len(rows[0])} columns")
        heads = [text_line(label, cell.shape[1], pad=1) for label, cell in zip(col_labels, rows[0])]
        parts.append(hstack(heads, pad))
    for i, line in enumerate(lines):
        if row_labels is not None:
            parts.append(text_line(row_labels[i], width))
        parts.append(line)
    return add_border(vstack(parts, pad), pad)


def add_border(image: np.ndarray, width: int, color: Color = BACKGROUND) -> np.ndarray:
    """A ``width``-pixel frame around ``image``."""
    image = check_image(image)
    out = canvas(image.shape[0] + 2 * width, image.shape[1] + 2 * width, color)
    out[width : width + image.shape[0], width : width + image.shape[1]] = image
    return out


def legend(items: Sequence[tuple[str, Color]], size: int = FONT_SIZE, pad: int = 4) -> np.ndarray:
    """One line of colour swatches with their names."""
    if not items:
        raise ValueError("legend needs at least one (name, colour) item")
    swatch = text_size("Hg", size)[1]
    parts = []
    for name, color in items:
        box = canvas(swatch, swatch, color)
        box[0, :] = box[-1, :] = box[:, 0] = box[:, -1] = TEXT_COLOR
        parts.append(box)
        parts.append(text_line(name, text_size(name, size)[0] + 2 * pad, size, pad=0))
    return add_border(hstack(parts, pad), pad)


def uniform_size(frames: Sequence[np.ndarray], color: Color = BACKGROUND) -> list[np.ndarray]:
    """Pad frames (bottom and right) to the largest size, as an animation needs one size."""
    frames = [check_image(f) for f in frames]
    if not frames:
        return []
    height = max(f.shape[0] for f in frames)
    width = max(f.shape[1] for f in frames)
    out = []
    for f in frames:
        padded = canvas(height, width, color)
        padded[: f.shape[0], : f.shape[1]] = f
        out.append(padded)
    return out


def upsample(tokens: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour upsampling of the leading axes of ``tokens`` by integer ``factors``."""
    out = np.asarray(tokens)
    for axis, factor in enumerate(factors):
        if factor < 1:
            raise ValueError(f"upsampling factors must be >= 1, got {tuple(factors)}")
        out = np.repeat(out, factor, axis=axis)
    return out


def resize(image: np.ndarray, height: int, width: int, smooth: bool = True) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image (bilinear, or nearest to keep token edges sharp)."""
    method = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(check_image(image)).resize((width, height), method)).copy()


def save_png(image: np.ndarray, path: PathLike, colors: int | None = None) -> Path:
    """Write a PNG; ``colors`` (<= 256) stores a palette image, which keeps docs pictures small."""
    pil = Image.fromarray(check_image(image))
    if colors is not None:
        if not 2 <= colors <= 256:
            raise ValueError(f"colors must lie in [2, 256], got {colors}")
        pil = pil.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path, format="PNG", optimize=True)
    return path


def _check_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    frames = [check_image(f, "animation frame") for f in frames]
    if not frames:
        raise ValueError("an animation needs at least one frame")
    if len({f.shape for f in frames}) != 1:
        raise ValueError(f"animation frames must share one size, got {sorted({f.shape for f in frames})}")
    return frames


def save_gif(frames: Sequence[np.ndarray], path: PathLike, fps: float = 4.0) -> Path:
    """Write a looping animated GIF."""
    frames = _check_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    pils = [Image.fromarray(f) for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = max(int(round(1000 / fps)), 20)  # browsers clamp shorter delays to 100 ms
    pils[0].save(path, format="GIF", save_all=True, append_images=pils[1:], duration=duration, loop=0)
    return path


def save_mp4(frames: Sequence[np.ndarray], path: PathLike, fps: int = 4, crf: int = 18) -> Path:
    """Write H.264 (yuv420p, so every player opens it); odd sizes are padded by one white pixel."""
    frames = _check_frames(frames)
    if int(fps) != fps or fps <= 0:
        raise ValueError(f"fps must be a positive integer for MP4, got {fps}")
    height, width = frames[0].shape[:2]
    even_h, even_w = height + height % 2, width + width % 2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            padded = canvas(even_h, even_w)
            padded[:height, :width] = frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def save_animation(frames: Sequence[np.ndarray], path: PathLike, fps: int = 4) -> Path:
    """Write ``.gif`` or ``.mp4`` by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return save_gif(frames, path, fps)
    if suffix == ".mp4":
        return save_mp4(frames, path, fps)
    raise ValueError(f"animation path must end in .gif or .mp4, got {path}")
