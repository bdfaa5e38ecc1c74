"""Crop/flip/resize statistics on uint8 clips, the eval view and normalisation."""

import math

import pytest
import torch

from jepa.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropBox,
    EvalClipTransform,
    RandomResizedCropClip,
    normalize_clip,
)


@pytest.mark.parametrize("height, width", [(240, 288), (240, 426)])
def test_crops_obey_scale_and_aspect(height, width):
    t = RandomResizedCropClip(64, scale=(0.3, 1.0), ratio=(0.75, 1.35))
    g = torch.Generator().manual_seed(0)
    scales, ratios = [], []
    for _ in range(2000):
        box = t.sample_params(height, width, g)
        assert box.top >= 0 and box.top + box.height <= height
        assert box.left >= 0 and box.left + box.width <= width
        scales.append(box.height * box.width / (height * width))
        ratios.append(box.width / box.height)
    # Rounding to whole pixels moves area and ratio by well under 2 % at this size.
    assert min(scales) >= 0.3 * 0.98 and max(scales) <= 1.0
    assert min(ratios) >= 0.75 * 0.98 and max(ratios) <= 1.35 * 1.02
    # Both ends of the ranges are reached where the frame allows (a 16:9 frame has no crop
    # of ratio <= 1.35 above 76 % of its area).
    reachable = min(1.0, 1.35 * height / width)
    assert min(scales) < 0.35 and max(scales) > 0.9 * reachable
    assert min(ratios) < 0.8 and max(ratios) > 1.3


def test_one_crop_per_clip_shared_by_its_frames():
    t = RandomResizedCropClip(16, hflip_p=0.0)
    frame = torch.randint(0, 256, (1, 48, 64, 3), dtype=torch.uint8)
    clips = frame.expand(2, 5, 48, 64, 3).contiguous()
    out = t(clips, torch.Generator().manual_seed(1))
    assert out.shape == (2, 5, 16, 16, 3) and out.dtype == torch.uint8
    assert all(torch.equal(out[c, 0], out[c, i]) for c in range(2) for i in range(5))
    assert not torch.equal(out[0, 0], out[1, 0]), "each clip has its own crop"


def test_apply_crops_the_box_and_flips():
    t = RandomResizedCropClip(4)
    clip = torch.arange(6 * 8, dtype=torch.uint8).reshape(1, 6, 8, 1).expand(2, 6, 8, 1).contiguous()
    out = t.apply(clip, CropBox(top=1, left=2, height=4, width=4))
    assert torch.equal(out, clip[:, 1:5, 2:6])
    flipped = t.apply(clip, CropBox(top=1, left=2, height=4, width=4, flip=True))
    assert torch.equal(flipped, clip[:, 1:5, 2:6].flip(2))


def test_same_generator_seed_same_output_and_flip_rate():
    t = RandomResizedCropClip(8)
    x = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    a = t(x, torch.Generator().manual_seed(5))
    b = t(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(0)
    flips = sum(t.sample_params(32, 32, g).flip for _ in range(1000))
    assert 420 < flips < 580


def test_decode_size_hint_keeps_the_smallest_crop_at_full_size():
    t = RandomResizedCropClip(256, scale=(0.3, 1.0), ratio=(0.75, 1.35))
    side = t.min_source_short_side
    g = torch.Generator().manual_seed(0)
    smallest = min(min(b.height, b.width) for b in (t.sample_params(side, side * 16 // 9, g) for _ in range(3000)))
    assert smallest >= 256 - 1
    assert side == math.ceil(256 / math.sqrt(0.3 * 0.75 / 1.0125))


def test_eval_transform_resizes_short_side_and_center_crops():
    t = EvalClipTransform(32, short_side=40)
    x = torch.zeros(3, 60, 120, 3, dtype=torch.uint8)
    x[:, :, 55:65] = 255  # a bright band in the middle column range
    out = t(x)
    assert out.shape == (3, 32, 32, 3)
    assert out[0, :, 16, 0].float().mean() > 200, "the center survives the crop"
    assert EvalClipTransform(224).short_side == 256


def test_normalize_clip_values_and_layout():
    x = torch.zeros(2, 3, 4, 5, 3, dtype=torch.uint8)
    x[..., 0] = 255
    out = normalize_clip(x)
    assert out.shape == (2, 3, 3, 4, 5) and out.dtype == torch.float32 and out.is_contiguous()
    expected = [
        (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
        -IMAGENET_MEAN[1] / IMAGENET_STD[1],
        -IMAGENET_MEAN[2] / IMAGENET_STD[2],
    ]
    for c in range(3):
        assert torch.allclose(out[:, c], torch.full_like(out[:, c], expected[c]), atol=1e-5)
    multi = normalize_clip(torch.zeros(2, 4, 3, 8, 8, 3, dtype=torch.uint8))
    assert multi.shape == (2, 4, 3, 3, 8, 8)
    with pytest.raises(ValueError):
        normalize_clip(torch.zeros(3, 8, 8, 3, dtype=torch.uint8))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError):
        RandomResizedCropClip(32, scale=(0.0, 1.0))
    with pytest.raises(ValueError):
        RandomResizedCropClip(32)(torch.zeros(4, 8, 8, 3))
    with pytest.raises(ValueError):
        EvalClipTransform(32, short_side=16)
