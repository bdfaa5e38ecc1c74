"""The one attention / MLP / transformer block shared by every model in jepa.

Encoder, predictor, action-conditioned predictor and probe pooler all compose these, so
parameter names (`qkv`, `proj`, `fc1`, `fc2`, `norm1`, `attn`, `norm2`, `mlp`) match the
released V-JEPA checkpoints everywhere and an attention change is made in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from jepa.models.cpu_attention import cpu_attention, opaque_cpu_attention, use_cpu_attention
from jepa.models.rope import RoPE3D

NORM_EPS = 1e-6


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability `drop_prob`.

    Written here rather than imported from timm: importing timm pulls in torchvision and
    huggingface_hub, about 200 MB of resident memory and 1.6 s per process, for six lines.
    """

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:g}"


class Mlp(nn.Module):
    """Two-layer MLP (fc1 -> act -> fc2)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        act: Callable[[], nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if type(self.act) is nn.GELU and self.act.approximate == "none" and h.requires_grad:
            return _GeluLinear.apply(h, self.fc2.weight, self.fc2.bias)
        return self.fc2(self.act(h))


class _GeluLinear(torch.autograd.Function):
    """fc2(gelu(h)) that keeps only `h` for backward and recomputes the GELU there.

    Autograd would keep both h (for the GELU) and gelu(h) (for fc2): 8 x dim floats per token
    and block, the largest share of a training step's activations. Recomputing the GELU is an
    elementwise pass; the step's result is unchanged (tests/test_golden_loss.py) and ViT-S
    at the benchmark step's shape keeps about 120 MB less (docs/benchmarks.md).
    """

    @staticmethod
    def forward(ctx: Any, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(h), weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        h, weight = ctx.saved_tensors
        # Under autocast the forward ran fc2 in the low precision dtype; backward follows suit.
        act = F.gelu(h).to(grad.dtype)
        grad_act = grad @ weight.to(grad.dtype)
        flat_grad = grad.reshape(-1, grad.shape[-1])
        grad_weight = (flat_grad.t() @ act.reshape(-1, act.shape[-1])).to(weight.dtype)
        grad_bias = flat_grad.sum(0).to(weight.dtype) if ctx.has_bias else None
        grad_h = torch.ops.aten.gelu_backward(grad_act.to(h.dtype), h)
        return grad_h, grad_weight, grad_bias


def attend(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention of (B, H, N, d) tensors by the fastest kernel for them:
    bf16 GEMMs on CPU (jepa.models.cpu_attention), PyTorch's SDPA everywhere else."""
    if use_cpu_attention(q.device, q.dtype):
        if torch.compiler.is_compiling():
            return opaque_cpu_attention()(q, k, v, attn_mask)
        return cpu_attention(q, k, v, attn_mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


def _split_heads(dim: int, num_heads: int) -> int:
    if num_heads <= 0 or dim % num_heads:
        raise ValueError(f"dim {dim} must be a positive multiple of num_heads {num_heads}")
    return dim // num_heads


class Attention(nn.Module):
    """Multi-head self-attention (`attend`), with optional 3D RoPE on queries and keys and an
    optional LayerNorm of each head's queries and keys (`qk_norm`, which bounds the attention
    logits, as in ViT-22B)."""

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, rope: RoPE3D | None = None, qk_norm: bool = False
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = _split_heads(dim, num_heads)
        if rope is not None and rope.head_dim != self.head_dim:
            raise ValueError(f"rope head_dim {rope.head_dim} != attention head_dim {self.head_dim}")
        self.rope = rope
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=NORM_EPS) if qk_norm else None
        self.k_norm = nn.LayerNorm(self.head_dim, eps=NORM_EPS) if qk_norm else None
        self.proj = nn.Linear(dim, dim)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, rope={self.rope!r}"

    def forward(
        self,
        x: Tensor,
        pos: Tensor | None = None,
        attn_mask: Tensor | None = None,
        axis_mask: Tensor | None = None,
    ) -> Tensor:
        """x (B, N, C); pos (N, 3) or (B, N, 3) token positions, required with RoPE;
        attn_mask: bool (True = attend) or additive float, broadcastable to (B, H, N, N)."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            if pos is None:
                raise ValueError("an attention layer with RoPE needs token positions (pos)")
            q = self.rope.apply(q, pos, axis_mask)
            k = self.rope.apply(k, pos, axis_mask)
            if v.requires_grad:
                # q and k are new tensors now; a view v would keep the whole qkv output alive
                # for backward (3 x dim per token), a copy keeps 1 x dim.
                v = v.contiguous()
        x = attend(q, k, v, attn_mask)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        rope_layout: str | None = None,
        norm_eps: float = NORM_EPS,
        qk_norm: bool = False,
    ) -> None:
        super().__init__()
        head_dim = _split_heads(dim, num_heads)
        rope = None if rope_layout is None else RoPE3D(head_dim, layout=rope_layout)  # type: ignore[arg-type]
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, rope=rope, qk_norm=qk_norm)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        # int() (not round) reproduces the released hidden sizes, e.g. 6144 for ViT-g's 48/11.
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self,
        x: Tensor,
        pos: Tensor | None = None,
        attn_mask: Tensor | None = None,
        axis_mask: Tensor | None = None,
    ) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), pos=pos, attn_mask=attn_mask, axis_mask=axis_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CrossAttention(nn.Module):
    """Queries attend to tokens; separate `q` and `kv` projections and, as released, no output projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = _split_heads(dim, num_heads)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)

    def forward(self, q: Tensor, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        b, nq, c = q.shape
        q = self.q(q).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        k, v = self.kv(x).unflatten(-1, (2, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        out = attend(q, k, v, attn_mask)
        return out.transpose(1, 2).reshape(b, nq, c)


class CrossBlock(nn.Module):
    """q + xattn(q, norm1(x)), then q + mlp(norm2(q)); the queries are not normed (as released)."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, norm_eps: float = NORM_EPS
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.xattn = CrossAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, q: Tensor, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        q = q + self.xattn(q, self.norm1(x), attn_mask=attn_mask)
        return q + self.mlp(self.norm2(q))


class PatchEmbed3D(nn.Module):
    """Tubelet embedding: Conv3d with kernel = stride = (tubelet, patch, patch), tokens out in t-major order.

    The weights are a Conv3d's (released layout), but on CUDA the forward runs as one matmul
    over the unfolded tubelets: the same sum, and cuDNN's bf16 Conv3d for this stride = kernel
    case is far slower than a GEMM (docs/benchmarks.md). `matmul` forces either path (None:
    matmul on CUDA, the convolution elsewhere, where oneDNN's is fast and the CPU loss curve
    stays as pinned by tests/test_golden_loss.py).
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, tubelet_size: int) -> None:
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)
        self.matmul: bool | None = None

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> (B, T' * H' * W', D)."""
        if self.matmul or (self.matmul is None and x.is_cuda):
            return self._forward_matmul(x)
        return self.proj(x).flatten(2).transpose(1, 2)

    def _forward_matmul(self, x: Tensor) -> Tensor:
        t, h, w = x.shape[2:]
        kt, kh, kw = self.proj.kernel_size
        x = x[:, :, : t - t % kt, : h - h % kh, : w - w % kw]  # as the convolution: partial tubelets drop
        x = rearrange(x, "b c (t kt) (h kh) (w kw) -> b (t h w) (c kt kh kw)", kt=kt, kh=kh, kw=kw)
        return F.linear(x, self.proj.weight.flatten(1), self.proj.bias)


def separate_inductor_cache_per_capability() -> None:
    """Give runs under ATEN_CPU_CAPABILITY their own inductor cache folder.

    Inductor's compiled-graph cache is not keyed on that variable (torch 2.14): a graph generated
    for AVX2 vectors under `ATEN_CPU_CAPABILITY=avx2`, reloaded by a plain run on an AVX-512 CPU,
    aborted the process, and AVX-512 code reloaded under avx2 returned NaNs. Importing inductor
    writes its default folder into TORCHINDUCTOR_CACHE_DIR, so that value is replaced too; a
    folder the user chose is left alone.
    """
    capability = os.environ.get("ATEN_CPU_CAPABILITY")
    if not capability:
        return
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    default = os.path.abspath(default_cache_dir())
    if os.path.abspath(os.environ.get("TORCHINDUCTOR_CACHE_DIR", default)) == default:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(default, f"capability_{capability}")


def compile_blocks(model: nn.Module, mode: str | None = None) -> int:
    """torch.compile every transformer block of `model` in place; returns how many.

    Blocks rather than whole models: the token counts change with every mask draw, and a block
    is one small graph that compiles once per (dynamic) shape and is shared by all blocks of a
    width. `nn.Module.compile` keeps parameter names, so checkpoints are unchanged.
    """
    blocks = [m for m in model.modules() if isinstance(m, (Block, CrossBlock))]
    separate_inductor_cache_per_capability()
    opaque_cpu_attention()  # built before tracing, so traces only call it
    for block in blocks:
        block.compile(mode=mode)
    return len(blocks)


def run_blocks(blocks: Iterable[nn.Module], x: Tensor, checkpointing: bool = False, **kwargs: Any) -> Tensor:
    """Apply blocks in sequence; with `checkpointing`, recompute activations in backward to save memory.

    Checkpointing only kicks in when autograd is recording, so inference pays nothing for it.
    """
    use_ckpt = checkpointing and torch.is_grad_enabled()
    for blk in blocks:
        if use_ckpt:
            x = checkpoint(blk, x, use_reentrant=False, **kwargs)
        else:
            x = blk(x, **kwargs)
    return x
