"""Benchmark: pooled embeddings per second, our encoder vs transformers `VJEPA2Model`.

Both models hold the same random weights (ours converted with the HF name map) and see the
same normalised clip; one embedding = one clip's tokens mean-pooled, as `tools/embed.py`
writes it. Rounds alternate which model runs first; the figure is the median over rounds.
CPU time of the process is reported next to wall time, since on a shared machine wall time
also counts other processes.

    python tools/bench_embed.py                                  # ViT-S and ViT-L, 16 x 128 px, batch 1
    python tools/bench_embed.py --models vit_small --img 224 --iters 7 --threads 4 --modes fp32

Modes: `fp32` and `bf16` run both models at that precision (bf16 = autocast); `defaults` runs
each as it runs when not told: ours with tools/embed.py's `precision=auto` (bf16 where the CPU
has native bf16 matmuls), HF in fp32.

Needs `transformers` (the `test` / `hf` extra).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch

from jepa.export.embed import resolve_precision
from jepa.export.hf import encoder_to_hf, hf_config
from jepa.models.registry import create_encoder


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def build_pair(name: str, frames: int, img: int) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """Our encoder and an HF `VJEPA2Model` with the same weights; returns (ours, hf_features)."""
    import transformers

    ours = create_encoder(name, img_size=img, num_frames=frames).eval()
    cfg = {k: v for k, v in hf_config(ours.config).items() if k not in ("model_type", "architectures")}
    cfg.update(pred_num_hidden_layers=1, attn_implementation="sdpa")  # the predictor is not run
    with torch.device("meta"):
        hf = transformers.VJEPA2Model(transformers.VJEPA2Config(**cfg))
    hf.encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in encoder_to_hf(ours.state_dict()).items()},
                               strict=True, assign=True)  # fmt: skip
    hf.eval()
    return ours, lambda clip: hf.get_vision_features(clip.permute(0, 2, 1, 3, 4))


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, float, torch.Tensor]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


MODES = {
    # name: (our autocast dtype, HF's autocast dtype)
    "fp32": (None, None),
    "bf16": (torch.bfloat16, torch.bfloat16),
    # What each tool does when not told: tools/embed.py's precision "auto" vs HF in fp32.
    "defaults": (resolve_precision("auto", torch.device("cpu")), None),
}


def bench_model(name: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    ours, hf = build_pair(name, args.frames, args.img)
    clip = torch.randn(args.batch, 3, args.frames, args.img, args.img)

    def run(model: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype | None) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                return model(clip).float().mean(1)

        return call

    ours_dtype, hf_dtype = MODES[mode]
    runs = {"ours": run(ours, ours_dtype), "hf": run(hf, hf_dtype)}
    times: dict[str, list[tuple[float, float]]] = {"ours": [], "hf": []}
    with torch.inference_mode():
        outs = {k: fn() for k, fn in runs.items()}  # warm-up
        diff = (outs["ours"] - outs["hf"]).abs().max().item()
        for i in range(args.iters):
            for key in ("ours", "hf") if i % 2 == 0 else ("hf", "ours"):
                wall, cpu, _ = timed(runs[key])
                times[key].append((wall, cpu))
    res: dict[str, float] = {"max_abs_diff": diff}
    for key, samples in times.items():
        res[f"{key}_wall"] = statistics.median(w for w, _ in samples)
        res[f"{key}_cpu"] = statistics.median(c for _, c in samples)
    tokens = (args.frames // 2) * (args.img // 16) ** 2
    label = {None: "fp32", torch.bfloat16: "bf16"}
    print(
        f"{name:10s} {mode:8s} (ours {label[ours_dtype]}, hf {label[hf_dtype]}) {args.batch} x {args.frames} x "
        f"{args.img}px ({tokens} tokens/clip): "
        f"ours {args.batch / res['ours_wall']:.3f} emb/s (cpu {args.batch / res['ours_cpu']:.3f}), "
        f"hf {args.batch / res['hf_wall']:.3f} emb/s (cpu {args.batch / res['hf_cpu']:.3f}); "
        f"speed-up wall {res['hf_wall'] / res['ours_wall']:.2f}x, cpu {res['hf_cpu'] / res['ours_cpu']:.2f}x; "
        f"max |diff| {diff:.2e}",
        flush=True,
    )
    return res


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["vit_small", "vit_large"])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--img", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5, help="timed rounds per model (each runs both)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODES),
        default=list(MODES),
        help="fp32 / bf16: both models at that precision; defaults: each tool's default",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}")
    print(f"machine: {machine()}; load average at start {load_average()}")
    for name in args.models:
        for mode in args.modes:
            bench_model(name, mode, args)
    print(f"load average at end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
