"""Schedules hit their endpoints; EMA matches its formula."""

import copy

import pytest
import torch
from torch import nn

from jepa.train.ema import ema_update
from jepa.train.schedules import Cosine, Linear, WarmupDecay


@pytest.mark.parametrize("shape", ["cosine", "linear"])
def test_warmup_decay_endpoints(shape: str) -> None:
    s = WarmupDecay(start=1e-4, peak=1e-3, final=1e-6, warmup=10, total=100, shape=shape)
    assert s(0) == pytest.approx(1e-4)
    assert s(5) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))
    assert s(10) == pytest.approx(1e-3)
    assert s(99) == pytest.approx(1e-6)
    values = [s(i) for i in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:])), "decay must be monotone"


def test_released_vjepa2_lr_is_constant_after_warmup() -> None:
    s = WarmupDecay(start=1e-4, peak=5.25e-4, final=5.25e-4, warmup=40, total=1000)
    assert all(s(i) == pytest.approx(5.25e-4) for i in range(40, 1000, 37))


def test_linear_cooldown_midpoint() -> None:
    s = WarmupDecay(start=5e-4, peak=5e-4, final=0.0, warmup=0, total=101, shape="linear")
    assert s(50) == pytest.approx(2.5e-4)


def test_bad_shape_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        WarmupDecay(1, 1, 1, 0, 10, shape="step")


def test_cosine_and_linear_endpoints() -> None:
    wd = Cosine(start=0.04, final=0.4, total=50)
    assert wd(0) == pytest.approx(0.04) and wd(49) == pytest.approx(0.4) and wd(500) == pytest.approx(0.4)
    ema = Linear(start=0.998, final=1.0, total=50)
    assert ema(0) == pytest.approx(0.998) and ema(49) == pytest.approx(1.0)
    assert ema(24) == pytest.approx(0.998 + 0.002 * 24 / 49)


def test_ema_matches_formula() -> None:
    src = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    tgt = copy.deepcopy(src)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in tgt.parameters()]
    m = 0.9
    ema_update(tgt, src, m)
    for b, s, t in zip(before, src.parameters(), tgt.parameters()):
        assert torch.allclose(t, m * b + (1 - m) * s)
    assert not any(p.requires_grad and p.grad is not None for p in tgt.parameters())


def test_ema_rejects_other_architecture() -> None:
    with pytest.raises(ValueError, match="architecture"):
        ema_update(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.5)


def test_ema_momentum_one_is_identity() -> None:
    src, tgt = nn.Linear(3, 3), nn.Linear(3, 3)
    before = [p.clone() for p in tgt.parameters()]
    ema_update(tgt, src, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, tgt.parameters()))
