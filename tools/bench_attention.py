"""Attention kernel benchmark on CPU: PyTorch's SDPA against jepa.models.cpu_attention, bf16.

The default shapes are the benchmark step's (docs/benchmarks.md) (ViT-S/16 at 16 x 128 px, batch 4): the target
encoder's full clip (6 heads x 512 tokens x 64), a context encoder's kept tokens (150) and the
predictor's context + target tokens (6 heads of 32)::

    python tools/bench_attention.py
    python tools/bench_attention.py --groups 18 20 22 30      # GROUP_ELEMENTS = 2^k sweep

Prints ms per forward (no grad) and per forward + backward, median of --iters runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jepa.models import cpu_attention as ca  # noqa: E402

SHAPES = {"target": (4, 6, 512, 64), "context": (4, 6, 150, 64), "predictor": (4, 6, 480, 32)}


def median_ms(fn: Callable[[], object], iters: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def timings(kernel: Callable[..., torch.Tensor], shape: tuple[int, ...], iters: int) -> tuple[float, float]:
    q, k, v = (torch.randn(shape, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))

    def forward() -> None:
        with torch.no_grad():
            kernel(q, k, v)

    def train() -> None:
        out = kernel(q, k, v)
        out.backward(torch.ones_like(out))

    return median_ms(forward, iters), median_ms(train, iters)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument(
        "--groups",
        nargs="+",
        type=int,
        default=[ca.GROUP_ELEMENTS.bit_length() - 1],
        help="log2 of cpu_attention.GROUP_ELEMENTS to try",
    )
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.machine()}, python {platform.python_version()}"
    )
    print(f"{'shape (B, H, N, d)':28s} {'kernel':22s} {'fwd ms':>8s} {'fwd+bwd ms':>11s}")
    for name in a.shapes:
        shape = SHAPES[name]
        label = f"{name} {shape}"
        fwd, both = timings(F.scaled_dot_product_attention, shape, a.iters)
        print(f"{label:28s} {'sdpa':22s} {fwd:8.1f} {both:11.1f}")
        for log2 in a.groups:
            ca.GROUP_ELEMENTS = 1 << log2
            fwd, both = timings(ca.cpu_attention, shape, a.iters)
            print(f"{label:28s} {f'cpu_attention 2^{log2}':22s} {fwd:8.1f} {both:11.1f}")


if __name__ == "__main__":
    main()
