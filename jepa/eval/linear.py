"""Linear probe: multinomial logistic regression on pooled frozen features.

The features are the mean over all of a clip's tokens followed by the mean of each time
slice's tokens (D x (1 + T') values): the mean keeps appearance, the slices keep the order in
time that motion needs, and neither needs a trained pooling layer. The attentive probe
(jepa.eval.probe) can learn where to look; this one shows what a frozen representation
offers to the simplest head, the test users apply first.

Features are standardised on the training set; the L2 weight is chosen by k-fold
cross-validation on the training set only (never on the evaluation set), and the model is
fitted full-batch with L-BFGS, so the result is deterministic for a given set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from jepa.eval.features import FeatureSet
from jepa.eval.metrics import topk_accuracy


@dataclass(frozen=True)
class LinearProbeConfig:
    """weight_decays: L2 weights tried by cross-validation; folds: its folds; max_iter: L-BFGS steps."""

    weight_decays: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    folds: int = 3
    max_iter: int = 100
    seed: int = 0


def slice_features(fs: FeatureSet, time_slices: int) -> Tensor:
    """(num_videos, D * (1 + time_slices)) float32: each row's token mean and per-slice means, averaged
    over a video's windows and views. Tokens are t-major, so slice t is a contiguous block."""
    rows, n, d = fs.tokens.shape
    if time_slices < 1 or n % time_slices:
        raise ValueError(f"{n} tokens per row do not split into {time_slices} time slices")
    tokens = fs.tokens.float()
    per_slice = tokens.reshape(rows, time_slices, n // time_slices, d).mean(dim=2)
    per_row = torch.cat([tokens.mean(dim=1), per_slice.flatten(1)], dim=1)
    total = per_row.new_zeros(fs.num_videos, per_row.shape[1]).index_add_(0, fs.video, per_row)
    return total / torch.bincount(fs.video, minlength=fs.num_videos)[:, None].float()


def fit_logistic(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, max_iter: int) -> Tensor:
    """(D + 1, C) weights (last row: bias) of L2-regularised softmax regression on standardised x."""
    xb = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    y = y.clone()  # labels made under inference mode (extract_features) cannot enter autograd as they are
    w = torch.zeros(xb.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, y) + 0.5 * weight_decay * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def _scores(x: Tensor, w: Tensor) -> Tensor:
    return torch.cat([x, torch.ones(len(x), 1)], dim=1).double() @ w


def _standardise(train: Tensor, *others: Tensor) -> list[Tensor]:
    mean, std = train.mean(dim=0), train.std(dim=0).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def choose_weight_decay(x: Tensor, y: Tensor, num_classes: int, cfg: LinearProbeConfig) -> float:
    """The L2 weight with the best mean k-fold accuracy on the training set (ties: the larger)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
    folds = order.chunk(min(cfg.folds, len(x)))
    best, best_acc = cfg.weight_decays[-1], -1.0
    for wd in sorted(cfg.weight_decays, reverse=True):
        correct = 0
        for held in folds:
            keep = torch.ones(len(x), dtype=torch.bool)
            keep[held] = False
            xtr, xho = _standardise(x[keep], x[held])
            w = fit_logistic(xtr, y[keep], num_classes, wd, cfg.max_iter)
            correct += int((_scores(xho, w).argmax(1) == y[held]).sum())
        if correct / len(x) > best_acc:
            best, best_acc = wd, correct / len(x)
    return best


def linear_probe(
    train: Tensor,
    train_labels: Tensor,
    val: Tensor,
    val_labels: Tensor,
    num_classes: int,
    cfg: LinearProbeConfig = LinearProbeConfig(),
    ks: Sequence[int] = (1,),
) -> dict[str, float]:
    """Top-k accuracy (%) on `val` of a logistic regression fitted on `train` (rows = videos)."""
    if (train_labels < 0).any() or (val_labels < 0).any():
        raise ValueError("every video needs a label for the linear probe")
    wd = choose_weight_decay(train, train_labels, num_classes, cfg)
    xtr, xva = _standardise(train, val)
    w = fit_logistic(xtr, train_labels, num_classes, wd, cfg.max_iter)
    return {**topk_accuracy(_scores(xva, w).float(), val_labels, ks), "weight_decay": wd}
