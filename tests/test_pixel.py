"""Pixel-target baseline: target layout, objective, and a run through the shared training loop."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_train import compose_cfg, tiny_overrides

from jepa.export.load import load_encoder
from jepa.masks.multiblock import MaskSampler
from jepa.models.layers import PatchEmbed3D
from jepa.train import build
from jepa.train.checkpoint import find_latest, load_checkpoint
from jepa.train.logging import read_metrics
from jepa.train.pixel import PixelMAE, patchify, pixel_targets
from jepa.train.trainer import train


def tiny(run_dir: Path, cache: Path, steps: int, experiment: str) -> list[str]:
    """test_train's tiny run under `experiment`, checkpointing only at the end."""
    return [
        f"experiment={experiment}",
        *tiny_overrides(run_dir, cache, steps),
        "trainer.ckpt_every=0",
        "trainer.tensorboard=false",
    ]


def test_patchify_follows_the_encoder_token_order() -> None:
    torch.manual_seed(0)
    clips = torch.randn(2, 3, 4, 16, 24)
    embed = PatchEmbed3D(3, 1, patch_size=8, tubelet_size=2)
    with torch.no_grad():
        embed.proj.weight.fill_(1.0)
        embed.proj.bias.zero_()
        summed = embed(clips)[..., 0]
    patches = patchify(clips, patch_size=8, tubelet_size=2)
    assert patches.shape == (2, 2 * 2 * 3, 2 * 8 * 8, 3)
    torch.testing.assert_close(patches.sum(dim=(2, 3)), summed, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="tile"):
        patchify(clips[:, :, :3], 8, 2)


def test_normalised_targets_are_standardised_per_tubelet_and_channel() -> None:
    clips = torch.rand(1, 3, 2, 16, 16) * 5 + 2
    raw = pixel_targets(clips, 8, 2, normalize=False)
    norm = pixel_targets(clips, 8, 2).reshape(1, 4, 128, 3)
    torch.testing.assert_close(raw, patchify(clips, 8, 2).flatten(2))
    torch.testing.assert_close(norm.mean(dim=2), torch.zeros(1, 4, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.std(dim=2), torch.ones(1, 4, 3), atol=1e-4, rtol=0)


def test_pixel_objective_fits_a_fixed_batch() -> None:
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1, "pixel_demo"))
    torch.manual_seed(0)
    model = build.build_model(cfg)
    assert isinstance(model, PixelMAE) and set(model.checkpoint_modules()) == {"encoder", "predictor"}
    assert model.predictor.predictor_proj.out_features == 3 * 2 * 8 * 8
    sampler = MaskSampler(build.mask_specs(cfg), build.token_grid(cfg))
    ctx, tgt = sampler(2, torch.Generator().manual_seed(0))
    # Smooth clips: the normalised pixels of a masked tubelet follow from its neighbours.
    clips = F.interpolate(torch.randn(2, 3, 2, 2, 2), size=(4, 32, 32), mode="trilinear")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        loss, stats = model(clips, ctx, tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert stats["feat_std"] > 0
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_pixel_objective_refuses_the_jepa_terms() -> None:
    """The demo's variance/covariance terms would be silently dropped by objective=pixel."""
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1, "pixel_demo") + ["optim.var_weight=1"])
    with pytest.raises(ValueError, match="objective=pixel has none"):
        build.build_model(cfg)


def test_objective_must_be_known() -> None:
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1, "demo") + ["objective=mae"])
    with pytest.raises(ValueError, match="objective must be one of"):
        build.build_model(cfg)


def test_pixel_run_trains_saves_resumes_and_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    cfg = compose_cfg(tiny(run, tmp_path / "cache", 3, "pixel_demo"))
    summary = train(cfg)
    records = read_metrics(run)
    assert [r["step"] for r in records] == [0, 1, 2] and math.isfinite(summary["last_loss"])
    assert all(r["feat_std"] > 0 for r in records)
    # No teacher, so no EMA momentum in the metrics (bench_learning reads it as the teacher's).
    assert not any("ema" in r for r in records)
    weights, state, _ = load_checkpoint(find_latest(run))
    assert set(weights) == {"encoder", "predictor"} and state["step"] == 3
    more = compose_cfg(tiny(run, tmp_path / "cache", 4, "pixel_demo"))
    assert train(more)["start_step"] == 3
    with caplog.at_level(logging.WARNING):
        encoder = load_encoder(run)
    assert "no target_encoder" in caplog.text
    weights, _, _ = load_checkpoint(find_latest(run))
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(tensor, weights["encoder"][name])
