"""Collapse detector: the across-batch feature std is ~0 for a collapsed encoder, clearly
positive for a healthy one, logged every step of pretraining, and warned about."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from test_train import PLAIN_LOSS, compose_cfg, tiny_overrides

from jepa.masks.multiblock import MaskSampler
from jepa.models.rope import index_to_position
from jepa.train import build
from jepa.train.checkpoint import find_latest, load_checkpoint, save_checkpoint
from jepa.train.health import HealthMonitor, effective_rank, feature_std
from jepa.train.logging import read_metrics
from jepa.train.step import JEPA, variance_covariance
from jepa.train.trainer import train


def tiny(run_dir: Path, cache: Path, steps: int) -> list[str]:
    """test_train's tiny run at batch 4 (a batch spread wants more than two clips), no checkpoints."""
    return [
        *tiny_overrides(run_dir, cache, steps),
        "data.batch_size=4",
        "trainer.ckpt_every=0",
        "trainer.tensorboard=false",
    ]


def collapse_(encoder: torch.nn.Module) -> None:
    """Zero the patch embedding: every token of every clip becomes the same vector."""
    with torch.no_grad():
        encoder.patch_embed.proj.weight.zero_()
        encoder.patch_embed.proj.bias.fill_(0.1)


def test_feature_std_separates_collapsed_from_healthy_tokens() -> None:
    torch.manual_seed(0)
    healthy = torch.randn(8, 16, 32)
    assert feature_std(healthy) > 0.2
    assert feature_std(healthy[:1].expand(8, -1, -1)) < 1e-6
    assert feature_std(healthy[:1]) == 0  # one clip: no spread to measure


def test_collapsed_encoder_gives_zero_feat_std_healthy_does_not() -> None:
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1))
    torch.manual_seed(0)
    model = build.build_model(cfg)
    clips = torch.randn(4, 3, 4, 32, 32)
    ctx, tgt = MaskSampler(build.mask_specs(cfg), build.token_grid(cfg))(4, torch.Generator().manual_seed(0))
    _, stats = model(clips, ctx, tgt)
    assert stats["feat_std"] > 0.05
    collapse_(model.target_encoder)
    _, stats = model(clips, ctx, tgt)
    assert stats["feat_std"] < 1e-4


def test_monitor_warns_on_collapse_and_on_recovery_only() -> None:
    monitor = HealthMonitor(0.01, 0.25)
    stds = [0.2, 0.05, 0.001, 0.002, 0.015, 0.3, 0.4]  # 0.015: above the threshold, below twice it
    messages = [monitor.update(step, {"feat_std": v}) for step, v in enumerate(stds)]
    assert [m is not None for m in messages] == [False, False, True, False, False, True, False]
    assert "collapsing" in messages[2] and "optim.var_weight" in messages[2] and "recovered" in messages[5]
    with pytest.raises(ValueError):
        HealthMonitor(-1.0, 0.25)


def test_monitor_warns_when_the_rank_falls_below_its_share_of_the_start() -> None:
    monitor = HealthMonitor(0.0, 0.25)
    ranks = [80.0, 60.0, 30.0, 19.0, 30.0, 45.0]
    messages = [monitor.update(s, {"rank_teacher": r, "rank_student": 40.0}) for s, r in enumerate(ranks)]
    assert [m is not None for m in messages] == [False, False, False, True, False, True]
    assert "rank of the teacher fell to 19.0 from 80.0" in messages[3]


def test_effective_rank_counts_the_directions_features_use() -> None:
    torch.manual_seed(0)
    assert effective_rank(torch.randn(4096, 64)) > 55  # isotropic: close to the width
    assert effective_rank(torch.randn(4096, 3) @ torch.randn(3, 64)) < 3.1  # a 3-d subspace
    assert effective_rank(torch.ones(100, 64) + 1e-6 * torch.randn(100, 64)) < 64  # constant: noise only
    x = torch.randn(5000, 16)
    assert torch.isclose(effective_rank(x, max_rows=2048), effective_rank(x[torch.linspace(0, 4999, 2048).long()]))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "collapsing" in r.getMessage()]


