"""V-JEPA 2.1's two objective changes: the dense term (the predictor also regresses the targets at
the context positions, weighted by lambda / sqrt(distance to the nearest target token)) and deep
self-supervision (the predictor reads and predicts several encoder blocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_collapse import tiny
from test_pixel import tiny as tiny_experiment
from test_train import PLAIN_LOSS, compose_cfg, tiny_overrides

from jepa.masks.multiblock import MaskSampler
from jepa.masks.ops import gather_tokens
from jepa.train import build
from jepa.train.health import feature_std
from jepa.train.logging import read_metrics
from jepa.train.step import JEPA, distance_to_targets, masked_prediction_loss


def test_distance_to_targets_on_a_hand_grid() -> None:
    grid = (2, 3, 4)  # t-major: index = t * 12 + row * 4 + col
    ctx = torch.tensor([[0, 3, 23], [5, 6, 7]])
    tgt = torch.tensor([[1, 11], [17, 17]])  # sample 1: one target, (1, 1, 1), given twice
    d = distance_to_targets(ctx, tgt, grid)
    # sample 0: (0,0,0) -> (0,0,1) = 1; (0,0,3) -> (0,0,1) = 2, (0,2,3) = 2; (1,2,3) -> (0,2,3) = 1
    # sample 1: (0,1,1), (0,1,2), (0,1,3) -> (1,1,1) = 1, sqrt 2, sqrt 5
    expected = torch.tensor([[1.0, 2.0, 1.0], [1.0, 2**0.5, 5**0.5]])
    torch.testing.assert_close(d, expected)
    with pytest.raises(ValueError, match="targets"):
        distance_to_targets(ctx, tgt[:, :0], grid)
    with pytest.raises(ValueError, match=r"\[0, 24\)"):
        distance_to_targets(ctx + 20, tgt, grid)


def setup() -> tuple[JEPA, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1) + PLAIN_LOSS)
    torch.manual_seed(0)
    model = build.build_model(cfg)
    clips = torch.randn(4, 3, 4, 32, 32)
    ctx, tgt = MaskSampler(build.mask_specs(cfg), build.token_grid(cfg))(4, torch.Generator().manual_seed(0))
    return model, clips, ctx, tgt


def test_predictor_returns_context_outputs_without_changing_its_predictions() -> None:
    model, clips, ctx, tgt = setup()
    z = model.encoder(clips, masks=ctx[0])
    plain = model.predictor(z, ctx[0], tgt[0])
    pred, pred_ctx = model.predictor(z, ctx[0], tgt[0], return_context=True)
    torch.testing.assert_close(pred, plain, rtol=0, atol=1e-6)
    assert pred_ctx.shape == (z.shape[0], ctx[0].shape[1], model.encoder.embed_dim)


def test_context_term_is_the_weighted_error_at_context_positions() -> None:
    model, clips, ctx, tgt = setup()
    h = model.targets(clips)
    base, _, none = masked_prediction_loss(model.encoder, model.predictor, clips, ctx, tgt, h, 1.0, False)
    assert none is None
    loss, _, context = masked_prediction_loss(
        model.encoder, model.predictor, clips, ctx, tgt, h, 1.0, False, context_weight=0.5
    )
    grid = model.encoder.grid_size(4, 32, 32)
    by_config = []
    for c, t in zip(ctx, tgt):  # by hand, one config at a time
        _, out = model.predictor(model.encoder(clips, masks=c), c, t, return_context=True)
        err = (out - gather_tokens(h, c)).abs().mean(-1)
        by_config.append((0.5 / distance_to_targets(c, t, grid).sqrt() * err).mean())
    torch.testing.assert_close(context, torch.stack(by_config).mean())
    torch.testing.assert_close(loss, base + context)
    assert context > 0

    jepa = JEPA(model.encoder, model.predictor, model.target_encoder, context_weight=0.5)
    loss_j, stats = jepa(clips, ctx, tgt)
    torch.testing.assert_close(loss_j, loss)
    torch.testing.assert_close(stats["ctx_loss"], context)
    assert "ctx_loss" not in model(clips, ctx, tgt)[1]
    with pytest.raises(ValueError, match="context_weight"):
        JEPA(model.encoder, model.predictor, model.target_encoder, context_weight=-1.0)


def test_context_term_trains_the_context_tokens() -> None:
    """The term reaches the encoder through the context tokens: with it the encoder's gradient
    changes, the teacher's stays none."""
    model, clips, ctx, tgt = setup()
    grads = []
    for weight in (0.0, 1.0):
        model.zero_grad()
        JEPA(model.encoder, model.predictor, model.target_encoder, context_weight=weight)(clips, ctx, tgt)[0].backward()
        grads.append(model.encoder.blocks[-1].mlp.fc2.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
    assert all(p.grad is None for p in model.target_encoder.parameters())


def test_pixel_objective_refuses_the_context_term() -> None:
    cfg = compose_cfg(tiny_experiment(Path("unused"), Path("unused"), 1, "pixel_demo") + ["optim.context_weight=0.5"])
    with pytest.raises(ValueError, match="context_weight"):
        build.build_model(cfg)
    cfg = compose_cfg(tiny_experiment(Path("unused"), Path("unused"), 1, "pixel_demo") + LEVELS)
    with pytest.raises(ValueError, match="pred_levels"):
        build.build_model(cfg)


LEVELS = ["model.pred_levels=[6,12]"]  # the test ViT-tiny has 12 blocks


def test_levels_targets_are_each_blocks_output_layer_normed() -> None:
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1) + PLAIN_LOSS + LEVELS)
    torch.manual_seed(0)
    model = build.build_model(cfg)
    d = model.encoder.embed_dim
    assert model.levels == (6, 12) and model.predictor.embed_dim == 2 * d
    clips = torch.randn(2, 3, 4, 32, 32)
    h = model.targets(clips)
    assert h.shape[-1] == 2 * d
    plain = JEPA(model.encoder, build.build_predictor(compose_cfg(tiny(Path("u"), Path("u"), 1)).model, model.encoder),
                 model.target_encoder)  # fmt: skip
    torch.testing.assert_close(h[..., d:], plain.targets(clips))  # the last level is the released target
    first = model.target_encoder(clips, out_layers=[6])
    torch.testing.assert_close(h[..., :d], torch.nn.functional.layer_norm(first, first.shape[-1:]))


