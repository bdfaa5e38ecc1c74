"""Classification metrics shared by the attentive probe and k-NN.

Predictions are averaged per video before scoring (multi-clip / multi-view test), so these
functions take one score row per video. Top-k with k >= the number of classes is trivially
100 %; it is still reported (clamped to the class count) so tables keep their columns, and
`effective_k` says what was really measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _check(scores: Tensor, labels: Tensor) -> None:
    if scores.ndim != 2:
        raise ValueError(f"scores must be (num_samples, num_classes), got shape {tuple(scores.shape)}")
    if labels.ndim != 1 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"labels must be ({scores.shape[0]},), got shape {tuple(labels.shape)}")
    if scores.shape[0] == 0:
        raise ValueError("no samples to score")
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}), got [{int(labels.min())}, {int(labels.max())}]")


def effective_k(k: int, num_classes: int) -> int:
    """The k actually measured: top-k over fewer than k classes is top-num_classes."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return min(k, num_classes)


def topk_accuracy(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """{'top1': %, 'top5': %, ...}: share of rows whose label is among the k highest scores."""
    _check(scores, labels)
    kmax = effective_k(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices
    hit = top == labels.to(top.device)[:, None]
    return {f"top{k}": 100.0 * hit[:, : effective_k(k, scores.shape[1])].any(dim=1).float().mean().item() for k in ks}


def confusion_matrix(scores: Tensor, labels: Tensor) -> Tensor:
    """(num_classes, num_classes) counts, rows = true class, columns = predicted class."""
    _check(scores, labels)
    n = scores.shape[1]
    pred = scores.argmax(dim=1).cpu()
    return torch.bincount(labels.cpu() * n + pred, minlength=n * n).reshape(n, n)


def chance_accuracy(labels: Tensor, num_classes: int) -> float:
    """Top-1 of always answering the most frequent class: the floor a probe must beat."""
    if labels.numel() == 0:
        raise ValueError("no labels")
    return 100.0 * torch.bincount(labels.cpu(), minlength=num_classes).max().item() / labels.numel()


def average_by_group(scores: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    """Mean of the rows of `scores` that share a group id -> (num_groups, C); every group needs a row."""
    if groups.ndim != 1 or groups.shape[0] != scores.shape[0]:
        raise ValueError(f"groups must be ({scores.shape[0]},), got shape {tuple(groups.shape)}")
    groups = groups.to(scores.device)
    counts = torch.bincount(groups, minlength=num_groups)
    if counts.shape[0] != num_groups or (counts == 0).any():
        raise ValueError(f"every group in [0, {num_groups}) needs at least one row")
    total = scores.new_zeros(num_groups, scores.shape[1]).index_add_(0, groups, scores)
    return total / counts[:, None].to(scores.dtype)
