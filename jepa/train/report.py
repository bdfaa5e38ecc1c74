"""What `tools/train.py` prints when a run ends: the loss trend, where the results are, and
the commands a user runs next on them (export, embed, probe, pictures)."""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

from jepa.train.logging import read_metrics

SMOOTH_STEPS = 10  # one step's loss is noisy (+-0.1 on the demo); ten steps' mean is not


def smoothed_losses(records: list[dict[str, Any]], window: int = SMOOTH_STEPS) -> tuple[float, float]:
    """Mean loss of the first and of the last `window` finite steps (nan without any)."""
    losses = [float(r["loss"]) for r in records if math.isfinite(float(r.get("loss", math.nan)))]
    if not losses:
        return math.nan, math.nan
    n = min(window, len(losses))
    return sum(losses[:n]) / n, sum(losses[-n:]) / n


def _labelled_pair(manifest: Path) -> tuple[Path, Path] | None:
    """The generated set's labelled train / val manifests beside its manifest, when present."""
    train, val = manifest.parent / "direction_train.csv", manifest.parent / "direction_val.csv"
    return (train, val) if train.is_file() and val.is_file() else None


def run_report(summary: dict[str, Any], manifests: list[Path], frames: int, crop: int) -> str:
    """Lines for the end of a run: steps, smoothed loss start -> end, run dir, next commands
    (clips of `frames` frames cropped to `crop`, as the run trained on)."""
    run_dir = Path(summary["run_dir"])
    records = read_metrics(run_dir) if (run_dir / "metrics.jsonl").is_file() else []
    start, end = smoothed_losses(records)
    n = min(SMOOTH_STEPS, len(records))
    q = shlex.quote
    export_dir = Path("exports") / run_dir.name
    pair = _labelled_pair(manifests[0]) if manifests else None
    train_m, val_m = (str(p) for p in pair) if pair else ("TRAIN.csv", "VAL.csv")
    clip = f"--frames {frames} --crop {crop}"
    lines = [
        f"done: steps {summary['start_step']}->{summary['end_step']}, loss {start:.4f} -> {end:.4f} "
        f"(mean of the first / last {n} steps of {len(records)})",
        f"run dir {run_dir}: config.yaml, metrics.jsonl, checkpoints/latest; TensorBoard: "
        f"tensorboard --logdir {q(str(run_dir / 'tb'))}",
        "next:",
        f"  python tools/export.py {q(str(run_dir))} {q(str(export_dir))}          # frozen encoder",
        f"  python tools/embed.py --checkpoint {q(str(export_dir))} --manifest {q(train_m)} "
        f"--out {q(str(Path('embeddings') / run_dir.name))} {clip}",
        f"  python tools/probe.py --checkpoint {q(str(export_dir))} --train-manifest {q(train_m)} "
        f"--val-manifest {q(val_m)} {clip} --method attentive knn",
        f"  python tools/viz.py curves --metrics {q(str(run_dir / 'metrics.jsonl'))} --out curves.png",
        f"  python tools/viz.py pca --checkpoint {q(str(export_dir))} --frames {frames} --size {crop} --out pca.png",
    ]
    return "\n".join(lines)
