"""Every Python code block in README.md and docs/*.md runs.

A block that cannot run here (it needs a cluster, a GPU or a released checkpoint) must be
preceded by an HTML comment line ``<!-- not-run: reason -->``; the reason is required, so a
skipped example always says why.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<pre>(?:<!--[^\n]*-->\s*\n)?)```python\n(?P<code>.*?)```", re.S)
NOT_RUN = re.compile(r"<!--\s*not-run:\s*\S.*-->")


def python_blocks() -> list[tuple[str, str, bool]]:
    blocks = []
    for doc in DOCS:
        text = doc.read_text()
        for _i, m in enumerate(BLOCK.finditer(text)):
            line = text[: m.start()].count("\n") + 1
            blocks.append((f"{doc.relative_to(REPO)}:{line}", m.group("code"), bool(NOT_RUN.search(m.group("pre")))))
    return blocks


BLOCKS = python_blocks()


def test_docs_have_python_examples() -> None:
    assert sum(1 for _, _, skip in BLOCKS if not skip) >= 3


@pytest.mark.parametrize("where,code,skip", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_python_block_runs(where: str, code: str, skip: bool, tmp_path: Path) -> None:
    if skip:
        pytest.skip(f"{where} is marked not-run")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JEPA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr[-3000:]}"