def test_levels_keep_statistics_on_the_output() -> None:
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1) + LEVELS + ["optim.context_weight=0.5"])
    torch.manual_seed(0)
    model = build.build_model(cfg)
    clips = torch.randn(4, 3, 4, 32, 32)
    ctx, tgt = MaskSampler(build.mask_specs(cfg), build.token_grid(cfg))(4, torch.Generator().manual_seed(0))
    _, stats = model(clips, ctx, tgt)
    assert {"feat_std", "ctx_loss", "var_loss", "cov_loss"} <= set(stats)
    d = model.encoder.embed_dim
    h = model.targets(clips)[..., d:]
    torch.testing.assert_close(stats["feat_std"], feature_std(h))


@pytest.mark.parametrize(
    "levels, match",
    [("[6]", "ending at 12"), ("[12,6]", "increasing"), ("[0,12]", "increasing"), ("[12,12]", "increasing")],
)
def test_bad_levels_are_refused(levels: str, match: str) -> None:
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1) + [f"model.pred_levels={levels}"])
    with pytest.raises(ValueError, match=match):
        build.build_model(cfg)
    cfg = compose_cfg(tiny(Path("unused"), Path("unused"), 1) + LEVELS + ["optim.target_layers=2"])
    with pytest.raises(ValueError, match="target_layers"):
        build.build_model(cfg)
    model = build.build_model(compose_cfg(tiny(Path("unused"), Path("unused"), 1)))
    with pytest.raises(ValueError, match="embed_dim"):
        JEPA(model.encoder, model.predictor, model.target_encoder, levels=(6, 12))


def test_levels_run_resumes_and_exports_a_plain_encoder(tmp_path: Path) -> None:
    """A run with levels trains, its checkpoint loads back (predictor of the wider embed_dim)
    and `load_encoder` returns an encoder whose output is the last level."""
    from jepa.export.load import load_encoder, load_models
    from jepa.train.trainer import train

    run = tmp_path / "levels"
    train(compose_cfg(tiny_overrides(run, tmp_path / "cache", steps=2) + LEVELS))
    models = load_models(run)
    assert models.predictor.embed_dim == 2 * models.encoder.embed_dim
    encoder = load_encoder(run)
    clips = torch.randn(1, 3, 4, 32, 32)
    assert encoder(clips).shape[-1] == encoder.embed_dim


def test_context_warmup_ramps_the_weight_and_scales_the_first_step(tmp_path: Path) -> None:
    """With a warm-up of n steps the weight at step s is lambda (s + 1) / n, logged as ctx_weight;
    at step 0 (same weights, same masks) the context term is the unwarmed one divided by n."""
    from jepa.train.schedules import context_ramp
    from jepa.train.trainer import train

    base = tiny(tmp_path / "plain", tmp_path / "cache", 5) + ["optim.context_weight=0.5"]
    ramp = context_ramp(0.5, 4, 5)
    assert [ramp(s) for s in range(6)] == [0.125, 0.25, 0.375, 0.5, 0.5, 0.5]
    assert context_ramp(0.5, 0, 5)(0) == 0.5
    train(compose_cfg(base))
    train(compose_cfg([*base, f"run_dir={tmp_path / 'warm'}", "optim.context_warmup_steps=4"]))
    plain, warm = read_metrics(tmp_path / "plain"), read_metrics(tmp_path / "warm")
    assert [r["ctx_weight"] for r in warm] == [0.125, 0.25, 0.375, 0.5, 0.5]
    assert "ctx_weight" not in plain[0]
    assert warm[0]["ctx_loss"] == pytest.approx(plain[0]["ctx_loss"] / 4, rel=1e-5)
    assert warm[0]["loss"] == pytest.approx(plain[0]["loss"] - 0.75 * plain[0]["ctx_loss"], rel=1e-5)
    assert warm[-1]["loss"] != pytest.approx(plain[-1]["loss"], rel=1e-5)  # the ramp changed the run


@pytest.mark.parametrize(
    "extra, match",
    [
        (["optim.context_weight=0", "optim.context_warmup_steps=10"], "context_weight is 0"),
        (["optim.context_weight=0.5", "optim.context_warmup_steps=-1"], "context_warmup_steps must be"),
    ],
)
def test_bad_context_warmup_is_refused_before_any_work(tmp_path: Path, extra: list[str], match: str) -> None:
    from jepa.train.trainer import train

    with pytest.raises(ValueError, match=match):
        train(compose_cfg(tiny(tmp_path / "run", tmp_path / "cache", 1) + extra))
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
