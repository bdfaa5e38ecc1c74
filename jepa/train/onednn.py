"""oneDNN's primitive cache, bounded for training steps whose shapes change every step.

On CPU, bf16 matmuls and convolutions (and fp32 convolutions) run through oneDNN, which keeps
each kernel it builds in an LRU cache of 1024 primitives keyed by shape. The JEPA step's
token counts change with every mask draw, so few entries are ever reused and the cache only
grows: on the dev machine it held ~110 MB of a ViT-S bf16 step's 1.75 GB peak after 7 steps,
more in a long run. Caps of 16, 32 and 64 kept the step's speed, with fresh masks and with one
fixed mask set (docs/benchmarks.md); capacity 0 (no cache) was 2.3x slower.
"""

from __future__ import annotations

import os

ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
CAPACITY = 32


def bound_primitive_cache(capacity: int = CAPACITY) -> str:
    """Cap oneDNN's primitive cache unless the user set one; returns the capacity in force.

    oneDNN reads the variable when it builds its first primitive, so this must run before the
    process's first bf16 matmul or convolution on CPU; later it changes nothing.
    """
    return os.environ.setdefault(ENV, str(capacity))
