"""The bf16 CPU attention kernel: SDPA's results at bf16 precision, grouping that changes
nothing, a backward that keeps no score matrix, and a training step as close to float64 as
SDPA's own bf16 path."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from jepa.masks.multiblock import VJEPA2_DEFAULT, MaskSampler
from jepa.models import cpu_attention as ca
from jepa.models import layers
from jepa.models.registry import create_encoder, create_predictor
from jepa.train.step import JEPA


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def qkv(*shape: int, nk: int | None = None, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, h, n, d = shape
    return [torch.randn(b, h, m, d, generator=g) for m in (n, nk or n, nk or n)]


@pytest.mark.parametrize("mask", [None, "bool", "float"])
@pytest.mark.parametrize("shape,nk", [((2, 3, 37, 16), None), ((3, 4, 5, 32), 29)])
def test_matches_sdpa_at_bf16_precision(mask: str | None, shape: tuple[int, ...], nk: int | None) -> None:
    q, k, v = qkv(*shape, nk=nk)
    m = None
    if mask is not None:
        m = torch.rand(shape[0], 1, shape[2], k.shape[2], generator=torch.Generator().manual_seed(1)) > 0.3
        m[..., 0] = True  # every query sees a key
        if mask == "float":
            m = torch.where(m, 0.0, -1e4)
    low = [t.bfloat16().requires_grad_() for t in (q, k, v)]
    full = [t.bfloat16().float().requires_grad_() for t in (q, k, v)]
    out = ca.cpu_attention(*low, attn_mask=m)
    ref = F.scaled_dot_product_attention(*full, attn_mask=m)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    grad = torch.randn_like(ref)
    out.backward(grad.bfloat16())
    ref.backward(grad)
    # bf16 keeps 8 mantissa bits (eps 3.9e-3); a wrong scale, mask or softmax backward is off by far more.
    assert rel(out, ref) < 1e-2
    for a, b in zip(low, full):
        assert rel(a.grad, b.grad) < 1e-2


def test_groups_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v = (t.bfloat16().requires_grad_() for t in qkv(3, 5, 40, 16))

    def run(elements: int) -> list[torch.Tensor]:
        monkeypatch.setattr(ca, "GROUP_ELEMENTS", elements)
        out = ca.cpu_attention(q, k, v)
        return [out, *torch.autograd.grad(out, (q, k, v), torch.ones_like(out))]

    one_block = run(1 << 30)
    # 1600 scores per (batch, head): one pair per group, heads split 2/2/1, two batch elements
    # per group.
    for elements in (1600, 3200, 2 * 5 * 1600):
        assert all(torch.equal(a, b) for a, b in zip(one_block, run(elements)))


def test_group_slices_cover_every_pair_once() -> None:
    for b, h, block in [(4, 6, 512 * 512), (4, 6, 150 * 150), (2, 16, 4096 * 4096), (3, 5, 1 << 19), (1, 1, 1)]:
        seen = torch.zeros(b, h, dtype=torch.int64)
        for sb, sh in ca._groups(b, h, block):
            seen[sb, sh] += 1
            assert seen[sb, sh].numel() * block <= max(ca.GROUP_ELEMENTS, block)
        assert torch.equal(seen, torch.ones(b, h, dtype=torch.int64))


def test_backward_keeps_no_score_matrix() -> None:
    """Like flash attention it recomputes the probabilities; autograd would keep B*H*N*N of them."""
    q, k, v = (t.bfloat16().requires_grad_() for t in qkv(2, 3, 64, 8))
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ca.cpu_attention(q, k, v).sum().backward()
    assert saved and max(saved) <= q.numel()


def test_attend_dispatches_by_device_and_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(layers, "cpu_attention", lambda *a: calls.append("cpu") or ca.cpu_attention(*a))
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(
        layers.F, "scaled_dot_product_attention", lambda *a, **kw: calls.append("sdpa") or sdpa(*a, **kw)
    )
    q, k, v = qkv(1, 2, 8, 4)
    monkeypatch.setattr(ca, "KERNEL_SUPPORTED", True)
    layers.attend(q, k, v)
    layers.attend(q.bfloat16(), k.bfloat16(), v.bfloat16())
    monkeypatch.setattr(ca, "KERNEL_SUPPORTED", False)  # emulated bf16 GEMMs: SDPA is faster
    layers.attend(q.bfloat16(), k.bfloat16(), v.bfloat16())
    monkeypatch.setattr(ca, "KERNEL_SUPPORTED", True)
    monkeypatch.setattr(ca, "enabled", False)
    layers.attend(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert calls == ["sdpa", "cpu", "sdpa", "sdpa"]


@pytest.mark.skipif(not ca.KERNEL_SUPPORTED, reason="the kernel runs only where bf16 GEMMs are native")
def test_bf16_training_step_is_as_close_to_float64_as_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    enc = create_encoder("vit_tiny", img_size=32, num_frames=4)
    pred = create_predictor(
        img_size=32, num_frames=4, embed_dim=enc.embed_dim, predictor_embed_dim=48, depth=2, num_heads=3
    )
    model = JEPA(enc, pred, copy.deepcopy(enc))
    gen = torch.Generator().manual_seed(0)
    ctx, tgt = MaskSampler(VJEPA2_DEFAULT, enc.grid_size(4, 32, 32))(4, gen)
    clips = torch.randn(4, 3, 4, 32, 32, generator=gen)

    def step(m: JEPA, x: torch.Tensor, bf16: bool) -> tuple[float, torch.Tensor]:
        m.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = m(x, ctx, tgt)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten().double() for p in m.encoder.parameters()])

    ref_loss, ref_grad = step(copy.deepcopy(model).double(), clips.double(), False)
    errors = {}
    for enabled in (True, False):
        monkeypatch.setattr(ca, "enabled", enabled)
        loss, grad = step(model, clips, True)
        errors[enabled] = (abs(loss - ref_loss) / abs(ref_loss), rel(grad, ref_grad))
    (loss_err, grad_err), (sdpa_loss_err, sdpa_grad_err) = errors[True], errors[False]
    assert loss_err < 1e-3 and grad_err < 0.1
    assert grad_err < 1.5 * sdpa_grad_err and loss_err < 1.5 * sdpa_loss_err + 1e-5


def test_importing_the_models_does_not_import_dynamo() -> None:
    """`torch.compiler.disable` imports torch._dynamo (~1.3 s): only compiling may pay for it."""
    code = "import sys, jepa.models, jepa.export.load; assert 'torch._dynamo' not in sys.modules, 'dynamo imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_compiled_blocks_run_the_kernel_opaque_and_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled (bf16, CPU) blocks call cpu_attention as a disabled function, not a traced loop
    (forced on where the kernel is not chosen: this is about tracing, not speed)."""
    monkeypatch.setattr(ca, "KERNEL_SUPPORTED", True)
    torch.manual_seed(0)
    block = layers.Block(64, 4).eval()
    x = torch.randn(2, 10, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        eager = block(x)
        ca.opaque_cpu_attention()  # what compile_blocks builds before any trace
        torch._dynamo.reset()
        explained = torch._dynamo.explain(block)(x)
        layers.compile_blocks(block)
        compiled = block(x)
    reasons = [str(r.reason).splitlines()[0] for r in explained.break_reasons]
    assert reasons and all("disable" in r for r in reasons), reasons
    torch.testing.assert_close(compiled.float(), eager.float(), rtol=2e-2, atol=2e-2)
