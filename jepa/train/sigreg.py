"""SIGReg (LeJEPA, Balestriero & LeCun 2025): push features toward an isotropic Gaussian.

A distribution is N(0, I) exactly when every 1-D projection of it is N(0, 1) (Cramer-Wold), so
the term projects the features onto random unit directions and, for each, measures how far the
projection's empirical characteristic function is from the standard normal's with the
Epps-Pulley statistic: N * integral of |phi_N(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt. Collapse to
a point or a subspace makes some projections far from N(0, 1), so it is an anti-collapse
term with one weight and no batch-size hinge; its cost is one (N, D) x (D, M) matmul.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_directions(dim: int, num: int, seed: int, device: torch.device) -> Tensor:
    """(dim, num) unit columns drawn from `seed` alone, so every rank and a resumed run use the same."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, num, generator=g)
    return (a / a.norm(dim=0, keepdim=True)).to(device)


def sigreg(features: Tensor, directions: Tensor, t_max: float = 3.0, knots: int = 17) -> Tensor:
    """Mean over `directions` (D, M) of the Epps-Pulley statistic of the (..., D) features' projections."""
    x = features.float().flatten(0, -2)
    if x.shape[0] < 2:
        raise ValueError("SIGReg needs at least two feature vectors")
    proj = x @ directions.to(x.dtype)  # (N, M)
    t = torch.linspace(0.0, t_max, knots, device=x.device)
    tp = proj[..., None] * t  # (N, M, K)
    gaussian = torch.exp(-0.5 * t**2)
    err = (tp.cos().mean(0) - gaussian).pow(2) + tp.sin().mean(0).pow(2)  # (M, K)
    # The integrand is even in t: twice the integral over [0, t_max], by the trapezoid rule.
    integral = 2.0 * torch.trapezoid(err * gaussian, t, dim=-1)
    return x.shape[0] * integral.mean()
