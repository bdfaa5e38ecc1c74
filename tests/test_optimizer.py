"""The trainer's AdamW (fused kernel where torch has one), resume keeping this run's kernel
choice, and the bound on oneDNN's primitive cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jepa.train import build, fsdp, onednn


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4))


def one_step(m: nn.Module, opt: torch.optim.Optimizer) -> None:
    m(torch.randn(3, 8)).square().mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def test_adamw_is_fused_on_cpu_and_default_when_sharded() -> None:
    m = model()
    fused = build.adamw(build.param_groups(m), lr=1e-3, weight_decay=0.04)
    assert all(g["fused"] for g in fused.param_groups)
    assert [g["weight_decay"] for g in fused.param_groups] == [0.04, 0.0]
    plain = build.adamw(build.param_groups(m), sharded=True, lr=1e-3)
    assert not any(g["fused"] for g in plain.param_groups)


def test_fused_adamw_takes_the_same_steps_as_torchs_default() -> None:
    runs = []
    for fused in (True, False):
        m = model()
        groups = build.param_groups(m)
        opt = (
            build.adamw(groups, lr=1e-2, weight_decay=0.1)
            if fused
            else torch.optim.AdamW(groups, lr=1e-2, weight_decay=0.1)
        )
        torch.manual_seed(1)
        for _ in range(5):
            one_step(m, opt)
        runs.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("saved_fused", [False, True])
def test_resume_keeps_this_runs_kernel_and_the_saved_state(saved_fused: bool) -> None:
    """torch's load_state_dict takes `fused` / `foreach` from the checkpoint; a run resumed
    from an older (unfused) state would silently lose the fused step, and a state written
    unsharded would force the fused kernel on sharded parameters."""
    m = model()
    writer = build.adamw(build.param_groups(m), sharded=not saved_fused, lr=1e-3)
    one_step(m, writer)
    saved = writer.state_dict()
    for sharded in (False, True):
        reader = build.adamw(build.param_groups(m), sharded=sharded, lr=1e-3)
        fsdp.load_optimizer_state(m, reader, saved)
        assert [bool(g["fused"]) for g in reader.param_groups] == [not sharded] * 2
        loaded = reader.state_dict()["state"]
        assert loaded.keys() == saved["state"].keys()
        for i, state in saved["state"].items():
            assert all(torch.equal(loaded[i][k], v) for k, v in state.items())
        one_step(m, reader)


def test_onednn_cache_bound_leaves_a_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(onednn.ENV, raising=False)
    assert onednn.bound_primitive_cache() == str(onednn.CAPACITY)
    monkeypatch.setenv(onednn.ENV, "7")
    assert onednn.bound_primitive_cache() == "7"
