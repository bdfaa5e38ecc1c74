"""End-to-end pretraining: Hydra entry point, exact resume after SIGKILL, non-finite guard,
config validation, every shipped experiment composes and builds."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from jepa.checkpoint_files import CheckpointMismatchError
from jepa.models import cpu_attention
from jepa.train import build
from jepa.train.checkpoint import find_latest, load_checkpoint
from jepa.train.config import ConfigError, register_configs
from jepa.train.logging import read_metrics
from jepa.train.trainer import NonFiniteLossError, train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))

register_configs()


def tiny_overrides(run_dir: Path, cache: Path, steps: int = 4) -> list[str]:
    """A model and data small enough for a step in well under a second on one core."""
    return [
        f"run_dir={run_dir}",
        f"data.synthetic.cache_dir={cache}",
        "data.synthetic.num_videos=6",
        "data.synthetic.num_frames=12",
        "data.synthetic.size=32",
        "data.batch_size=2",
        "optim.lr_reference_batch=null",  # the lrs below are meant as given at this batch
        "data.frames_per_clip=4",
        "data.frame_step=2",
        "data.crop_size=32",
        "model.encoder.img_size=32",
        "model.encoder.num_frames=4",
        "model.encoder.patch_size=8",
        "model.predictor.depth=1",
        "model.predictor.predictor_embed_dim=32",
        "model.predictor.num_heads=2",
        "model.name=vit_tiny",
        "model.encoder.pos_embed=rope",  # the mechanics tests were written on RoPE; the demo itself uses sin-cos
        f"trainer.max_steps={steps}",
        "trainer.ckpt_every=2",
        "trainer.progress=false",
        "trainer.threads=1",
        "optim.warmup_steps=1",
    ]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synthetic_cache")


def test_cli_tiny_run(tmp_path: Path, cache: Path) -> None:
    run_dir = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), *tiny_overrides(run_dir, cache)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert all(0.0 < r["ema"] <= 1.0 for r in records)  # the teacher's momentum is logged
    assert find_latest(run_dir).name == "step_00000004"
    assert (run_dir / "config.yaml").is_file()
    assert list((run_dir / "tb").rglob("events.out.tfevents.*")), "TensorBoard event file missing"
    assert "done: steps 0->4" in out.stdout
    # What the run computes with, printed once at start.
    setup = next(line for line in out.stdout.splitlines() if "setup: 1 process on cpu" in line)
    for part in (
        "precision no",
        "attention SDPA",
        "AdamW fused",
        "loader workers 0",
        "decode threads 1 (auto)",
        "decoder pyav",
        "primitive cache 32",
    ):
        assert part in setup, setup


def test_num_workers_null_is_one_per_core_minus_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert build.loader_workers(None) == 5 and build.loader_workers(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert build.loader_workers(None) == 2
    with pytest.raises(ValueError, match="num_workers"):
        build.loader_workers(-1)
    for data in ("manifest", "vjepa2_mix"):
        assert compose_cfg([f"data={data}"]).data.num_workers is None


def test_decode_threads_null_covers_the_cores_the_workers_get(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert build.loader_threads(None, 0) == 1, "no threads in the main process, which computes the step"
    assert build.loader_threads(None, 7) == 1 and build.loader_threads(None, 2) == 3
    assert build.loader_threads(4, 7) == 4
    for bad in (0, -2):
        with pytest.raises(ValueError, match="decode_threads"):
            build.loader_threads(bad, 1)
    for data in ("synthetic", "manifest", "vjepa2_mix"):
        assert compose_cfg([f"data={data}"]).data.decode_threads is None


def test_data_label_column_reads_header_manifests(tmp_path: Path) -> None:
    """`data=manifest` takes a pandas-style manifest with several label columns; data.label_column
    picks one, and a column the header lacks stops the run before any work, named."""
    from jepa.data.manifest import ManifestError
    from jepa.data.synthetic import write_video

    for i in range(2):
        write_video(tmp_path / f"{i}.mp4", np.zeros((8, 32, 32, 3), np.uint8), 8)
    (tmp_path / "m.csv").write_text("path,digit,direction\n0.mp4,3,left\n1.mp4,5,up\n")
    base = ["data=manifest", f"data.datasets=[{{path: {tmp_path / 'm.csv'}, weight: 1.0}}]", "data.num_workers=0"]
    assert [e.label for e in build.build_dataset(compose_cfg(base)).entries] == [None, None]
    dataset = build.build_dataset(compose_cfg([*base, "data.label_column=digit"]))
    assert [e.label for e in dataset.entries] == [3, 5]
    with pytest.raises(ManifestError, match="no column 'speed'"):
        build.build_dataset(compose_cfg([*base, "data.label_column=speed"]))


def test_manifest_preset_fits_the_default_model_and_short_videos(tmp_path: Path) -> None:
    """The README's `data=manifest` with the default ViT-tiny: crops at the model's 64 px, and a
    16-frame video at fps 4 gives 16 moving frames (spread over it), not 8 and a still tail."""
    from jepa.data.synthetic import write_video

    write_video(tmp_path / "0.mp4", np.zeros((16, 64, 64, 3), np.uint8), 8)
    (tmp_path / "m.csv").write_text("path,label\n0.mp4,0\n")
    cfg = compose_cfg(["data=manifest", f"data.datasets=[{{path: {tmp_path / 'm.csv'}, weight: 1.0}}]"])
    assert (cfg.data.crop_size,) * 2 == build.encoder_args(cfg.model).img_size == (64, 64)
    assert compose_cfg(["data=manifest", "experiment=vitl16_pretrain"]).data.crop_size == 256
    sample = build.build_dataset(cfg)[0]
    assert sorted(set(sample["clip_indices"].flatten().tolist())) == list(range(16))


def test_resume_after_sigkill_matches_uninterrupted(tmp_path: Path, cache: Path) -> None:
    steps = 8
    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "killed"
    cmd = [sys.executable, str(REPO / "tools" / "train.py")]
    ref = subprocess.run([*cmd, *tiny_overrides(ref_dir, cache, steps)], capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]

    proc = subprocess.Popen(
        [*cmd, *tiny_overrides(kill_dir, cache, steps)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            latest = find_latest(kill_dir)
            if latest is not None:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = find_latest(kill_dir)
    assert killed_at is not None and int(killed_at.name.split("_")[1]) < steps, "process finished before the kill"

    resumed = subprocess.run(
        [*cmd, *tiny_overrides(kill_dir, cache, steps)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref_losses = [r["loss"] for r in read_metrics(ref_dir)]
    got_losses = [r["loss"] for r in read_metrics(kill_dir)]
    assert len(got_losses) == steps
    assert got_losses == ref_losses
    w_ref, _, _ = load_checkpoint(find_latest(ref_dir))
    w_got, _, _ = load_checkpoint(find_latest(kill_dir))
    for part in ("encoder", "predictor", "target_encoder"):
        for k in w_ref[part]:
            assert torch.equal(w_ref[part][k], w_got[part][k]), f"{part}.{k} differs after resume"


def test_nonfinite_loss_stops_without_saving(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jepa.train.step import JEPA

    real_forward = JEPA.forward

    def nan_forward(self, clips, masks_ctx, masks_tgt, *rest):
        loss, stats = real_forward(self, clips, masks_ctx, masks_tgt, *rest)
        return loss * float("nan"), stats

    cfg = compose_cfg(tiny_overrides(tmp_path / "run", cache, steps=10) + ["trainer.max_nonfinite=3"])
    monkeypatch.setattr(JEPA, "forward", nan_forward)
    with pytest.raises(NonFiniteLossError, match="3 consecutive non-finite"):
        train(cfg)
    assert find_latest(tmp_path / "run") is None, "no checkpoint may be written from non-finite steps"
    records = read_metrics(tmp_path / "run")
    assert len(records) == 3 and records[-1]["skipped"] == 3


def test_loss_goes_down_quickly(tmp_path: Path, cache: Path) -> None:
    cfg = compose_cfg(
        tiny_overrides(tmp_path / "run", cache, steps=30) + ["trainer.ckpt_every=0", "trainer.tensorboard=false"]
    )
    summary = train(cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses
    assert summary["end_step"] == 30


@pytest.mark.skipif(
    not cpu_attention.KERNEL_SUPPORTED,
    reason="bf16 on this CPU is emulated (~1 GFLOP/s matmuls): no bf16 training here",
)
def test_bf16_on_cpu_learns_through_the_cpu_attention_kernel(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trainer.mixed_precision=bf16` on CPU: accelerate's autocast, bf16 attention by
    jepa.models.cpu_attention in encoder and predictor, and the loss still goes down. The fp32
    run first, in the same process, is what a notebook does (accelerate's per-process state
    refused the second precision until the trainer dropped it)."""
    from jepa.models import layers

    calls = []
    kernel = layers.cpu_attention
    monkeypatch.setattr(layers, "cpu_attention", lambda *a: calls.append(a[0].shape) or kernel(*a))
    overrides = ["trainer.ckpt_every=0", "trainer.tensorboard=false"]
    train(compose_cfg(tiny_overrides(tmp_path / "fp32", cache, steps=1) + overrides))
    assert not calls
    train(compose_cfg(tiny_overrides(tmp_path / "run", cache, steps=30) + overrides + ["trainer.mixed_precision=bf16"]))
    losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
    assert all(map(math.isfinite, losses)) and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses
    assert calls, "bf16 attention on CPU did not go through cpu_attention"


