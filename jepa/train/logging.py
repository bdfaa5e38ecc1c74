"""Metrics sinks: a JSONL file (one record per step, the ground truth for curves and resume
checks) and TensorBoard through accelerate's tracker."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jepa.atomic import write_text_atomic

METRICS_FILE = "metrics.jsonl"


class JsonlMetrics:
    """Append-only per-step metrics that survive resume.

    On resume from step ``s`` every record with ``step >= s`` is dropped first: a run killed
    after logging past its last checkpoint repeats those steps, and the file must show each
    step once.
    """

    def __init__(self, run_dir: str | Path, resume_step: int = 0) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", -1) < resume_step]
            # A resume drops the steps it will redo; a torn rewrite would lose the whole history.
            write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = open(self.path, "a")  # noqa: SIM115 - held for the run, closed by close()

    def log(self, record: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(dict(record)) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a metrics file (or of ``<run_dir>/metrics.jsonl``); a torn last line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
