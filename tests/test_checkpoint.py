"""Atomic checkpoints: round trip, pruning, and a process killed mid-save."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from jepa.checkpoint_files import CheckpointMismatchError
from jepa.train.checkpoint import (
    find_latest,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

REPO = Path(__file__).resolve().parents[1]


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"encoder": nn.Linear(4, 4), "predictor": nn.Linear(4, 2)}


def test_round_trip_and_latest(tmp_path: Path) -> None:
    models = _models()
    opt = torch.optim.AdamW(models["encoder"].parameters())
    models["encoder"](torch.randn(2, 4)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "step": 7, "rng": rng_state()}
    path = save_checkpoint(tmp_path, 7, models, state, "a: 1\n", keep_last=2)
    assert find_latest(tmp_path) == path
    weights, loaded, meta = load_checkpoint(path)
    assert meta["step"] == 7 and loaded["step"] == 7
    for name, m in models.items():
        for k, v in m.state_dict().items():
            assert torch.equal(weights[name][k], v)
    assert (path / "config.yaml").read_text() == "a: 1\n"


def test_rng_state_round_trip() -> None:
    import random

    import numpy as np

    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b


def test_keep_last_prunes(tmp_path: Path) -> None:
    models = _models()
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, models, {"step": step}, "", keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert names == ["step_00000003", "step_00000004"]


def test_incomplete_dir_is_ignored_and_reported(tmp_path: Path) -> None:
    models = _models()
    good = save_checkpoint(tmp_path, 1, models, {"step": 1}, "")
    broken = tmp_path / "checkpoints" / "step_00000002"
    broken.mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step_00000002\n")
    assert find_latest(tmp_path) == good
    with pytest.raises(FileNotFoundError, match="missing"):
        load_checkpoint(broken)


def test_kill_during_save_keeps_previous(tmp_path: Path) -> None:
    """SIGKILL a real process while it is writing a checkpoint: the previous one stays latest."""
    script = textwrap.dedent(
        f"""
        import sys, time, torch
        from torch import nn
        sys.path.insert(0, {str(REPO)!r})
        import jepa.train.checkpoint as ck
        models = {{"encoder": nn.Linear(4, 4)}}
        ck.save_checkpoint({str(tmp_path)!r}, 1, models, {{"step": 1}}, "")
        def slow_write(path, state):
            torch.save(state, path)
            print("WRITING", flush=True)
            time.sleep(60)
        ck._write_train_state = slow_write
        ck.save_checkpoint({str(tmp_path)!r}, 2, models, {{"step": 2}}, "")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "WRITING" in line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    latest = find_latest(tmp_path)
    assert latest is not None and latest.name == "step_00000001"
    weights, state, _ = load_checkpoint(latest)
    assert state["step"] == 1 and "encoder" in weights
    leftovers = list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert leftovers, "the killed save should have left only a temporary directory"
    save_checkpoint(tmp_path, 3, {"encoder": nn.Linear(4, 4)}, {"step": 3}, "")
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert find_latest(tmp_path).name == "step_00000003"


@pytest.mark.parametrize("name", ["model.safetensors", "train_state.pt", "meta.json"])
@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_damaged_file_is_named(tmp_path: Path, name: str, damage: str) -> None:
    """A save damaged on disk is reported with the file's path and size, not a bare
    SafetensorError / zip-archive RuntimeError / JSONDecodeError."""
    path = save_checkpoint(tmp_path, 1, _models(), {"step": 1, "rng": rng_state()}, "")
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    size = (path / name).stat().st_size
    with pytest.raises(CheckpointMismatchError, match=rf"{name} \({size} bytes\) is not a readable"):
        load_checkpoint(path)
