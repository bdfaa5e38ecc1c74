"""Export a frozen encoder (and optionally its predictor) from any checkpoint source.

Our format (config.json + model.safetensors, read back by ``jepa.load_encoder``)::

    python tools/export.py runs/demo exports/demo
    python tools/export.py vitl.pt exports/vitl --predictor           # official V-JEPA 2 .pt

HF transformers layout (``VJEPA2Model.from_pretrained(out)`` opens it)::

    python tools/export.py runs/demo exports/demo-hf --format hf --predictor

With a probe trained by ``tools/probe.py --out``, a ``VJEPA2ForVideoClassification`` whose head
is the probe (``--probe`` also takes an HF classification directory)::

    python tools/export.py runs/demo exports/demo-cls --format hf --probe probes/demo

A ``torch.export`` program for one clip shape (any batch size)::

    python tools/export.py runs/demo exports/demo.pt2 --format pt2 --num-frames 16 --img-size 256

``--which encoder`` exports the context encoder instead of the EMA target encoder;
``--arch num_heads=16`` overrides architecture arguments the shapes cannot tell (official
files); ``--non-strict`` loads a partly matching checkpoint (mismatches are still printed).
"""

from __future__ import annotations

import argparse
import ast
import logging
import sys
from collections.abc import Sequence
from typing import Any

from jepa.eval.probe import load_probe
from jepa.export.writers import EXPORT_FORMATS, export_encoder


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`["num_heads=16", "img_size=224"]` -> {"num_heads": 16, "img_size": 224} (Python literals)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--arch expects KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="run dir, checkpoint dir, exported dir, HF dir, official .pt, or URL")
    p.add_argument("out", help="output directory (or .pt2 file for --format pt2)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="jepa")
    p.add_argument("--which", choices=("target_encoder", "encoder"), default="target_encoder")
    p.add_argument("--predictor", action="store_true", help="also export the predictor (jepa and hf formats)")
    p.add_argument("--non-strict", action="store_true", help="load what matches instead of failing on mismatches")
    p.add_argument("--arch", action="append", default=[], metavar="KEY=VALUE", help="encoder architecture override")
    p.add_argument("--num-frames", type=int, default=None, help="pt2: frames of the exported clip shape")
    p.add_argument("--img-size", type=int, default=None, help="pt2: side of the exported clip shape")
    p.add_argument("--probe", default=None, help="hf: a probe directory to export as the classification head")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out = export_encoder(
        args.source, args.out, args.format, which=args.which, predictor=args.predictor, strict=not args.non_strict,
        num_frames=args.num_frames, img_size=args.img_size, encoder_kwargs=parse_overrides(args.arch),
        probe=load_probe(args.probe) if args.probe else None,
    )  # fmt: skip
    print(f"exported {args.which} of {args.source} as {args.format} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
