"""Scale-out: SLURM/submitit env mapping, 2 processes (gloo) == 1 process == gradient
accumulation, FSDP (with accumulation, activation checkpointing and grad clipping) == 1
process, FSDP save / resume / full export, and the submitit local launcher.

Equality across process counts needs every source of randomness to be per sample or per
global step: data (sample_id), masks (seed, step), and drop_path_rate=0 (drop-path draws from
each process's own torch RNG, so with it on, 1 and 2 processes differ by design).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import PLAIN_LOSS, compose_cfg, tiny_overrides

import jepa
from jepa.train.checkpoint import find_latest, load_checkpoint
from jepa.train.distributed import (
    SlurmEnvError,
    apply_slurm_env,
    expand_hostlist,
    expand_tasks_per_node,
    job_port,
    slurm_to_torch_env,
    submitit_local_to_torch_env,
)
from jepa.train.logging import read_metrics
from jepa.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "tools" / "train.py")
STEPS = 4
TOL = 1e-5


def run_overrides(run_dir: Path, cache: Path, batch: int, *extra: str) -> list[str]:
    return [
        *tiny_overrides(run_dir, cache, STEPS),
        f"data.batch_size={batch}",
        "model.encoder.drop_path_rate=0.0",
        "optim.clip_grad=1.0",  # active: the first steps' gradient norms are above it
        "trainer.cpu=true",
        "trainer.tensorboard=false",
        # The demo's variance/covariance terms are statistics of each micro-batch, so with them
        # on, grad_accum=2 x batch 2 is not 1 x batch 4 (ranks are gathered: the test below).
        *PLAIN_LOSS,
        *extra,
    ]


def torchrun(overrides: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", TRAIN]
    out = subprocess.run([*cmd, *overrides], check=False, capture_output=True, text=True, timeout=400, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir)]


def max_weight_diff(a: Path, b: Path) -> float:
    wa, _, _ = load_checkpoint(find_latest(a))
    wb, _, _ = load_checkpoint(find_latest(b))
    assert wa.keys() == wb.keys() and all(wa[p].keys() == wb[p].keys() for p in wa)
    return max((wa[p][k] - wb[p][k]).abs().max().item() for p in wa for k in wa[p])


def world_size(run_dir: Path) -> int:
    return json.loads((find_latest(run_dir) / "meta.json").read_text())["world_size"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synthetic_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """One process, global batch 4: what every multi-process run must reproduce."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    train(compose_cfg(run_overrides(run_dir, cache, 4, "trainer.ckpt_every=0")))
    assert world_size(run_dir) == 1
    return run_dir