@pytest.mark.parametrize("override", ["model.not_a_key=1", "optim.lr=fast", "trainer=nonexistent"])
def test_bad_config_fails_at_compose(override: str) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_cfg([override])


def test_added_unknown_key_fails_before_work(tmp_path: Path) -> None:
    cfg = compose_cfg(tiny_overrides(tmp_path / "run", tmp_path / "cache") + ["+trainer.typo=3"])
    with pytest.raises(ConfigError, match="typo"):
        train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_builds_on_meta(experiment: str) -> None:
    cfg = compose_cfg([f"experiment={experiment}"])
    assert OmegaConf.select(cfg, "model.name")
    with torch.device("meta"):
        model = build.build_jepa(cfg)
    grid = build.token_grid(cfg)
    # Released recipes use V-JEPA 2's two mask families; the demos add a predict-the-future one.
    assert len(build.mask_specs(cfg)) == (3 if "demo" in experiment else 2)
    # ... and sin-cos positions, which learn more motion at 64 px (docs/learning.md).
    assert model.encoder.pos_embed_type == ("sincos" if "demo" in experiment else "rope")
    assert (model.encoder.pos_embed is not None) == ("demo" in experiment)
    assert grid[1] == cfg.data.crop_size // model.encoder.patch_size
    n_params = sum(p.numel() for p in model.encoder.parameters())
    assert n_params > 5e6
    json.dumps(OmegaConf.to_container(cfg, resolve=False))


