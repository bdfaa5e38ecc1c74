"""Classify videos with a frozen encoder and a trained attentive probe: top-k classes per video.

An HF ``VJEPA2ForVideoClassification`` directory holds both (encoder and head)::

    python tools/classify.py --checkpoint vjepa2-vitl-ssv2 clip1.mp4 clip2.webm

An encoder from any source ``jepa.load_encoder`` reads, and a probe ``jepa.eval.load_probe``
reads (ours from ``tools/probe.py --out``, or the official evaluation's ``.pt``)::

    python tools/classify.py --checkpoint runs/vitl --probe probes/vitl --num-clips 2 --crops 3 videos/

Inputs are video or image files, folders of them, or manifests. The clips are sampled and
cropped as ``tools/probe.py`` samples them (evenly spaced clips, centre/side crops); the
probabilities are the softmax averaged over a video's views, as the probe was scored. One
line per video: its path, then ``label probability`` pairs; ``--json`` prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jepa.data.manifest import VIDEO_EXTENSIONS, ManifestEntry, is_image_path, read_manifest  # noqa: E402
from jepa.eval.clip_args import add_clip_arguments, add_label_column_argument, clip_config  # noqa: E402
from jepa.eval.features import extract_features  # noqa: E402
from jepa.eval.probe import load_probe, predict_videos  # noqa: E402
from jepa.export.load import load_encoder  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="video / image files, folders of them, or manifests")
    p.add_argument("--checkpoint", required=True, help="the encoder: anything jepa.load_encoder reads")
    p.add_argument("--probe", default=None, help="the classifier (default: --checkpoint, for an HF classification dir)")
    p.add_argument("--probe-head", type=int, default=0, help="official .pt probe: which of its heads")
    p.add_argument("--probe-num-heads", type=int, default=16, help="official .pt probe: its attention heads")
    p.add_argument("--which", choices=("target_encoder", "encoder"), default="target_encoder")
    add_clip_arguments(p, crop=256)
    add_label_column_argument(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--device", default=None, help="default: cuda if available")
    p.add_argument("--json", action="store_true", help="JSON lines: {path, top: [[label, p], ...]}")
    return p


def gather_entries(inputs: Sequence[str], label_column: str | None = None) -> list[ManifestEntry]:
    """Entries for files given directly; folders and manifests through `read_manifest`."""
    entries: list[ManifestEntry] = []
    for item in inputs:
        path = Path(item)
        if path.is_file() and (is_image_path(item) or path.suffix.lower() in VIDEO_EXTENSIONS):
            entries.append(ManifestEntry(str(path), None))
        else:
            entries.extend(read_manifest(path, label_column=label_column))
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    probe = load_probe(args.probe or args.checkpoint, device, head=args.probe_head, num_heads=args.probe_num_heads)
    encoder = load_encoder(args.checkpoint, which=args.which)
    if probe.config["dim"] != encoder.embed_dim:
        raise SystemExit(f"the probe reads {probe.config['dim']}-wide tokens; the encoder makes {encoder.embed_dim}")
    cfg = clip_config(args, args.batch_size)
    features = extract_features(encoder, gather_entries(args.inputs, args.label_column), cfg, device=device)
    probs = predict_videos(probe, features, device=device)
    labels = probe.config.get("labels") or [str(i) for i in range(probe.config["num_classes"])]
    k = min(args.top_k, len(labels))
    for path, row in zip(features.paths, probs):
        top = [(labels[int(i)], round(float(row[i]), 4)) for i in row.topk(k).indices]
        if args.json:
            print(json.dumps({"path": path, "top": top}))
        else:
            print("\t".join([path, *(f"{name} {p:.4f}" for name, p in top)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
