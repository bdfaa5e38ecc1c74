"""The loss curve of a fixed-seed tiny run is pinned: refactors and speed work must not move it.

The figures are a CPU fp32 run of the demo's objective (its loss includes the variance /
covariance and context terms). A deliberate change of the data or the recipe updates them in
the same commit and says why there; git keeps the history. Tolerance covers BLAS differences
between CPUs, not behaviour changes (those move the loss by far more than 1e-4 in five steps).
"""

from pathlib import Path

import pytest
import torch
from test_train import compose_cfg, tiny_overrides

from jepa.train.logging import read_metrics
from jepa.train.trainer import train

GOLDEN = [1.9235446453094482, 1.8156362771987915, 1.9332811832427979, 2.152423620223999, 1.9111875295639038]


def test_fixed_seed_loss_curve_is_unchanged(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = compose_cfg(
        tiny_overrides(tmp_path / "run", tmp_path / "cache", steps=len(GOLDEN))
        + [
            "trainer.ckpt_every=0",
            "trainer.tensorboard=false",
            "optim.lr=1e-3",
            "optim.start_lr=1e-4",
            "optim.final_lr=1e-5",
            "optim.decay=cosine",
            "optim.ema=[0.99,0.999]",
            "optim.weight_decay=0.04",
            "optim.final_weight_decay=0.04",
            "mask=vjepa2",
            "model.predictor.depth=1",
        ]
    )
    train(cfg)
    records = read_metrics(tmp_path / "run")
    losses = [r["loss"] for r in records]
    assert all(r["var_loss"] > 0 and r["cov_loss"] > 0 and r["ctx_loss"] > 0 for r in records), records[0]
    assert losses == pytest.approx(GOLDEN, rel=1e-4, abs=1e-5)
