"""Write embeddings of every window of every video in a manifest, for downstream heads.

Pooled vectors of back-to-back 16-frame windows sampled at 4 fps, center 256 px crop::

    python tools/embed.py --checkpoint runs/demo --manifest data/val.csv --out emb/val

Per-token grids too, windows every 2 s, three crops per window, bf16 on the GPU::

    python tools/embed.py --checkpoint vitl.pt --manifest val.csv --out emb/val \\
        --outputs pooled tokens --stride-s 2 --crops 3 --precision bf16 --workers 8

Four evenly spaced clips per video instead of sliding windows: ``--num-clips 4``.
Output: ``shard_XXXXX.{safetensors|*.npy}`` + ``shard_XXXXX.csv`` per shard, ``index.csv``
mapping global rows to video path, label, window start/end (frames and seconds) and crop,
and ``embed.json`` (settings). Rerunning the same command after an interruption skips the
finished shards. See ``jepa/export/embed.py`` for the layout.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from jepa.data.manifest import manifest_classes, read_manifest
from jepa.eval.clip_args import add_label_column_argument
from jepa.export.embed import FORMATS, OUTPUTS, EmbedConfig, extract_embeddings
from jepa.export.load import load_encoder


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint", required=True, help="anything jepa.load_encoder reads (run dir, export, .pt, HF dir)"
    )
    p.add_argument("--manifest", required=True, help="CSV/TSV/space-separated manifest or a folder of videos")
    p.add_argument("--out", required=True, help="output directory")
    add_label_column_argument(p)
    p.add_argument(
        "--classes", default=None,
        help="manifest or folder whose class names number class-name labels (give the train set's when "
        "embedding a val set); default: the manifest's own names, sorted",
    )  # fmt: skip
    p.add_argument("--which", choices=("target_encoder", "encoder"), default="target_encoder")
    p.add_argument("--frames", type=int, default=16, help="frames per window")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--fps", type=float, default=None, help="sampling rate inside a window (default 4)")
    rate.add_argument("--frame-step", type=int, default=None, help="source frames between sampled frames")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--stride-s", type=float, default=None, help="seconds between window starts")
    where.add_argument("--stride-frames", type=int, default=None, help="source frames between window starts")
    where.add_argument("--num-clips", type=int, default=None, help="evenly spaced windows per video")
    p.add_argument("--short-video", choices=("fit", "pad", "skip"), default="fit")
    p.add_argument("--crop", type=int, default=256, help="crop side in pixels")
    p.add_argument("--short-side", type=int, default=None, help="resize short side to this before cropping")
    p.add_argument("--crops", type=int, default=1, help="spatial crops per window")
    p.add_argument("--outputs", nargs="+", choices=OUTPUTS, default=["pooled"])
    p.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=None,
        help="blocks (1..depth) whose normed outputs are concatenated per token (default: the last)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--videos-per-shard", type=int, default=256)
    p.add_argument("--format", choices=FORMATS, default="safetensors")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto: bf16 where the device has native bf16 matmuls (GPU, AVX-512-BF16 or AMX CPU)",
    )
    p.add_argument("--save-dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--device", default=None, help="default: cuda if available")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding worker processes (default: none on CPU, one per core but one on CUDA)",
    )
    p.add_argument("--backend", choices=("auto", "pyav", "decord"), default="auto")
    p.add_argument("--overwrite", action="store_true", help="discard shards made with other settings")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    fps = args.fps if args.fps is not None else (None if args.frame_step is not None else 4.0)
    cfg = EmbedConfig(
        frames_per_clip=args.frames, fps=fps, frame_step=args.frame_step,
        stride_s=args.stride_s, stride_frames=args.stride_frames, num_clips=args.num_clips,
        short_video=args.short_video, crop_size=args.crop, short_side=args.short_side, num_crops=args.crops,
        outputs=tuple(args.outputs), batch_size=args.batch_size, videos_per_shard=args.videos_per_shard,
        format=args.format, precision=args.precision, save_dtype=args.save_dtype, backend=args.backend,
        num_workers=args.workers, layers=tuple(args.layers) if args.layers else None,
    )  # fmt: skip
    encoder = load_encoder(args.checkpoint, which=args.which)
    classes = manifest_classes(args.classes or args.manifest, label_column=args.label_column)
    entries = read_manifest(args.manifest, kind="video", classes=classes, label_column=args.label_column)
    summary = extract_embeddings(
        encoder, entries, args.out, cfg, device=args.device, progress=not args.no_progress,
        overwrite=args.overwrite, source=str(args.checkpoint), classes=classes,
    )  # fmt: skip
    print(
        f"{summary.num_rows} rows in {summary.num_shards} shards ({len(summary.computed_shards)} computed, "
        f"{len(summary.skipped_shards)} already done), {len(summary.failed_videos)} videos without rows; "
        f"index: {summary.index_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