# The demo's terms beyond the released L1 (variance/covariance, context) off, for tests of
# mechanics they would perturb.
PLAIN_LOSS = ["optim.var_weight=0", "optim.cov_weight=0", "optim.context_weight=0"]


@pytest.mark.parametrize(
    "extra, exact",
    [
        (["mask=vjepa2", *PLAIN_LOSS], True),
        (["mask=vjepa2", "model.per_config_mask_tokens=true", *PLAIN_LOSS], True),
        # Three configs, or gradient accumulation: sums of more than two terms regroup.
        (["trainer.grad_accum=2", "model.per_config_mask_tokens=true"], False),
        # The demo's variance/covariance terms ride on config 0's call, weighted by the config count.
        (["mask=vjepa2", "optim.context_weight=0"], False),
        # V-JEPA 2.1's context term is per config, so it splits with them.
        (["mask=vjepa2", "optim.context_weight=0.5"], False),
    ],
)
def test_backward_per_mask_gives_the_same_run(tmp_path: Path, cache: Path, extra: list[str], exact: bool) -> None:
    """One backward per mask config (the default, for memory) == one backward of their mean:
    bit for bit with two configs, no accumulation and no variance/covariance terms, to float
    rounding otherwise."""
    from jepa.export.load import load_models

    runs = {}
    for per_mask in (True, False):
        run = tmp_path / f"per_mask_{per_mask}"
        train(compose_cfg(tiny_overrides(run, cache, steps=4) + extra + [f"trainer.backward_per_mask={per_mask}"]))
        runs[per_mask] = run
    records = [read_metrics(runs[flag]) for flag in (True, False)]
    losses = [[r["loss"] for r in rs] for rs in records]
    # Both log the same statistics (per-config ones averaged over the configs in both modes).
    stats = [{k: [r[k] for r in rs] for k in rs[0] if k.endswith(("_loss", "feat_std"))} for rs in records]
    assert stats[0].keys() == stats[1].keys()
    for key in stats[0]:
        assert stats[0][key] == pytest.approx(stats[1][key], rel=1e-5), key
    a, b = load_models(runs[True]), load_models(runs[False])
    pairs = [(f"{name}.{key}", x, y) for name in ("encoder", "predictor", "target_encoder")
             for (key, x), y in zip(getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values(), strict=True)]  # fmt: skip
    if exact:
        assert losses[0] == losses[1]
        for key, x, y in pairs:
            assert torch.equal(x, y), key
    else:
        assert losses[0] == pytest.approx(losses[1], rel=1e-6)
        for key, x, y in pairs:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=key)


