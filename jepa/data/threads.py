"""Load the items of one batch on several threads of one process.

Why threads pay here: FFmpeg (through PyAV) releases the GIL while it decodes, and decoding is
~90% of a clip's cost, so N threads decode N clips at once at nearly N times the rate of one
(docs/benchmarks.md: 1.6-1.9x on two threads of the dev VM). Frame threading inside the
decoder does not help a clip, a short chain of dependent frames right after a seek
(docs/data.md); clip-level threads do. Items stay a pure function of their key, so results do
not depend on the thread count.

Callers keep torch ops off these threads (VideoDataset decodes here and transforms on the
calling thread): torch ops run from several threads of a process slowed the training step
computing in that process by 10-20% (docs/data.md).

Pools are per process: a DataLoader worker forked from a parent that holds a pool gets the
pool's bookkeeping without its threads, so each process builds its own on first use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

K = TypeVar("K")

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_pid: int | None = None
_pools_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    global _pools_pid
    with _pools_lock:
        if _pools_pid != os.getpid():
            _pools.clear()
            _pools_pid = os.getpid()
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="jepa-decode")
        return _pools[threads]


def check_threads(threads: int) -> int:
    """`threads` as an int >= 1, or a clear error naming the setting."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"decode_threads must be an int >= 1, got {threads!r}")
    return threads


def load_many(load: Callable[[K], Any], keys: Sequence[K], threads: int) -> Iterator[Any]:
    """`load(k) for k in keys`, in order, on up to `threads` threads of this process.

    Every key is submitted at once and each result is yielded as soon as it and those before
    it are done, so the caller can work on the first items (the transform) while the threads
    decode the rest. The first exception in key order is raised there, as the sequential loop
    would raise it.
    """
    keys = list(keys)
    if threads <= 1 or len(keys) <= 1:
        return (load(k) for k in keys)
    return _pool(threads).map(load, keys)
