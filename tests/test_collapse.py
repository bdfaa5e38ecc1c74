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
from jepa.train.logging import read_metrics
from jepa.train.step import JEPA, CollapseMonitor, feature_std, variance_covariance
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
    monitor = CollapseMonitor(0.01)
    messages = [monitor.update(step, v) for step, v in enumerate([0.2, 0.05, 0.001, 0.002, 0.3, 0.4])]
    assert [m is not None for m in messages] == [False, False, True, False, True, False]
    assert "collapsing" in messages[2] and "recovered" in messages[4]
    with pytest.raises(ValueError):
        CollapseMonitor(-1.0)


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


def test_jepa_adds_the_terms_only_when_weighted() -> None:
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1) + PLAIN_LOSS)
    torch.manual_seed(0)
    plain = build.build_model(cfg)
    clips = torch.randn(4, 3, 4, 32, 32)
    ctx, tgt = MaskSampler(build.mask_specs(cfg), build.token_grid(cfg))(4, torch.Generator().manual_seed(0))
    loss, stats = plain(clips, ctx, tgt)
    assert set(stats) == {"feat_std"}
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