def test_predictor_lr_scale_groups_and_run(tmp_path: Path, cache: Path) -> None:
    """optim.predictor_lr_scale gives the predictor groups of its own (decay split kept); one
    step with it leaves the encoder exactly as the released recipe does and moves the predictor
    further from the same start."""
    from jepa.export.load import load_models

    model = build.build_model(compose_cfg(tiny_overrides(tmp_path / "unused", cache)))
    groups = build.param_groups(model, 4.0)
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        owners = {names[id(p)].split(".")[0] for p in g["params"]}
        assert owners == ({"predictor"} if g["lr_scale"] == 4.0 else owners - {"predictor"}), owners
        assert g["apply_wd"] == ("weight_decay" not in g)
    assert len(build.param_groups(model)) == 2 and len(groups) == 4
    with pytest.raises(ValueError, match="predictor_lr_scale"):
        build.param_groups(model, 0.0)

    models = {}
    for scale in (1.0, 4.0):
        run = tmp_path / f"scale_{scale}"
        train(compose_cfg(tiny_overrides(run, cache, steps=1) + [f"optim.predictor_lr_scale={scale}"]))
        models[scale] = load_models(run)
    for (key, x), y in zip(models[1.0].encoder.state_dict().items(), models[4.0].encoder.state_dict().values()):
        assert torch.equal(x, y), key
    # Decayed matrices move by lr * (Adam step + weight decay) however small their gradient
    # (unused mask tokens get neither).
    pairs = zip(models[1.0].predictor.named_parameters(), models[4.0].predictor.parameters())
    assert all(not torch.equal(x, y) for (name, x), y in pairs if x.ndim >= 2 and "mask_token" not in name)


def test_resume_with_other_predictor_lr_scale_is_refused(tmp_path: Path, cache: Path) -> None:
    """Resuming with another predictor lr scale names the option, for a changed group count
    (1 -> 3) and for a changed scale alone (3 -> 5, which torch would load silently); the
    checkpoint is left as it was."""
    run = tmp_path / "run"
    train(compose_cfg(tiny_overrides(run, cache, steps=1) + ["optim.predictor_lr_scale=3"]))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file())
    for scale in (1, 5):
        cfg = compose_cfg(tiny_overrides(run, cache, steps=2) + [f"optim.predictor_lr_scale={scale}"])
        with pytest.raises(ValueError, match="predictor_lr_scale it was trained"):
            train(cfg)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()) == before
    train(compose_cfg(tiny_overrides(run, cache, steps=2) + ["optim.predictor_lr_scale=3"]))


def test_resume_from_a_damaged_save_is_refused_with_the_way_back(tmp_path: Path, cache: Path) -> None:
    """The latest save's train state truncated on disk: resuming names the file and the older
    save to use, changes nothing in the run, and resumes from that save once the damaged one is
    moved away."""
    run = tmp_path / "run"
    train(compose_cfg(tiny_overrides(run, cache, steps=4)))
    latest = find_latest(run)
    assert latest is not None and latest.name == "step_00000004"
    state = latest / "train_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    before = sorted((str(p), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file())
    with pytest.raises(CheckpointMismatchError, match=r"(?s)train_state\.pt \(100 bytes\).*resume from step_00000002"):
        train(compose_cfg(tiny_overrides(run, cache, steps=6)))
    assert sorted((str(p), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()) == before
    latest.rename(tmp_path / "damaged")
    train(compose_cfg(tiny_overrides(run, cache, steps=6)))
    steps = [r["step"] for r in read_metrics(run) if "loss" in r]
    assert steps == list(range(6)) and find_latest(run).name == "step_00000006"


def test_lr_follows_the_global_batch_from_its_reference() -> None:
    from jepa.train.trainer import lr_batch_scale, optimizer_schedules

    cfg = compose_cfg(["data.batch_size=24"])  # the demo's lrs are for a global batch of 8
    assert cfg.optim.lr_reference_batch == 8
    assert lr_batch_scale(cfg, world=1) == pytest.approx(3**0.5)
    assert lr_batch_scale(cfg, world=2) == pytest.approx(6**0.5)
    lr, _, _ = optimizer_schedules(cfg, world=1)
    assert lr(cfg.optim.warmup_steps) == pytest.approx(cfg.optim.lr * 3**0.5)
    assert lr_batch_scale(compose_cfg(["data.batch_size=8"]), world=1) == 1.0
    assert lr_batch_scale(compose_cfg(["experiment=vitl16_pretrain"]), world=4) == 1.0  # released: as given
