"""Command-line arguments for how frozen-evaluation tools sample, crop and encode clips.

`tools/probe.py` (features on the fly) and `tools/classify.py` take the same flags and build
the same `EmbedConfig` from them, so a probe is applied to clips made as it was trained on.
"""

from __future__ import annotations

import argparse
from typing import Any

from jepa.export.embed import EmbedConfig

Parser = argparse.ArgumentParser | argparse._ArgumentGroup


def add_clip_arguments(parser: Parser, crop: int, batch_flag: str = "--batch-size", batch: int = 8) -> None:
    """--frames, --fps / --frame-step, --num-clips, --crop, --short-side, --crops, the views
    per encoder forward (`batch_flag`), --precision and --workers."""
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (1 for images)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--fps", type=float, default=None, help="sampling rate inside a clip (default 4)")
    rate.add_argument("--frame-step", type=int, default=None, help="source frames between sampled frames")
    parser.add_argument("--num-clips", type=int, default=1, help="evenly spaced temporal clips per video")
    parser.add_argument("--crop", type=int, default=crop, help="crop side in pixels")
    parser.add_argument("--short-side", type=int, default=None, help="resize the short side to this before cropping")
    parser.add_argument("--crops", type=int, default=1, help="spatial views per clip")
    parser.add_argument(batch_flag, type=int, default=batch, help="views per encoder forward")
    parser.add_argument(
        "--precision", choices=("auto", "fp32", "bf16"), default="auto",
        help="encoder precision: auto = bf16 where the device runs it natively (as tools/embed.py)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=None,
        help="decoding worker processes (default: none on CPU, one per core but one on CUDA)",
    )  # fmt: skip


def add_label_column_argument(parser: Parser) -> None:
    """--label-column: which column of a manifest with a header row is the label."""
    parser.add_argument(
        "--label-column", default=None,
        help="label column of manifests with a header row (path,digit,direction); default: a column "
        "named label, else the only other column",
    )  # fmt: skip


def clip_config(args: argparse.Namespace, batch_size: int, **extra: Any) -> EmbedConfig:
    """The `EmbedConfig` of parsed `add_clip_arguments` flags (fps 4 unless a rate is given)."""
    return EmbedConfig(
        frames_per_clip=args.frames,
        fps=args.fps if args.fps is not None or args.frame_step is not None else 4.0,
        frame_step=args.frame_step,
        num_clips=args.num_clips,
        crop_size=args.crop,
        short_side=args.short_side,
        num_crops=args.crops,
        batch_size=batch_size,
        precision=args.precision,
        num_workers=args.workers,
        **extra,
    )
