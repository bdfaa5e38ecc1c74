"""World-model benchmark: collect -> train the AC predictor -> plan to image goals, vs random.

Runs the three jobs of tools/collect.py, tools/train_ac.py and tools/plan.py with their
shipped configs (configs/world/*.yaml) in one process, times each, and prints a markdown
summary with the machine it ran on::

    python tools/bench_world.py                               # the documented benchmark
    python tools/bench_world.py --image docs/images/plan_episode.png
    python tools/bench_world.py --override train.steps=100 --override episodes=5   # a smoke run

`--override` takes Hydra overrides; each goes to every config that has the key.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from jepa.world.pipeline import machine_info, run_collect, run_plan, run_train_ac

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "world"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/world/bench", help="root for data/, ac/, plan/")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--image", default=None, help="also copy the planned episode's PNG strip here")
    p.add_argument("--override", action="append", default=[], help="Hydra override, e.g. train.steps=100")
    return p.parse_args()


def load(name: str, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        base = compose(config_name=name)
        keys = set(OmegaConf.to_container(base, resolve=False))
        usable = [o for o in overrides if o.split("=", 1)[0].split(".")[0].lstrip("+~") in keys]
        return OmegaConf.to_container(compose(config_name=name, overrides=usable), resolve=True)


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if (out / "data").exists():
        shutil.rmtree(out / "data")  # collection appends; the benchmark starts from nothing
    common = [f"threads={args.threads}"]
    collect_cfg = load("collect", [f"out_dir={out / 'data'}", *args.override])
    train_cfg = load("train_ac", [f"data_dir={out / 'data'}", f"out_dir={out / 'ac'}", *common, *args.override])
    plan_cfg = load("plan", [f"model_dir={out / 'ac'}", f"out_dir={out / 'plan'}", *common, *args.override])

    t0 = time.perf_counter()
    collected = run_collect(collect_cfg)
    trained = run_train_ac(train_cfg)
    planned = run_plan(plan_cfg)
    total = time.perf_counter() - t0

    info = machine_info()
    p, r, cem = planned["planned"], planned["random"], planned["planner_config"]
    lines = [
        f"command: {' '.join(sys.argv)}",
        f"torch {info['torch']}, {info['threads']} threads, {info['machine']} ({info['processor']}, "
        f"{info['cpus']} cores, load average {info['load_average_1m']:.1f} at the end)",
        f"data: {collected['episodes']} random episodes x {collect_cfg['num_frames']} frames "
        f"({collected['seconds']:.0f} s); encode {trained['encode_seconds']:.0f} s; "
        f"train {train_cfg['train']['steps']} steps {trained['train_seconds']:.0f} s; "
        f"val rollout L1 {trained['val_before']['rollout']:.3f} -> {trained['val_after']['rollout']:.3f}",
        f"planner: CEM horizon {cem['horizon']}, {cem['num_samples']} samples, {cem['num_elites']} elites, "
        f"{cem['iterations']} iterations, energy '{planned['energy']}'; {len(planned['seeds'])} episodes x "
        f"{planned['max_steps']} steps, success = final distance < {planned['success_tol']}",
        "",
        "| policy | success | mean final distance | s / planning step (median) |",
        "|---|---|---|---|",
        f"| CEM + AC predictor | {p['success_rate']:.0%} | {p['mean_final_distance']:.3f} | "
        f"{p['seconds_per_plan_median']:.2f} |",
        f"| random actions | {r['success_rate']:.0%} | {r['mean_final_distance']:.3f} | - |",
        "",
        f"total wall time {total:.0f} s",
    ]
    report = "\n".join(lines)
    print(report)
    (out / "bench.md").write_text(report + "\n")
    train_summary = {k: v for k, v in trained.items() if k != "history"}
    record = {"collect": collected, "train": train_summary, "plan": planned, "total_seconds": total, **info}
    (out / "bench.json").write_text(json.dumps(record, indent=1))
    if args.image:
        Path(args.image).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "plan" / "plan_episode.png", args.image)


if __name__ == "__main__":
    main()
