"""Clip augmentations on uint8 channels-last tensors, and normalisation on any device.

Clips stay uint8 (..., T, H, W, C) through cropping and resizing: a (T, H, W, C) tensor
permuted to (T, C, H, W) is already channels-last in memory, which is the layout torch's
fast uint8 bilinear kernels want, so the crop is resized without a float copy. Conversion to
float happens once, in `normalize_clip`, preferably on the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CropBox:
    """A crop in source pixels plus whether to mirror it."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def resize_frames(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize uint8 (N, H, W, C) frames to `size` (h, w) with antialiased bilinear, staying uint8."""
    if tuple(x.shape[-3:-1]) == tuple(size):
        return x
    chw = x.permute(0, 3, 1, 2)
    if x.device.type == "cpu":
        out = F.interpolate(chw, size=size, mode="bilinear", antialias=True, align_corners=False)
    else:
        out = F.interpolate(chw.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out.permute(0, 2, 3, 1)


def _check_clip(x: torch.Tensor) -> None:
    if x.dtype != torch.uint8 or x.dim() < 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected a uint8 clip (..., T, H, W, C), got {x.dtype} {tuple(x.shape)}")


class RandomResizedCropClip:
    """One random-resized crop and flip per clip (shared by all its frames), resized to `size`.

    Scale is the crop's fraction of the frame area, ratio its width/height, both drawn as in
    the usual RandomResizedCrop (log-uniform ratio, up to 10 tries, else a center crop with
    the ratio clamped to the range). Leading dims before (T, H, W, C) are separate clips.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.3, 1.0),
        ratio: tuple[float, float] = (0.75, 1.35),
        hflip_p: float = 0.5,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {ratio}")
        if not 0 <= hflip_p <= 1:
            raise ValueError(f"hflip_p must be in [0, 1], got {hflip_p}")
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip_p = float(hflip_p)

    @property
    def min_source_short_side(self) -> int:
        """Short side a frame may be decoded at so the smallest possible crop still has `size` pixels."""
        narrowest = min(self.ratio[0], 1.0 / self.ratio[1], 1.0)
        return math.ceil(self.size / math.sqrt(self.scale[0] * narrowest))

    def sample_params(self, height: int, width: int, generator: torch.Generator | None = None) -> CropBox:
        """Draw a crop box for a (height, width) frame."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * _uniform(generator, *self.scale)
            aspect = math.exp(_uniform(generator, *log_ratio))
            w = round(math.sqrt(target_area * aspect))
            h = round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (), generator=generator))
                left = int(torch.randint(0, width - w + 1, (), generator=generator))
                return CropBox(top, left, h, w, self._flip(generator))
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            h, w = height, round(height * self.ratio[1])
        else:
            h, w = height, width
        return CropBox((height - h) // 2, (width - w) // 2, h, w, self._flip(generator))

    def _flip(self, generator: torch.Generator | None) -> bool:
        return self.hflip_p > 0 and torch.rand((), generator=generator).item() < self.hflip_p

    def apply(self, clip: torch.Tensor, box: CropBox) -> torch.Tensor:
        """Crop, resize and maybe flip one clip (T, H, W, C)."""
        crop = clip[:, box.top : box.top + box.height, box.left : box.left + box.width]
        out = resize_frames(crop, (self.size, self.size))
        return out.flip(-2) if box.flip else out

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(x)
        lead = x.shape[:-4]
        clips = x.reshape(-1, *x.shape[-4:])
        out = [self.apply(c, self.sample_params(c.shape[1], c.shape[2], generator)) for c in clips]
        return torch.stack(out).reshape(*lead, *out[0].shape)

    def __repr__(self) -> str:
        return (
            f"RandomResizedCropClip(size={self.size}, scale={self.scale}, ratio={self.ratio}, hflip_p={self.hflip_p})"
        )


class EvalClipTransform:
    """Deterministic eval view: resize the short side to `short_side` then center-crop `size`.

    `short_side` defaults to size * 256 / 224 (the usual eval resize ratio).
    """

    def __init__(self, size: int, short_side: int | None = None) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = int(size)
        self.short_side = int(short_side) if short_side is not None else round(size * 256 / 224)
        if self.short_side < self.size:
            raise ValueError(f"short_side ({self.short_side}) must be >= size ({self.size})")

    @property
    def min_source_short_side(self) -> int:
        return self.short_side

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform (..., T, H, W, C) uint8; `generator` is accepted for a common signature."""
        _check_clip(x)
        lead, (t, h, w, c) = x.shape[:-4], x.shape[-4:]
        scale = self.short_side / min(h, w)
        new_h, new_w = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        frames = resize_frames(x.reshape(-1, h, w, c), (new_h, new_w))
        top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
        out = frames[:, top : top + self.size, left : left + self.size]
        return out.reshape(*lead, t, self.size, self.size, c)

    def __repr__(self) -> str:
        return f"EvalClipTransform(size={self.size}, short_side={self.short_side})"


def normalize_clip(
    x: torch.Tensor,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 (B, T, H, W, C) or (B, N, T, H, W, C) -> normalised float (B, C, T, H, W) or (B, N, C, T, H, W).

    Runs wherever `x` lives; call it after moving the uint8 batch to the GPU (4x less to copy).
    """
    if x.dim() not in (5, 6):
        raise ValueError(f"expected (B, T, H, W, C) or (B, N, T, H, W, C), got shape {tuple(x.shape)}")
    channels = x.shape[-1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} values for {channels} channels")
    lead = x.dim() - 4
    order = (*range(lead), x.dim() - 1, lead, lead + 1, lead + 2)
    out = x.permute(order).to(dtype=dtype, memory_format=torch.contiguous_format)
    shape = (channels, 1, 1, 1)
    scale = 1.0 / (255.0 * torch.tensor(std, dtype=torch.float64))
    shift = torch.tensor(mean, dtype=torch.float64) / torch.tensor(std, dtype=torch.float64)
    out.mul_(scale.to(device=x.device, dtype=dtype).view(shape))
    out.sub_(shift.to(device=x.device, dtype=dtype).view(shape))
    return out
