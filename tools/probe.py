"""Frozen evaluation of an encoder: attentive probe and/or k-NN, top-1 / top-5.

On the fly: features are computed from manifests with any encoder `jepa.load_encoder` reads
(run dir, checkpoint, export, official `.pt`, HF dir)::

    python tools/probe.py --checkpoint runs/demo --train-manifest train.csv --val-manifest val.csv \\
        --frames 16 --fps 4 --num-clips 2 --crop 224 --crops 3 --out probes/demo

From embeddings written by `tools/embed.py` (`--outputs tokens` for the attentive probe;
pooled embeddings make one token per window)::

    python tools/embed.py --checkpoint runs/demo --manifest train.csv --out emb/train --outputs tokens pooled
    python tools/probe.py --train-embeddings emb/train --val-embeddings emb/val --out probes/demo

Images are one-frame clips: pass an image manifest with ``--frames 1``. The probe is the
released one by default (3 self-attention blocks + 1 cross-attention block, 16 heads, one
query); ``--lr 1e-3 3e-4 --wd 0.01 0.1`` trains a grid of heads in parallel and keeps the best
on the val set (the released protocol). Each spatial view concatenates the tokens of its
clips; per-video predictions average the views' softmax. The probe is saved to ``--out`` and
loads with ``jepa.eval.load_probe(path)``. The last line printed is the metrics as JSON.

A trained classifier on the val set only, no training: ``--eval`` takes anything
``load_probe`` reads (our probe directory, an HF ``VJEPA2ForVideoClassification`` directory, the
official evaluation's ``.pt``, with ``--eval-head`` / ``--eval-num-heads``)::

    python tools/probe.py --checkpoint vjepa2-vitl-ssv2 --eval vjepa2-vitl-ssv2 --val-manifest val.csv \
        --frames 16 --frame-step 2 --num-clips 2 --crops 3 --crop 256
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jepa.data.manifest import describe_classes, manifest_classes, read_manifest  # noqa: E402
from jepa.eval.clip_args import add_clip_arguments, add_label_column_argument, clip_config  # noqa: E402
from jepa.eval.features import (  # noqa: E402
    COMBINE_MODES,
    FeatureSet,
    embedding_classes,
    extract_features,
    load_embeddings,
)
from jepa.eval.knn import knn_evaluate  # noqa: E402
from jepa.eval.probe import (  # noqa: E402
    AttentiveClassifier,
    ProbeConfig,
    evaluate_probe,
    load_probe,
    probe_config_dict,
    save_probe,
    train_probe,
)
from jepa.export.load import load_encoder  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("features on the fly")
    src.add_argument("--checkpoint", help="anything jepa.load_encoder reads")
    src.add_argument("--which", choices=("target_encoder", "encoder"), default="target_encoder")
    src.add_argument("--train-manifest")
    src.add_argument("--val-manifest")
    add_clip_arguments(src, crop=224, batch_flag="--feature-batch", batch=16)
    add_label_column_argument(src)
    src.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=None,
        help="blocks (1..depth) whose normed outputs are concatenated per token (default: the last)",
    )
    emb = p.add_argument_group("features from tools/embed.py")
    emb.add_argument("--train-embeddings")
    emb.add_argument("--val-embeddings")
    emb.add_argument("--output", choices=("tokens", "pooled"), default=None, help="default: tokens when written")
    pr = p.add_argument_group("probe")
    pr.add_argument("--method", nargs="+", choices=("attentive", "knn"), default=["attentive", "knn"])
    pr.add_argument("--depth", type=int, default=3, help="self-attention blocks before the cross-attention block")
    pr.add_argument("--num-heads", type=int, default=16)
    pr.add_argument("--num-queries", type=int, default=1)
    pr.add_argument("--epochs", type=int, default=20)
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--lr", type=float, nargs="+", default=[1e-3])
    pr.add_argument("--wd", type=float, nargs="+", default=[0.01])
    pr.add_argument(
        "--combine", choices=COMBINE_MODES, default="concat", help="clips of a view: concat tokens or separate samples"
    )
    pr.add_argument("--num-classes", type=int, default=None, help="default: largest label + 1")
    pr.add_argument("--knn-k", type=int, default=20)
    pr.add_argument("--knn-temperature", type=float, default=0.07)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda if available")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="directory for the trained probe")
    ev = p.add_argument_group("evaluate a trained probe (no training; only the val set)")
    ev.add_argument("--eval", default=None, help="a probe load_probe reads: ours, HF classification dir, official .pt")
    ev.add_argument("--eval-head", type=int, default=0, help="official .pt: which of its heads")
    ev.add_argument("--eval-num-heads", type=int, default=16, help="official .pt: attention heads of the probe")
    return p


def load_sets(
    args: argparse.Namespace, device: torch.device, classes: list[str] | None = None
) -> tuple[FeatureSet, FeatureSet, dict[str, Any], list[str] | None]:
    """(train, val, provenance, class names) from embeddings or from an encoder and manifests.

    Class-name labels (and class folders) are numbered alike in both sets: by `classes` (a
    trained probe's, for --eval), else by the train set's names; embedding directories must
    agree. Integer labels index the classes directly, whatever names a probe carries."""
    if args.train_embeddings or args.val_embeddings:
        if not ((args.train_embeddings or args.eval) and args.val_embeddings) or args.checkpoint:
            raise SystemExit("give --train-embeddings and --val-embeddings (and no --checkpoint)")
        if args.layers:
            raise SystemExit("--layers is chosen when embedding (tools/embed.py --layers), not when probing embeddings")
        named = {d: embedding_classes(d) for d in (args.train_embeddings, args.val_embeddings) if d}
        if classes is not None and any(named.values()):
            named["the probe"] = classes
        if len({json.dumps(c) for c in named.values()}) > 1:
            raise SystemExit(
                "the label numbering differs: " + "; ".join(f"{k}: {(v or 'integer labels')}"[:200] for k, v in named.items())
                + ". Re-embed the val set with tools/embed.py --classes TRAIN_MANIFEST"
            )  # fmt: skip
        source = {
            "train_embeddings": args.train_embeddings,
            "val_embeddings": args.val_embeddings,
            "output": args.output,
        }
        train = load_embeddings(args.train_embeddings, args.output) if args.train_embeddings else None
        val = load_embeddings(args.val_embeddings, args.output)
        return train, val, source, next(iter(named.values()), None)  # type: ignore[return-value]
    if not (args.checkpoint and (args.train_manifest or args.eval) and args.val_manifest):
        raise SystemExit(
            "give --checkpoint, --train-manifest and --val-manifest, or --train/--val-embeddings "
            "(--eval needs no train set)"
        )
    cfg = clip_config(args, args.feature_batch, layers=tuple(args.layers) if args.layers else None)
    encoder = load_encoder(args.checkpoint, which=args.which)
    manifests = (args.train_manifest, args.val_manifest)
    own = manifest_classes(args.train_manifest or args.val_manifest, label_column=args.label_column)
    classes = None if own is None else (classes or own)
    sets = [
        extract_features(encoder, read_manifest(m, classes=classes, label_column=args.label_column), cfg, device=device)
        if m
        else None
        for m in manifests
    ]
    source = {"checkpoint": args.checkpoint, "which": args.which, "features": asdict(cfg)}
    return sets[0], sets[1], source, classes  # type: ignore[return-value]


def evaluate_saved(args: argparse.Namespace, probe: AttentiveClassifier, val_set: FeatureSet) -> int:
    """`--eval`: top-1 / top-5 of a trained probe on the val features, and its class names."""
    dim = int(val_set.tokens.shape[-1])
    if probe.config["dim"] != dim:
        raise SystemExit(f"the probe reads {probe.config['dim']}-wide tokens; these features are {dim} wide")
    print(f"features: val {tuple(val_set.tokens.shape)} ({val_set.num_videos} videos); probe {args.eval}")
    metrics = evaluate_probe(probe, val_set, args.combine)
    print("attentive probe: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    print(json.dumps({"attentive": metrics, "labels": probe.config.get("labels")}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    probe = load_probe(args.eval, device, head=args.eval_head, num_heads=args.eval_num_heads) if args.eval else None
    train_set, val_set, source, classes = load_sets(args, device, probe.config.get("labels") if probe else None)
    if probe is not None:
        return evaluate_saved(args, probe, val_set)
    if classes:
        print(describe_classes(classes))
    print(f"features: train {tuple(train_set.tokens.shape)} ({train_set.num_videos} videos), "
          f"val {tuple(val_set.tokens.shape)} ({val_set.num_videos} videos)")  # fmt: skip
    report: dict[str, Any] = {}
    if "knn" in args.method:
        report["knn"] = knn_evaluate(train_set, val_set, args.knn_k, args.knn_temperature, args.num_classes)
        print(f"knn (k={args.knn_k}): " + ", ".join(f"{k} {v:.2f}" for k, v in report["knn"].items()))
    if "attentive" in args.method:
        cfg = ProbeConfig(
            depth=args.depth, num_heads=args.num_heads, num_queries=args.num_queries, epochs=args.epochs,
            batch_size=args.batch_size, lrs=tuple(args.lr), weight_decays=tuple(args.wd), combine=args.combine,
            seed=args.seed,
        )  # fmt: skip
        result = train_probe(
            train_set, cfg, val_set, args.num_classes or (len(classes) if classes else None), device, classes
        )
        for head in result.heads:
            print(f"head lr {head.lr:g} wd {head.weight_decay:g}: train loss {head.train_loss:.4f}, "
                  + ", ".join(f"{k} {v:.2f}" for k, v in head.metrics.items()))  # fmt: skip
        report["attentive"] = result.metrics
        print("attentive probe: " + ", ".join(f"{k} {v:.2f}" for k, v in result.metrics.items()))
        if args.out:
            meta = {"source": source, "probe": probe_config_dict(cfg), "metrics": result.metrics}
            print(f"probe saved to {save_probe(result.probe, args.out, meta)}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
