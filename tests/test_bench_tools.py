"""The step and attention benchmarks run and print their figures (smoke runs on tiny shapes;
speed itself is never asserted, docs/benchmarks.md records it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_tool(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("extra", [[], ["--dtype", "bf16"], ["--dtype", "bf16", "--cpu-attention", "off"]])
def test_bench_step_prints_its_figures(extra: list[str]) -> None:
    tiny = ["--model", "vit_tiny", "--img", "32", "--frames", "4", "--batch", "2", "--pred-depth", "1",
            "--pred-dim", "48", "--pred-heads", "2", "--steps", "1", "--threads", "1"]
    out = run_tool("tools/bench_step.py", *tiny, *extra)
    for line in ("clips/s:", "ms per phase: target_fwd", "peak memory:", "model FLOPs per step:"):
        assert line in out, out


def test_bench_attention_prints_both_kernels() -> None:
    out = run_tool("tools/bench_attention.py", "--shapes", "context", "--groups", "18", "20", "--iters", "1", "--threads", "1")
    rows = [line.split() for line in out.splitlines() if line.startswith("context")]
    assert [r[-3] for r in rows] == ["sdpa", "2^18", "2^20"], out
    assert all(float(r[-2]) > 0 and float(r[-1]) > 0 for r in rows)