def test_a_collapsing_run_warns_and_a_healthy_one_does_not(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """lr 5e-3 collapses the student's tokens within ~20 steps; the demo's lr does not."""
    base = tiny_overrides(tmp_path / "healthy", tmp_path / "cache", steps=24) + ["trainer.ckpt_every=0"]
    with caplog.at_level(logging.WARNING, logger="jepa.train.trainer"):
        train(compose_cfg(base))
    assert not _warnings(caplog)
    records = read_metrics(tmp_path / "healthy")
    assert all(r["rank_teacher"] > 10 and r["rank_student"] > 3 for r in records)
    caplog.clear()
    hot = ["optim.lr=5e-3", "optim.start_lr=5e-3", "optim.final_lr=5e-3", "optim.warmup_steps=0"]
    cfg = compose_cfg(tiny_overrides(tmp_path / "hot", tmp_path / "cache", steps=24) + ["trainer.ckpt_every=0", *hot])
    with caplog.at_level(logging.WARNING, logger="jepa.train.trainer"):
        train(cfg)
    assert any("rank of the student" in m for m in _warnings(caplog)), caplog.text


def test_collapse_is_logged_and_warned_during_pretraining(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    healthy = tmp_path / "healthy"
    train(compose_cfg(tiny(healthy, tmp_path / "cache", 1)))
    weights, state, _ = load_checkpoint(find_latest(healthy))
    assert read_metrics(healthy)[0]["feat_std"] > 0.05

    cfg = compose_cfg(tiny(tmp_path / "unused", tmp_path / "cache", 1))
    models = {name: build.build_encoder(cfg.model) for name in ("encoder", "target_encoder")}
    for name, module in models.items():
        module.load_state_dict(weights[name])
        collapse_(module)
    models["predictor"] = build.build_predictor(cfg.model, models["encoder"])
    save_checkpoint(tmp_path / "collapsed", 1, models, state, "{}\n", meta={})

    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="jepa.train"):
        train(compose_cfg(tiny(run, tmp_path / "cache", 2) + [f"trainer.init_from={tmp_path / 'collapsed'}"]))
    first = read_metrics(run)[0]
    assert "feat_std" in first and first["feat_std"] < 1e-4
    assert "collapsing" in caplog.text


def test_variance_covariance_terms_penalise_alike_tokens_not_diverse_ones() -> None:
    torch.manual_seed(0)
    diverse = torch.randn(8, 64, 16)
    var, cov = variance_covariance(diverse)
    alike_var, alike_cov = variance_covariance(diverse[:1, :1].expand(8, 64, -1))
    assert var < 0.1 and alike_var > 0.9
    assert alike_cov < 1e-6 < cov
    scaled_var, _ = variance_covariance(100 * diverse[:1, :1] + 0.01 * diverse)
    assert scaled_var > 0.5  # scaling up a nearly constant token does not satisfy the hinge
    direction = torch.randn(16)
    correlated = (
        torch.randn(8, 64, 1) * (direction - direction.mean()) + 0.1 * diverse
    )  # one factor drives all channels
    assert variance_covariance(correlated)[1] > 10 * cov


def plain_jepa_and_batch() -> tuple[JEPA, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """The tiny JEPA without extra terms, four random clips and their masks (all seeded)."""
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1) + PLAIN_LOSS)
    torch.manual_seed(0)
    plain = build.build_model(cfg)
    clips = torch.randn(4, 3, 4, 32, 32)
    ctx, tgt = MaskSampler(build.mask_specs(cfg), build.token_grid(cfg))(4, torch.Generator().manual_seed(0))
    return plain, clips, ctx, tgt


