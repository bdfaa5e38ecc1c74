"""The linear probe and the raw-pixel baseline: features, fitting, cross-validation."""

from __future__ import annotations

import pytest
import torch

from jepa.eval import FeatureSet, LinearProbeConfig, RawPixels, linear_probe, slice_features
from jepa.eval.linear import choose_weight_decay


def feature_set(tokens: torch.Tensor, rows_per_video: int = 1) -> FeatureSet:
    rows = tokens.shape[0]
    video = torch.arange(rows) // rows_per_video
    zeros = torch.zeros(rows, dtype=torch.long)
    return FeatureSet(tokens, video, zeros, zeros, torch.zeros(rows // rows_per_video, dtype=torch.long))


def test_slice_features_are_the_mean_then_each_time_slice() -> None:
    tokens = torch.arange(2 * 6 * 2, dtype=torch.float32).reshape(2, 6, 2)  # 2 rows, 3 slices x 2 tokens
    fs = feature_set(tokens, rows_per_video=2)  # one video, two windows
    out = slice_features(fs, time_slices=3)
    per_row = torch.cat([tokens.mean(1), tokens.reshape(2, 3, 2, 2).mean(2).flatten(1)], dim=1)
    assert out.shape == (1, 2 * 4) and torch.allclose(out[0], per_row.mean(0))
    with pytest.raises(ValueError, match="time slices"):
        slice_features(fs, time_slices=4)


def test_linear_probe_separates_linear_classes_and_not_noise() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 3
    y = torch.randint(0, 4, (200,), generator=g)
    x = centers[y] + torch.randn(200, 16, generator=g)
    result = linear_probe(x[:150], y[:150], x[150:], y[150:], num_classes=4)
    assert result["top1"] > 95 and result["weight_decay"] in LinearProbeConfig().weight_decays
    noise = torch.randn(200, 16, generator=g)
    assert linear_probe(noise[:150], y[:150], noise[150:], y[150:], num_classes=4)["top1"] < 50
    assert linear_probe(x[:150], y[:150], x[150:], y[150:], num_classes=4) == result  # deterministic


def test_the_l2_weight_is_chosen_on_the_training_set_only() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (90,), generator=g)
    x = torch.randn(90, 40, generator=g)
    x[:, :3] += 1.5 * torch.nn.functional.one_hot(y, 3)
    cfg = LinearProbeConfig(weight_decays=(1e-4, 1e-2, 1.0))
    chosen = choose_weight_decay(x[:60], y[:60], 3, cfg)
    for val_labels in (y[60:], y[60:].flip(0), torch.zeros(30, dtype=torch.long)):
        assert linear_probe(x[:60], y[:60], x[60:], val_labels, 3, cfg)["weight_decay"] == chosen


def test_raw_pixels_tokens_hold_each_time_slice_downsampled() -> None:
    clip = torch.rand(2, 3, 8, 32, 32)
    enc = RawPixels(size=4, tubelet_size=2)
    tokens = enc(clip)
    assert tokens.shape == (2, 4, enc.embed_dim) and enc.embed_dim == 2 * 3 * 16
    expected = torch.nn.functional.avg_pool2d(clip[:, :, 0], 8).flatten(1)  # frame 0, every channel
    assert torch.allclose(tokens[:, 0].reshape(2, 2, 3, 16)[:, 0].flatten(1), expected, atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        enc(torch.rand(1, 3, 7, 32, 32))
