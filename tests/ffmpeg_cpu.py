"""Make the FFmpeg libraries in this process take another CPU's code paths, so a test run on an
AVX-512 machine also covers what users' AVX2 machines do.

FFmpeg picks its scalers' SIMD code and its frame buffers' alignment (64 bytes with AVX-512,
32 with AVX2) from `av_get_cpu_flags()`; `av_force_cpu_flags` overrides that in one libavutil.
PyAV and decord each bundle their own, so every libavutil loaded in the process is set. New
decoders, scalers and filter graphs take the forced flags; ones made before keep theirs, which
is why callers do their reads on a fresh thread (jepa caches scalers per thread).
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# AV_CPU_FLAG_* of libavutil/cpu.h up to AVX2 (MMX .. SSE4.2, CMOV, AVX, AVX2, FMA3, BMI1/2):
# an AVX2 machine without AVX-512, as users have.
_X86_AVX2 = (
    0x1 | 0x2 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x1000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000
)
FLAGS = {"avx2": _X86_AVX2}
_AUTODETECT = -1


def _libavutils() -> list[ctypes.CDLL]:
    maps = Path("/proc/self/maps").read_text().splitlines()
    paths = sorted({line.split()[-1] for line in maps if "libavutil" in line.rsplit("/", 1)[-1]})
    return [ctypes.CDLL(path) for path in paths]


def paths() -> list[str]:
    """CPU paths this machine can test: its own, plus AVX2 on x86-64 Linux."""
    forced = ["avx2"] if platform.machine() in ("x86_64", "AMD64") and Path("/proc/self/maps").exists() else []
    return ["native", *forced]


@contextmanager
def ffmpeg_cpu(path: str) -> Iterator[None]:
    """Inside the block, FFmpeg behaves as on a CPU with `path`'s features ("native": no change)."""
    if path == "native":
        yield
        return
    import av  # noqa: F401 - load the libraries before setting them
    import decord  # noqa: F401

    libs = _libavutils()
    assert libs, "no libavutil loaded"
    for lib in libs:
        lib.av_force_cpu_flags(FLAGS[path])
    try:
        yield
    finally:
        for lib in libs:
            lib.av_force_cpu_flags(_AUTODETECT)


def on_fresh_thread(fn: Callable[[], T]) -> T:
    """`fn()` on a new thread, so no scaler cached by an earlier read on this one is reused."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()
