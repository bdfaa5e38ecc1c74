"""Attention for bf16 tensors on CPU: bf16 GEMMs around a softmax, in cache-sized groups.

Why it exists: on CPUs with bf16 dot-product units (AVX512-BF16, AMX), a bf16 GEMM runs
several times faster than an fp32 one, but PyTorch's CPU flash-attention kernel runs bf16
inputs no faster than fp32 (about 130 GFLOP/s either way on the 2-core dev machine, where a
bf16 GEMM reaches ~410), and its math fallback upcasts bf16 to fp32. Under bf16 autocast that
made attention a third of a training step (docs/benchmarks.md).

Here the scores, the softmax and the weighted sum run as bf16 GEMMs and one softmax per group
of (batch, head) pairs, a group being as many pairs as fit a score block of `GROUP_ELEMENTS`,
so each block stays in cache. As in flash attention the backward recomputes the probabilities
instead of keeping them, so a training step holds q, k, v and the output, as with SDPA.
Precision is that of bf16 GEMMs: scores and probabilities are rounded to bf16 (the softmax
itself accumulates in fp32), like every other bf16 matmul under autocast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

# Score elements per group: 2 MB of bf16, which stays in cache. On the dev machine (ViT-S
# shapes, forward + backward) 2^20 beat 2^18, 2^22 and one block for the whole (B, H, N, N)
# tensor by 15-35% at N = 512 (docs/benchmarks.md).
GROUP_ELEMENTS = 1 << 20


# False sends every input to PyTorch's SDPA (benchmarks and tests compare the two).
enabled = True


def _kernel_supported() -> bool:
    """Whether this process's CPU kernels are the ones the kernel was measured on: native bf16
    GEMMs (AVX512-BF16 or AMX) through ATen's AVX-512 code. Elsewhere bf16 GEMMs are emulated
    (~1 GFLOP/s on AVX2), so SDPA, which computes bf16 attention in fp32, is faster, and with
    ATen's plain C++ kernels (`ATEN_CPU_CAPABILITY=default`) this kernel's bf16 training loss
    was 19x further from float64 than SDPA's (4.6e-3 against 2.4e-4, relative)."""
    cpu = torch.cpu
    native = any(
        getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )
    return native and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


# Read once: a call inside `use_cpu_attention` would break every compiled block's graph.
KERNEL_SUPPORTED = _kernel_supported()


def use_cpu_attention(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `cpu_attention` is the faster kernel for inputs of this device and dtype (bf16 on
    a CPU whose kernels support it)."""
    return enabled and device.type == "cpu" and dtype == torch.bfloat16 and KERNEL_SUPPORTED


def cpu_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(d) [+ mask]) v for (B, H, N, d) tensors; the semantics of
    `F.scaled_dot_product_attention` without dropout (bool mask: True = attend; float: added)."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"cpu_attention takes (B, H, N, d) tensors, got {q.ndim}/{k.ndim}/{v.ndim} dims")
    if attn_mask is not None:
        attn_mask = attn_mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    return _GroupedAttention.apply(q, k, v, attn_mask)


_opaque: Callable[..., Tensor] | None = None


def opaque_cpu_attention() -> Callable[..., Tensor]:
    """`cpu_attention` kept out of torch.compile graphs: tracing its group loop specialised on
    every token count and hit dynamo's recompile limit; left opaque, compiled blocks run it as
    it is. Built on first use, because `torch.compiler.disable` imports torch._dynamo (~1.3 s
    on the dev VM), which nothing but compiling needs."""
    global _opaque
    if _opaque is None:
        _opaque = torch.compiler.disable(cpu_attention)
    return _opaque


def _groups(b: int, h: int, block: int) -> Iterator[tuple[slice, slice]]:
    """(batch, head) slices covering b x h pairs, each with at most GROUP_ELEMENTS scores
    (one pair at least), heads split evenly. Slices of a contiguous (B, H, ...) tensor stay
    contiguous."""
    pairs = max(1, GROUP_ELEMENTS // max(block, 1))
    if pairs >= h:
        step = pairs // h
        for i in range(0, b, step):
            yield slice(i, i + step), slice(None)
    else:
        size = -(-h // -(-h // pairs))
        for i in range(b):
            for j in range(0, h, size):
                yield slice(i, i + 1), slice(j, j + size)


def _probs(q: Tensor, k: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over keys of (already scaled) q k^T, masked as SDPA masks."""
    s = torch.matmul(q, k.transpose(-2, -1))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.to(s.dtype)
    return torch.softmax(s, dim=-1)


class _GroupedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        b, h, nq, d = q.shape
        scale = d**-0.5
        out = q.new_empty(b, h, nq, v.shape[-1])
        with torch.autocast("cpu", enabled=False):
            qs = (q * scale).contiguous()
            for sb, sh in _groups(b, h, nq * k.shape[2]):
                m = None if mask is None else mask[sb, sh]
                torch.matmul(_probs(qs[sb, sh], k[sb, sh], m), v[sb, sh], out=out[sb, sh])
        ctx.save_for_backward(qs, k, v, mask)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        qs, k, v, mask = ctx.saved_tensors
        b, h, nq, _ = qs.shape
        grad_out = grad_out.to(qs.dtype).contiguous()
        dq, dk, dv = torch.empty_like(qs), k.new_empty(k.shape), v.new_empty(v.shape)
        with torch.autocast("cpu", enabled=False):
            for sb, sh in _groups(b, h, nq * k.shape[2]):
                q_, k_, v_, go = qs[sb, sh], k[sb, sh], v[sb, sh], grad_out[sb, sh]
                p = _probs(q_, k_, None if mask is None else mask[sb, sh])
                dv[sb, sh] = torch.matmul(p.transpose(-2, -1), go)
                ds = torch._softmax_backward_data(torch.matmul(go, v_.transpose(-2, -1)), p, -1, p.dtype)
                dq[sb, sh] = torch.matmul(ds, k_)
                dk[sb, sh] = torch.matmul(ds.transpose(-2, -1), q_)
        return dq.mul_(ctx.scale), dk, dv, None
