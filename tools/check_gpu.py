"""GPU checks that the CPU test suite cannot make: bf16 autocast, the flash SDPA kernel,
torch.compile and activation checkpointing give the same train step as plain fp32.

Run on a machine with a CUDA GPU (never part of the tests; CI has none)::

    python tools/check_gpu.py

Each check prints PASS/FAIL with the measured relative error; the exit status is non-zero if
any check fails.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from jepa.masks.multiblock import VJEPA2_DEFAULT, MaskSampler
from jepa.models.layers import compile_blocks
from jepa.models.registry import create_encoder, create_predictor
from jepa.train.step import JEPA

FRAMES, IMG, BATCH = 16, 128, 4


def build(checkpointing: bool = False) -> JEPA:
    torch.manual_seed(0)
    enc = create_encoder("vit_small", img_size=IMG, num_frames=FRAMES, use_activation_checkpointing=checkpointing)
    pred = create_predictor(
        img_size=IMG,
        num_frames=FRAMES,
        embed_dim=enc.embed_dim,
        predictor_embed_dim=192,
        depth=6,
        num_heads=6,
        use_activation_checkpointing=checkpointing,
    )
    return JEPA(enc, pred, copy.deepcopy(enc)).cuda()


def step(model: JEPA, clips: torch.Tensor, masks: tuple, dtype: torch.dtype | None) -> tuple[float, torch.Tensor]:
    """Loss and the flattened context-encoder gradient of one step."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        loss, _ = model(clips, *masks)
    loss.backward()
    grad = torch.cat([p.grad.flatten().float() for p in model.encoder.parameters() if p.grad is not None])
    return loss.item(), grad


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    gen = torch.Generator().manual_seed(0)
    sampler = MaskSampler(
        VJEPA2_DEFAULT, create_encoder("vit_small", img_size=IMG, num_frames=FRAMES).grid_size(FRAMES, IMG, IMG)
    )
    ctx, tgt = sampler(BATCH, gen)
    masks = ([c.cuda() for c in ctx], [t.cuda() for t in tgt])
    clips = torch.randn(BATCH, 3, FRAMES, IMG, IMG, generator=gen).cuda()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ref_model = build().double()
    with sdpa_kernel(SDPBackend.MATH):
        ref_loss, ref_grad = step(ref_model, clips.double(), masks, None)
    del ref_model

    results: list[tuple[str, bool, str]] = []

    def check(name: str, fn: Callable[[], tuple[float, torch.Tensor]], tol: float) -> None:
        try:
            loss, grad = fn()
        except Exception as e:  # a kernel that cannot run is a failed check, reported with its reason
            results.append((name, False, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"))
            return
        e_loss, e_grad = abs(loss - ref_loss) / abs(ref_loss), rel(grad.double(), ref_grad)
        ok = e_loss < tol and e_grad < 10 * tol and torch.isfinite(grad).all().item()
        results.append((name, ok, f"loss rel err {e_loss:.1e}, grad rel err {e_grad:.1e} (tol {tol:g}/{10 * tol:g})"))

    model = build()
    check("fp32, math SDPA", lambda: _with(SDPBackend.MATH, lambda: step(model, clips, masks, None)), 1e-4)
    check(
        "fp32, efficient SDPA",
        lambda: _with(SDPBackend.EFFICIENT_ATTENTION, lambda: step(model, clips, masks, None)),
        1e-4,
    )
    check(
        "bf16 autocast, flash SDPA",
        lambda: _with(SDPBackend.FLASH_ATTENTION, lambda: step(model, clips, masks, torch.bfloat16)),
        2e-2,
    )
    ckpt = build(checkpointing=True)
    check("bf16, activation checkpointing", lambda: step(ckpt, clips, masks, torch.bfloat16), 2e-2)
    compiled = build()
    compile_blocks(compiled)
    check("bf16, compiled blocks", lambda: step(compiled, clips, masks, torch.bfloat16), 2e-2)

    width = max(len(n) for n, _, _ in results)
    for name, ok, msg in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {msg}")
    return 0 if all(ok for _, ok, _ in results) else 1


def _with(backend: SDPBackend, fn: Callable[[], tuple[float, torch.Tensor]]) -> tuple[float, torch.Tensor]:
    """Run fn with only `backend` allowed: raises if SDPA cannot use that kernel for our shapes."""
    with sdpa_kernel(backend):
        return fn()


if __name__ == "__main__":
    sys.exit(main())