def test_jepa_adds_the_terms_only_when_weighted() -> None:
    plain, clips, ctx, tgt = plain_jepa_and_batch()
    loss, stats = plain(clips, ctx, tgt)
    assert set(stats) == {"feat_std", "rank_teacher", "rank_student"}
    weighted = JEPA(plain.encoder, plain.predictor, plain.target_encoder, var_weight=2.0, cov_weight=0.5)
    loss_w, stats_w = weighted(clips, ctx, tgt)
    expected = loss + 2.0 * stats_w["var_loss"] + 0.5 * stats_w["cov_loss"]
    torch.testing.assert_close(loss_w, expected)
    with pytest.raises(ValueError):
        JEPA(plain.encoder, plain.predictor, plain.target_encoder, var_weight=-1.0)


def test_multi_layer_targets_average_the_last_blocks() -> None:
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1) + ["optim.target_layers=3"])
    torch.manual_seed(0)
    model = build.build_model(cfg)
    assert model.target_layers == 3
    clips = torch.randn(2, 3, 4, 32, 32)
    enc = model.target_encoder
    with torch.no_grad():  # the same average, computed block by block by hand
        x = enc.patch_embed(clips)
        pos = index_to_position(torch.arange(x.shape[1]).expand(2, -1), enc.grid_size(4, 32, 32))
        outs = []
        for block in enc.blocks:
            x = block(x, pos=pos)
            outs.append(torch.nn.functional.layer_norm(x, x.shape[-1:]))
        mean = torch.stack(outs[-3:]).mean(0)
        expected = torch.nn.functional.layer_norm(mean, mean.shape[-1:])
    torch.testing.assert_close(model.targets(clips), expected, rtol=1e-5, atol=1e-5)
    assert all(not block._forward_hooks for block in enc.blocks)  # hooks do not outlive the call
    one = JEPA(model.encoder, model.predictor, enc)
    h = enc(clips)
    torch.testing.assert_close(one.targets(clips), torch.nn.functional.layer_norm(h, h.shape[-1:]))
    with pytest.raises(ValueError, match="target_layers"):
        JEPA(model.encoder, model.predictor, enc, target_layers=len(enc.blocks) + 1)


def test_sigreg_is_small_for_a_gaussian_and_large_for_collapse() -> None:
    from jepa.train.sigreg import random_directions, sigreg

    torch.manual_seed(0)
    directions = random_directions(32, 64, seed=0, device=torch.device("cpu"))
    gaussian = sigreg(torch.randn(1024, 32), directions)
    assert gaussian < 2.5  # N(0, 1) samples: 1.05 expected (the integral of (1 - e^-t^2) e^-t^2/2)
    assert sigreg(0.01 * torch.randn(1024, 32), directions) > 50 * gaussian  # collapsed to a point
    assert sigreg(torch.randn(1024, 2) @ torch.randn(2, 32), directions) > 10 * gaussian  # a 2-d subspace
    assert torch.equal(directions, random_directions(32, 64, seed=0, device=torch.device("cpu")))
    x = torch.randn(256, 32, requires_grad=True)
    sigreg(3 * x, directions).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_jepa_adds_sigreg_on_the_context_tokens_when_weighted() -> None:
    plain, clips, ctx, tgt = plain_jepa_and_batch()
    loss, _ = plain(clips, ctx, tgt)
    weighted = JEPA(plain.encoder, plain.predictor, plain.target_encoder, sigreg_weight=0.1, sigreg_slices=16)
    weighted.begin_step(3)
    loss_w, stats = weighted(clips, ctx, tgt)
    torch.testing.assert_close(loss_w, loss + 0.1 * stats["sigreg_loss"])
    assert "var_loss" not in stats and stats["sigreg_loss"] > 0
    weighted.begin_step(4)  # new directions each step
    assert weighted(clips, ctx, tgt)[1]["sigreg_loss"] != stats["sigreg_loss"]
    with pytest.raises(ValueError, match="sigreg"):
        compose_and_build_pixel = compose_cfg(["objective=pixel", "optim.sigreg_weight=0.1"] + PLAIN_LOSS)
        build.build_model(compose_and_build_pixel)