# --- environment mapping ---------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, hosts",
    [
        ("node1", ["node1"]),
        ("gpu[001-003,007]", ["gpu001", "gpu002", "gpu003", "gpu007"]),
        ("a[1-2],b5,c[09-10]", ["a1", "a2", "b5", "c09", "c10"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ],
)
def test_expand_hostlist(spec: str, hosts: list[str]) -> None:
    assert expand_hostlist(spec) == hosts


@pytest.mark.parametrize("bad", ["gpu[1-", "gpu[3-1]", "gpu[a-b]", ""])
def test_expand_hostlist_rejects_bad_lists(bad: str) -> None:
    with pytest.raises(SlurmEnvError):
        expand_hostlist(bad)


def test_expand_tasks_per_node() -> None:
    assert expand_tasks_per_node("4(x2),3") == [4, 4, 3]
    assert expand_tasks_per_node("8") == [8]
    with pytest.raises(SlurmEnvError):
        expand_tasks_per_node("4(2)")


SLURM_TASK = {
    "SLURM_PROCID": "13",
    "SLURM_STEP_NUM_TASKS": "16",
    "SLURM_LOCALID": "5",
    "SLURM_NODEID": "1",
    "SLURM_STEP_TASKS_PER_NODE": "8(x2)",
    "SLURM_STEP_NODELIST": "gpu[017-018]",
    "SLURM_JOB_ID": "4242",
}


def test_slurm_task_maps_to_torch_env() -> None:
    env = slurm_to_torch_env(SLURM_TASK)
    assert env == {
        "RANK": "13",
        "WORLD_SIZE": "16",
        "LOCAL_RANK": "5",
        "LOCAL_WORLD_SIZE": "8",
        "NODE_RANK": "1",
        "GROUP_RANK": "1",
        "MASTER_ADDR": "gpu017",
        "MASTER_PORT": str(job_port("4242")),
    }
    other = slurm_to_torch_env({**SLURM_TASK, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"})
    assert (other["MASTER_ADDR"], other["MASTER_PORT"]) == (env["MASTER_ADDR"], env["MASTER_PORT"])
    assert job_port("4243") != job_port("4242")


def test_slurm_mapping_leaves_other_launchers_alone() -> None:
    assert slurm_to_torch_env({**SLURM_TASK, "RANK": "0"}) == {}, "torchrun inside srun must win"
    batch_script = {k: v for k, v in SLURM_TASK.items() if not k.startswith("SLURM_STEP")}
    assert slurm_to_torch_env({**batch_script, "SLURM_NTASKS": "16"}) == {}, "no srun step: no peers to wait for"
    assert slurm_to_torch_env({**SLURM_TASK, "SLURM_STEP_NUM_TASKS": "1"}) == {}
    explicit = slurm_to_torch_env({**SLURM_TASK, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"})
    assert (explicit["MASTER_ADDR"], explicit["MASTER_PORT"]) == ("10.0.0.1", "1234")
    with pytest.raises(SlurmEnvError):
        slurm_to_torch_env({**SLURM_TASK, "SLURM_PROCID": "16"})


def test_apply_slurm_env_exports_submitit_local_tasks() -> None:
    environ = {
        "SUBMITIT_LOCAL_GLOBALID": "1",
        "SUBMITIT_LOCAL_LOCALID": "1",
        "SUBMITIT_LOCAL_NTASKS": "2",
        "SUBMITIT_LOCAL_JOB_ID": "777",
    }
    set_vars = apply_slurm_env(environ)
    assert set_vars == submitit_local_to_torch_env({k: v for k, v in environ.items() if k.startswith("SUBMITIT")})
    assert (environ["RANK"], environ["WORLD_SIZE"], environ["MASTER_ADDR"]) == ("1", "2", "127.0.0.1")
    assert apply_slurm_env(environ) == {}, "a second call sees RANK and changes nothing"


# --- multi-process equality ------------------------------------------------------------


def test_two_processes_and_grad_accum_match_one_process(tmp_path: Path, cache: Path, reference: Path) -> None:
    ddp = tmp_path / "ddp"
    torchrun(run_overrides(ddp, cache, 2, "trainer.ckpt_every=0"))
    assert world_size(ddp) == 2, "the two processes did not train together"
    accum = tmp_path / "accum"
    train(compose_cfg(run_overrides(accum, cache, 2, "trainer.ckpt_every=0", "trainer.grad_accum=2")))
    assert world_size(accum) == 1
    ref = losses(reference)
    assert len(ref) == STEPS
    for run in (ddp, accum):
        assert losses(run) == pytest.approx(ref, abs=TOL), run.name
        assert max_weight_diff(run, reference) <= TOL, run.name


def test_two_processes_match_one_process_with_the_batch_terms(tmp_path: Path, cache: Path) -> None:
    """The variance/covariance terms are gathered over ranks, so they see the global batch."""
    terms = ["trainer.ckpt_every=0", "optim.var_weight=1.0", "optim.cov_weight=0.04"]
    one, ddp = tmp_path / "one", tmp_path / "ddp"
    train(compose_cfg(run_overrides(one, cache, 4, *terms)))
    torchrun(run_overrides(ddp, cache, 2, *terms))
    assert world_size(ddp) == 2, "the two processes did not train together"
    assert [r["var_loss"] for r in read_metrics(ddp)] == pytest.approx(
        [r["var_loss"] for r in read_metrics(one)], abs=TOL
    )
    assert losses(ddp) == pytest.approx(losses(one), abs=TOL)
    assert max_weight_diff(ddp, one) <= TOL


def test_fsdp_saves_resumes_and_exports_full_encoder(tmp_path: Path, cache: Path, reference: Path) -> None:
    run = tmp_path / "fsdp"
    overrides = run_overrides(
        run,
        cache,
        1,
        "trainer.fsdp=true",
        "trainer.grad_accum=2",
        "model.activation_checkpointing=true",
        "trainer.ckpt_every=2",
        "trainer.keep_last=0",
    )
    torchrun(overrides)
    meta = json.loads((find_latest(run) / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["fsdp"] is True
    assert read_metrics(run)[0]["grad_norm"] > 1.0, "clipping must be exercised"
    assert losses(run) == pytest.approx(losses(reference), abs=TOL)
    assert max_weight_diff(run, reference) <= TOL

    # Rewind to the step-2 checkpoint and resume under FSDP, and once more on one process
    # without FSDP (the checkpoint holds full weights and a name-keyed optimizer state).
    shutil.rmtree(run / "checkpoints" / "step_00000004")
    plain = tmp_path / "plain"
    shutil.copytree(run, plain)
    out = torchrun(overrides)
    assert "resumed from" in out.stderr + out.stdout
    assert find_latest(run).name == "step_00000004" and world_size(run) == 2
    assert max_weight_diff(run, reference) <= TOL
    summary = train(compose_cfg(run_overrides(plain, cache, 4, "trainer.ckpt_every=2")))
    assert summary["start_step"] == 2 and world_size(plain) == 1
    assert max_weight_diff(plain, reference) <= TOL

    full, _, _ = load_checkpoint(find_latest(run))
    encoder = jepa.load_encoder(run)
    own = encoder.state_dict()
    assert own.keys() == full["target_encoder"].keys()
    assert all(torch.equal(own[k], full["target_encoder"][k]) for k in own)
    tokens = encoder(torch.randn(1, 3, 4, 32, 32))
    assert tokens.shape == (1, 2 * 4 * 4, encoder.embed_dim) and torch.isfinite(tokens).all()


needs_submitit = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher not installed (pip install 'jepa[slurm]')",
)


@needs_submitit
def test_slurm_launcher_takes_its_resources_from_the_config() -> None:
    from hydra import compose, initialize_config_dir

    overrides = [
        "hydra/launcher=slurm",
        "experiment=vitg16_pretrain",
        "launch.nodes=16",
        "launch.gpus_per_node=4",
        "launch.partition=gpu",
        "launch.timeout_min=600",
        "launch.max_requeue=2",
    ]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (16, 4, 4)
    assert (launcher.partition, launcher.timeout_min, launcher.max_num_timeout) == ("gpu", 600, 2)
    assert launcher.submitit_folder == "runs/vitg16_pretrain/submitit/%j"


@needs_submitit
def test_submitit_local_launcher_trains_two_tasks_together(tmp_path: Path, cache: Path, reference: Path) -> None:
    run = tmp_path / "launched"
    cmd = [
        sys.executable,
        TRAIN,
        "-m",
        "hydra/launcher=local",
        "launch.gpus_per_node=2",
        "launch.timeout_min=8",
        *run_overrides(run, cache, 2, "trainer.ckpt_every=0"),
    ]
    out = subprocess.run(
        cmd,
        check=False,
        capture_output=True,
        text=True,
        timeout=500,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    logs = "".join(p.read_text() for p in (run / "submitit").rglob("*.err")) if (run / "submitit").exists() else ""
    assert out.returncode == 0, out.stderr[-3000:] + logs[-3000:]
    assert world_size(run) == 2
    assert losses(run) == pytest.approx(losses(reference), abs=TOL)
