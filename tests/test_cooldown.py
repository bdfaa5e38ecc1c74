"""Progressive training: a cooldown starts from a pretraining checkpoint with more frames and
a higher resolution, runs its own lr schedule, and its encoder is defined for both shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train import compose_cfg, tiny_overrides

import jepa
from jepa.models.pos_embed import sincos_3d
from jepa.models.vit import VisionTransformer
from jepa.train import build
from jepa.train.checkpoint import find_latest, load_checkpoint, load_for_new_shape
from jepa.train.logging import read_metrics
from jepa.train.schedules import WarmupDecay
from jepa.train.trainer import train

# Pretraining: 4 frames at 32 px; cooldown: 8 frames at 48 px (patch 8, tubelet 2).
OLD, NEW = (4, 32), (8, 48)
COOLDOWN = [
    "data.frames_per_clip=8",
    "data.crop_size=48",
    "model.encoder.num_frames=8",
    "model.encoder.img_size=48",
    "optim.lr=5.0e-4",
    "optim.start_lr=5.0e-4",
    "optim.final_lr=1.0e-6",
    "optim.warmup_steps=0",
    "optim.decay=linear",
]


def tokens(shape: tuple[int, int]) -> int:
    frames, size = shape
    return (frames // 2) * (size // 8) ** 2


def clip(shape: tuple[int, int]) -> torch.Tensor:
    frames, size = shape
    return torch.randn(2, 3, frames, size, size)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cooldown")
    run = root / "pretrain"
    train(compose_cfg(tiny_overrides(run, root / "cache", steps=2) + ["trainer.tensorboard=false"]))
    return run, root / "cache"


def test_cooldown_run_from_pretraining_checkpoint(
    pretrained: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, cache = pretrained
    run = tmp_path / "cooldown"
    overrides = (
        tiny_overrides(run, cache, steps=3) + COOLDOWN + [f"trainer.init_from={source}", "trainer.tensorboard=false"]
    )
    with caplog.at_level("INFO", logger="jepa.train"):
        summary = train(compose_cfg(overrides))
    assert f"initialised from {source}" in caplog.text
    assert summary["start_step"] == 0 and summary["end_step"] == 3

    records = read_metrics(run)
    cooldown_lr = WarmupDecay(start=5.0e-4, peak=5.0e-4, final=1.0e-6, warmup=0, total=3, shape="linear")
    assert [r["lr"] for r in records] == pytest.approx([cooldown_lr(s) for s in range(3)])
    assert records[0]["lr"] == pytest.approx(5.0e-4) and records[-1]["lr"] == pytest.approx(1.0e-6)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)

    encoder = jepa.load_encoder(run)
    assert encoder.num_frames == NEW[0] and encoder.img_size == (NEW[1], NEW[1])
    with torch.no_grad():
        for shape in (OLD, NEW):
            out = encoder(clip(shape))
            assert out.shape == (2, tokens(shape), encoder.embed_dim) and torch.isfinite(out).all(), shape


def test_rope_weights_carry_over_unchanged(pretrained: tuple[Path, Path]) -> None:
    """RoPE has no position parameters: the cooldown model is the pretrained one, exactly."""
    source, cache = pretrained
    weights, _, _ = load_checkpoint(find_latest(source))
    cfg = compose_cfg(tiny_overrides(source, cache) + COOLDOWN)
    bigger = build.build_encoder(cfg.model)
    load_for_new_shape(bigger, weights["target_encoder"])
    original = jepa.load_encoder(source)
    bigger.eval()
    x = clip(OLD)
    with torch.no_grad():
        torch.testing.assert_close(bigger(x), original(x), rtol=1e-5, atol=1e-5)


def sincos_encoder(shape: tuple[int, int], depth: int = 2) -> VisionTransformer:
    frames, size = shape
    return VisionTransformer(
        img_size=size, patch_size=8, num_frames=frames, embed_dim=48, depth=depth, num_heads=3, pos_embed="sincos"
    )


def test_sincos_table_is_rebuilt_for_the_new_shape_and_interpolated_for_others() -> None:
    old = sincos_encoder(OLD)
    new = sincos_encoder(NEW)
    load_for_new_shape(new, old.state_dict())
    new_grid = (NEW[0] // 2, NEW[1] // 8, NEW[1] // 8)
    torch.testing.assert_close(new.pos_embed[0], sincos_3d(48, new_grid))
    trained = dict(old.named_parameters())
    assert all(torch.equal(p, trained[n]) for n, p in new.named_parameters()), "trained weights must load unchanged"
    with torch.no_grad():
        for shape in (OLD, NEW):
            out = new(clip(shape))
            assert out.shape == (2, tokens(shape), 48) and torch.isfinite(out).all(), shape


def test_new_shape_load_stays_strict_about_everything_else() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        load_for_new_shape(sincos_encoder(NEW, depth=3), sincos_encoder(OLD, depth=2).state_dict())
