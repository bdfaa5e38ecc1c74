"""The step, attention, data and learning benchmarks run and print their figures (smoke runs on tiny shapes;
speed itself is never asserted, docs/benchmarks.md records it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]


def run_tool(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("extra", [[], ["--dtype", "bf16"], ["--dtype", "bf16", "--cpu-attention", "off"]])
def test_bench_step_prints_its_figures(extra: list[str]) -> None:
    tiny = [
        "--model",
        "vit_tiny",
        "--img",
        "32",
        "--frames",
        "4",
        "--batch",
        "2",
        "--pred-depth",
        "1",
        "--pred-dim",
        "48",
        "--pred-heads",
        "2",
        "--steps",
        "1",
        "--threads",
        "1",
    ]
    out = run_tool("tools/bench_step.py", *tiny, *extra)
    for line in ("clips/s:", "ms per phase: target_fwd", "peak memory:", "model FLOPs per step:"):
        assert line in out, out


def test_bench_attention_prints_both_kernels() -> None:
    out = run_tool(
        "tools/bench_attention.py", "--shapes", "context", "--groups", "18", "20", "--iters", "1", "--threads", "1"
    )
    rows = [line.split() for line in out.splitlines() if line.startswith("context")]
    assert [r[-3] for r in rows] == ["sdpa", "2^18", "2^20"], out
    assert all(float(r[-2]) > 0 and float(r[-1]) > 0 for r in rows)


def test_bench_data_prints_a_row_per_thread_count(tmp_path: Path) -> None:
    out = run_tool(
        "tools/bench_data.py",
        "--files",
        "1",
        "--clips",
        "4",
        "--warmup",
        "1",
        "--threads",
        "1",
        "2",
        "--backends",
        "pyav",
        "--workdir",
        str(tmp_path),
    )
    rows = [line for line in out.splitlines() if "clips/s (wall)" in line]
    assert [r.split(":")[0].strip() for r in rows] == ["pyav, 1 decode thread", "pyav, 2 decode threads"], out
    assert "floor:" in out and "torch " in out and "machine:" in out


@pytest.mark.parametrize("tool", ["bench_embed", "bench_world", "check_gpu"])
def test_tools_without_a_cpu_run_here_still_start(tool: str) -> None:
    """Entry points the suite does not run (GPU, transformers, long) at least import and parse."""
    assert run_tool(f"tools/{tool}.py", "--help").startswith("usage:")


def test_bench_learning_budget_follows_precision() -> None:
    bl = load_tool("bench_learning")
    assert bl.parse_args(["--precision", "no"]).steps == bl.BUDGET_STEPS["no"]
    assert bl.parse_args(["--precision", "bf16"]).steps == bl.BUDGET_STEPS["bf16"]
    assert bl.parse_args(["--precision", "bf16", "--steps", "7"]).steps == 7
    auto = bl.parse_args([])
    assert auto.precision in ("no", "bf16") and auto.steps == bl.BUDGET_STEPS[auto.precision]


def test_bench_learning_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    out.write_text("# Benchmarks\n\nkept above\n")
    run_tool(
        "tools/bench_learning.py",
        "--precision",
        "no",
        "--steps",
        "3",
        "--videos",
        "32",
        "--pretrain-videos",
        "0",
        "--probe-epochs",
        "2",
        "--probe-seeds",
        "1",
        "--threads",
        "1",
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(out),
        "--set",
        "data.batch_size=2",
        "--set",
        "trainer.ckpt_every=3",
    )
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nkept above\n"), text[:200]
    assert "3 pretraining steps per method (fp32)" in text
    for row in ("| random |", "| raw_pixels |", "| pixel |", "| jepa |", "| jepa_student |"):
        assert row in text, text
    for other in ("random", "raw_pixels", "pixel"):
        assert f"jepa - {other} on motion: linear " in text, text
