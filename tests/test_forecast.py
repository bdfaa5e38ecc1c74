"""The slice forecast: per-slice means of context tokens, the term's loss, and a run that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_collapse import plain_jepa_and_batch, tiny
from test_train import PLAIN_LOSS, compose_cfg

from jepa.train import build
from jepa.train.forecast import SliceForecast, slice_means
from jepa.train.logging import read_metrics
from jepa.train.step import JEPA
from jepa.train.trainer import train

GRID = (3, 2, 2)  # 3 time slices of 4 tokens


def test_slice_means_average_each_slice_and_count_empty_ones() -> None:
    tokens = torch.arange(10.0).reshape(1, 5, 2)
    idx = torch.tensor([[0, 3, 8, 9, 11]])  # slice 0: two tokens, slice 1: none, slice 2: three
    means, counts = slice_means(tokens, idx, GRID)
    torch.testing.assert_close(counts, torch.tensor([[2.0, 0.0, 3.0]]))
    torch.testing.assert_close(means[0, 0], tokens[0, :2].mean(0))
    torch.testing.assert_close(means[0, 1], torch.zeros(2))
    torch.testing.assert_close(means[0, 2], tokens[0, 2:].mean(0))
    with pytest.raises(ValueError):
        slice_means(tokens, torch.tensor([[0, 3, 8, 9, 12]]), GRID)  # past the grid


def test_forecast_loss_is_the_next_slice_error_over_slices_with_context() -> None:
    torch.manual_seed(0)
    head = SliceForecast(embed_dim=2, tokens_per_slice=4)
    tokens, targets = torch.randn(1, 5, 2), torch.randn(1, 12, 2)
    idx = torch.tensor([[0, 3, 8, 9, 11]])
    means, _ = slice_means(tokens, idx, GRID)
    # Only the pair (slice 0 -> slice 1) counts: slice 1 has no context tokens to forecast from.
    expected = (head(means[:, :1])[0, 0] - targets[0, 4:8]).abs().mean()
    torch.testing.assert_close(head.loss(tokens, idx, targets, GRID), expected)
    with pytest.raises(ValueError, match="tokens per slice"):
        head.loss(tokens, idx, targets[:, :9], (3, 1, 3))
    with pytest.raises(ValueError, match="two time slices"):
        head.loss(tokens, torch.tensor([[0, 1, 2, 3, 3]]), targets[:, :4], (1, 2, 2))


def test_jepa_adds_the_weighted_forecast_and_trains_the_encoder_through_it() -> None:
    plain, clips, ctx, tgt = plain_jepa_and_batch()
    loss, _ = plain(clips, ctx, tgt)
    weighted = JEPA(plain.encoder, plain.predictor, plain.target_encoder, forecast_weight=0.5)
    loss_w, stats = weighted(clips, ctx, tgt)
    torch.testing.assert_close(loss_w, loss + 0.5 * stats["forecast_loss"])
    assert set(weighted.checkpoint_modules()) == {"encoder", "predictor", "target_encoder", "forecast"}
    assert "forecast" not in plain.checkpoint_modules()
    weighted.zero_grad()
    weighted.forecast.loss(*_forecast_inputs(weighted, clips, ctx)).backward()
    grads = [p.grad for p in weighted.encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="forecast_weight"):
        JEPA(plain.encoder, plain.predictor, plain.target_encoder, forecast_weight=-1.0)


def _forecast_inputs(model: JEPA, clips: torch.Tensor, ctx: list[torch.Tensor]):
    grid = model.encoder.grid_size(*clips.shape[-3:])
    return model.encoder(clips, masks=ctx[0]), ctx[0], model.targets(clips), grid


def test_a_forecast_run_logs_the_term_resumes_and_the_pixel_objective_refuses_it(tmp_path: Path) -> None:
    extra = ["optim.forecast_weight=1.0", "trainer.ckpt_every=2"]
    run, cache = tmp_path / "run", tmp_path / "cache"
    train(compose_cfg([*tiny(run, cache, 2), *extra]))
    train(compose_cfg([*tiny(run, cache, 4), *extra]))  # resumes from step 2, the head included
    whole = tmp_path / "whole"
    train(compose_cfg([*tiny(whole, cache, 4), *extra]))
    resumed, straight = read_metrics(run), read_metrics(whole)
    assert all(r["forecast_loss"] > 0 for r in resumed)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in straight], rel=1e-5)
    with pytest.raises(ValueError, match="forecast_weight"):
        build.build_model(compose_cfg(["objective=pixel", "optim.forecast_weight=0.5"] + PLAIN_LOSS))


def test_a_forecast_run_loads_and_initialises_runs_with_and_without_the_head(tmp_path: Path) -> None:
    from jepa.export.load import load_encoder

    cache, extra = tmp_path / "cache", ["optim.forecast_weight=1.0"]
    forecast, plain = tmp_path / "forecast", tmp_path / "plain"
    train(compose_cfg([*tiny(forecast, cache, 1), *extra, "trainer.ckpt_every=1"]))
    train(compose_cfg([*tiny(plain, cache, 1), "trainer.ckpt_every=1"]))
    encoder = load_encoder(forecast)  # the head is skipped: it serves training only
    assert encoder(torch.randn(1, 3, 4, 32, 32)).shape[-1] == encoder.embed_dim
    train(compose_cfg([*tiny(tmp_path / "a", cache, 1), *extra, f"trainer.init_from={plain}"]))  # fresh head
    train(compose_cfg([*tiny(tmp_path / "b", cache, 1), f"trainer.init_from={forecast}"]))  # head dropped
