"""Train-step benchmark (protocol: docs/benchmarks.md, "Train step"): clips/s, time per phase, peak memory, and on GPU the
achieved TFLOP/s and MFU.

Default = the protocol configuration: ViT-S/16 with RoPE, 16 frames at 128 px, batch 4,
predictor 6 x 192 (6 heads), the two V-JEPA 2 mask configs, fp32, 2 threads::

    python tools/bench_step.py
    python tools/bench_step.py --model vit_large --img 256 --batch 8 --dtype bf16 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import platform
import resource
import statistics
import sys
import time

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

from jepa.masks.multiblock import VJEPA2_DEFAULT, MaskSampler
from jepa.masks.ops import gather_tokens
from jepa.models import cpu_attention
from jepa.models.layers import compile_blocks
from jepa.models.registry import create_encoder, create_predictor
from jepa.train import onednn
from jepa.train.build import adamw, param_groups
from jepa.train.ema import ema_update
from jepa.train.flops import step_flops
from jepa.train.step import JEPA

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vit_small")
    p.add_argument("--img", type=int, default=128)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--pred-depth", type=int, default=6)
    p.add_argument("--pred-dim", type=int, default=192)
    p.add_argument("--pred-heads", type=int, default=6)
    p.add_argument("--steps", type=int, default=6, help="timed steps after the warm-up steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (compile needs a few)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder and predictor blocks")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument(
        "--patch-embed",
        default="auto",
        choices=["auto", "conv", "matmul"],
        help="tubelet embedding path (auto: matmul on CUDA, Conv3d elsewhere)",
    )
    p.add_argument(
        "--sdpa",
        default="auto",
        choices=["auto", "flash", "cudnn", "efficient", "math"],
        help="on CUDA, the only attention kernel SDPA may use (auto: PyTorch's choice)",
    )
    p.add_argument(
        "--cpu-attention",
        default="auto",
        choices=["auto", "off"],
        help="off: PyTorch's SDPA for bf16 on CPU too, instead of jepa.models.cpu_attention",
    )
    p.add_argument(
        "--mask-pool",
        type=int,
        default=0,
        metavar="K",
        help="cycle through K mask draws instead of a fresh draw per step: the steady state of a "
        "long run, where compiled graphs and cuDNN attention plans for the token counts exist",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="ROWS",
        help="after timing, profile one step and print the ROWS most expensive ops",
    )
    p.add_argument(
        "--joint-backward",
        action="store_true",
        help="one backward of the mean over mask configs (default: one per config, as the trainer)",
    )
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    a = parse()
    onednn.bound_primitive_cache()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    enc = create_encoder(a.model, img_size=a.img, num_frames=a.frames, use_activation_checkpointing=a.checkpointing)
    pred = create_predictor(
        img_size=a.img,
        num_frames=a.frames,
        embed_dim=enc.embed_dim,
        predictor_embed_dim=a.pred_dim,
        depth=a.pred_depth,
        num_heads=a.pred_heads,
        use_activation_checkpointing=a.checkpointing,
    )
    if device.type == "cuda" and a.sdpa != "auto":
        for name in ("flash", "cudnn", "efficient", "math"):
            getattr(torch.backends.cuda, f"enable_{'mem_' * (name == 'efficient')}{name}_sdp")(name == a.sdpa)
    cpu_attention.enabled = a.cpu_attention == "auto"
    if a.patch_embed != "auto":
        enc.patch_embed.matmul = a.patch_embed == "matmul"
    model = JEPA(enc, pred, copy.deepcopy(enc)).to(device)
    if a.compile:
        compile_blocks(model, a.compile_mode)
    opt = adamw(param_groups(model), lr=1e-4, weight_decay=0.04)
    grid = enc.grid_size(a.frames, a.img, a.img)
    sampler = MaskSampler(VJEPA2_DEFAULT, grid)
    clips = torch.randn(a.batch, 3, a.frames, a.img, a.img, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16")

    phases = ["target_fwd", "context_fwd", "predictor_fwd", "backward", "optimizer", "ema"]
    times: dict[str, list[float]] = {k: [] for k in phases + ["step"]}
    gen = torch.Generator().manual_seed(0)
    pool = [sampler(a.batch, gen) for _ in range(a.mask_pool)]

    def one_step(it: int) -> tuple[dict[str, float], float, list[Tensor], list[Tensor]]:
        ctx_idx, tgt_idx = pool[it % len(pool)] if pool else sampler(a.batch, gen)
        ctx_idx = [c.to(device) for c in ctx_idx]
        tgt_idx = [t.to(device) for t in tgt_idx]
        tick: dict[str, float] = {k: 0.0 for k in phases}
        sync(device)
        t_start = last = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal last
            sync(device)
            now = time.perf_counter()
            tick[name] += now - last
            last = now

        with autocast:
            h = model.targets(clips)
        lap("target_fwd")
        losses = []
        for _i, (c, t) in enumerate(zip(ctx_idx, tgt_idx)):
            with autocast:
                z = model.encoder(clips, masks=c)
                lap("context_fwd")
                p = model.predictor(z, c, t, mask_index=0)
                losses.append(torch.mean(torch.abs(p - gather_tokens(h, t))))
                lap("predictor_fwd")
            if not a.joint_backward:  # as the Trainer: free this config's activations now
                (losses[-1] / len(ctx_idx)).backward()
                lap("backward")
        if a.joint_backward:
            torch.stack(losses).mean().backward()
            lap("backward")
        opt.step()
        opt.zero_grad(set_to_none=True)
        lap("optimizer")
        for target, source in model.ema_pairs():
            ema_update(target, source, 0.999)
        lap("ema")
        return tick, time.perf_counter() - t_start, ctx_idx, tgt_idx

    for it in range(a.warmup + a.steps):
        tick, step_time, ctx_idx, tgt_idx = one_step(it)
        if it >= a.warmup:
            for k in phases:
                times[k].append(tick[k])
            times["step"].append(step_time)
    if a.profile:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            one_step(-1)
        for sort in ["self_cpu_time_total"] + (["self_cuda_time_total"] if device.type == "cuda" else []):
            print(prof.key_averages().table(sort_by=sort, row_limit=a.profile))

    med = {k: statistics.median(v) for k, v in times.items()}
    clips_per_s = a.batch / med["step"]
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, "
        f"machine {platform.machine()} {platform.processor() or ''} ({platform.node()}), python {platform.python_version()}"
    )
    print(
        f"config: {a.model} {a.frames}x{a.img}px batch {a.batch}, predictor {a.pred_depth}x{a.pred_dim}, "
        f"masks {len(VJEPA2_DEFAULT)} configs, {a.dtype}, grid {grid}, "
        f"kept ctx {[c.shape[1] for c in ctx_idx]} tgt {[t.shape[1] for t in tgt_idx]}"
    )
    print(f"clips/s: {clips_per_s:.2f}  (median step {med['step'] * 1e3:.0f} ms over {a.steps} steps)")
    print("ms per phase: " + ", ".join(f"{k} {med[k] * 1e3:.0f}" for k in phases))
    print(
        f"peak memory: {peak_memory_mb(device):.0f} MB ({'GPU allocated' if device.type == 'cuda' else 'process RSS'})"
    )
    flops = step_flops(model, a.batch, a.frames, a.img, [c.shape[1] for c in ctx_idx], [t.shape[1] for t in tgt_idx])
    achieved = flops / med["step"] / 1e12
    print(f"model FLOPs per step: {flops / 1e12:.3f} TFLOP, achieved {achieved:.3f} TFLOP/s")
    if device.type == "cuda":
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
        if peak and a.dtype == "bf16":
            print(f"MFU: {100 * achieved / peak:.1f}% of {peak:.0f} dense bf16 TFLOP/s ({name})")


if __name__ == "__main__":
    main()
