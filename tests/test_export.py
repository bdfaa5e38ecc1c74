"""Loading from our training runs, the exported format (readable without training code or Hydra),
the export tool in all formats, and the torch.hub entry points."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import jepa
from jepa.eval.probe import AttentiveClassifier
from jepa.export.state import CheckpointMismatchError
from jepa.export.training import read_training
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer
from jepa.train.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
MODEL_CFG = dict(
    name="vit_tiny", predictor_name="vjepa2",
    encoder=dict(img_size=32, num_frames=4, patch_size=8, tubelet_size=2, pos_embed="rope", rope_layout="released"),
    predictor=dict(depth=2, predictor_embed_dim=48, num_heads=4, num_mask_tokens=2),
)  # fmt: skip
# The same model in the flat `model:` layout of run configs written before the Args sections.
FLAT_MODEL_CFG = dict(
    name="vit_tiny", img_size=32, num_frames=4, patch_size=8, tubelet_size=2, pos_embed="rope",
    rope_layout="released", pred_depth=2, pred_embed_dim=48, pred_num_heads=4, num_mask_tokens=2,
    zero_init_mask_tokens=True, drop_path_rate=0.0, activation_checkpointing=False, per_config_mask_tokens=False,
    pred_levels=[],
)  # fmt: skip


def _tool(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.nn.Module]]:
    """A run directory as training writes it, with distinct encoder / target / predictor weights."""
    from jepa.train.build import build_encoder, build_predictor
    from jepa.train.config import ModelConfig

    torch.manual_seed(0)
    model_cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), MODEL_CFG)
    cfg = OmegaConf.create({"name": "t", "seed": 0, "model": model_cfg})
    models = {"encoder": build_encoder(cfg.model), "target_encoder": build_encoder(cfg.model)}
    models["predictor"] = build_predictor(cfg.model, models["encoder"])
    with torch.no_grad():
        for p in models["predictor"].mask_tokens:
            p.normal_()
    run_dir = tmp_path_factory.mktemp("run")
    save_checkpoint(run_dir, 5, models, {"step": 5}, OmegaConf.to_yaml(cfg))
    return run_dir, {k: m.eval() for k, m in models.items()}


def test_a_run_config_in_the_flat_layout_loads_the_same_models(
    run: tuple[Path, dict[str, torch.nn.Module]], tmp_path: Path
) -> None:
    run_dir, _ = run
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    flat = OmegaConf.to_yaml(OmegaConf.create({"name": "t", "seed": 0, "model": FLAT_MODEL_CFG}))
    for config in old.rglob("config.yaml"):
        config.write_text(flat)
    new, upgraded = read_training(run_dir), read_training(old)
    assert (upgraded.encoder_args, upgraded.predictor_args) == (new.encoder_args, new.predictor_args)


@torch.no_grad()
def test_load_from_run_dir_and_checkpoint_dir(run: tuple[Path, dict[str, torch.nn.Module]]) -> None:
    run_dir, models = run
    clip = torch.randn(2, 3, 4, 32, 32)
    target = jepa.load_encoder(run_dir)
    assert isinstance(target, VisionTransformer) and not target.training
    assert torch.equal(target(clip), models["target_encoder"](clip))
    context = jepa.load_encoder(run_dir / "checkpoints" / "step_00000005", which="encoder")
    assert torch.equal(context(clip), models["encoder"](clip))
    pred = jepa.load_predictor(run_dir)
    assert isinstance(pred, VisionTransformerPredictor)
    assert all(torch.equal(pred.state_dict()[k], v) for k, v in models["predictor"].state_dict().items())
    everything = jepa.load_models(run_dir)
    assert everything.format == "training" and None not in (everything.encoder, everything.predictor)


def test_run_dir_without_checkpoint_and_unknown_dir(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="without a complete checkpoint"):
        jepa.load_encoder(tmp_path)
    (tmp_path / "other").mkdir()
    with pytest.raises(CheckpointMismatchError, match="not a jepa run"):
        jepa.load_encoder(tmp_path / "other")
    with pytest.raises(ValueError, match="which must be"):
        jepa.load_encoder(tmp_path, which="teacher")


_NO_TRAINING_CODE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('hydra', 'omegaconf', 'accelerate') or name.startswith('jepa.train'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import torch, jepa
enc = jepa.load_encoder(sys.argv[1])
torch.manual_seed(0)
print(float(enc(torch.randn(1, 3, 4, 32, 32)).sum()))
"""


@torch.no_grad()
def test_export_tool_jepa_format_loads_without_training_code(
    run: tuple[Path, dict[str, torch.nn.Module]], tmp_path: Path
) -> None:
    run_dir, models = run
    out = tmp_path / "exported"
    assert _tool("export").main([str(run_dir), str(out), "--predictor"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "jepa-export" and config["meta"]["role"] == "target_encoder"
    assert config["encoder"]["use_activation_checkpointing"] is False
    clip = torch.randn(2, 3, 4, 32, 32)
    assert torch.equal(jepa.load_encoder(out)(clip), models["target_encoder"](clip))
    assert torch.equal(jepa.load_encoder(out / "model.safetensors")(clip), models["target_encoder"](clip))
    pred = jepa.load_predictor(out)
    assert all(torch.equal(pred.state_dict()[k], v) for k, v in models["predictor"].state_dict().items())

    proc = subprocess.run([sys.executable, "-c", _NO_TRAINING_CODE, str(out)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    torch.manual_seed(0)
    assert abs(float(proc.stdout) - float(models["target_encoder"](torch.randn(1, 3, 4, 32, 32)).sum())) < 1e-3

    config["encoder"]["depth"] = 13
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match=r"missing in checkpoint \(12\)"):
        jepa.load_encoder(out)


@torch.no_grad()
def test_export_pt2_program_has_free_batch(tmp_path: Path) -> None:
    encoder = VisionTransformer(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=1, num_heads=2).eval()
    source = jepa.export_encoder(encoder, tmp_path / "small")
    assert _tool("export").main([str(source), str(tmp_path / "enc.pt2"), "--format", "pt2"]) == 0
    program = torch.export.load(str(tmp_path / "enc.pt2")).module()
    clip = torch.randn(3, 3, 4, 32, 32)
    assert (program(clip) - encoder(clip)).abs().max().item() < 1e-5


@torch.no_grad()
def test_hub_entries_build_and_load_local_file_and_url(
    run: tuple[Path, dict[str, torch.nn.Module]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, models = run
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # URL downloads are cached under $TORCH_HOME/hub
    official = tmp_path / "tiny.pt"
    state = {"module.backbone." + k: v for k, v in models["target_encoder"].state_dict().items()}
    torch.save({"target_encoder": state}, official)
    clip = torch.randn(1, 3, 4, 32, 32)
    expected = models["target_encoder"](clip)
    fresh = torch.hub.load(str(REPO), "vit_tiny", source="local", img_size=32, num_frames=4, patch_size=8)
    assert isinstance(fresh, VisionTransformer) and fresh.embed_dim == 192
    from_url = torch.hub.load(str(REPO), "vit_tiny", source="local", pretrained=official.as_uri(), patch_size=8)
    assert torch.equal(from_url(clip), expected)
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "tiny.pt").is_file()
    from_run = torch.hub.load(str(REPO), "encoder", source="local", checkpoint=str(run_dir))
    assert torch.equal(from_run(clip), expected)
    with pytest.raises(ValueError, match="not vit_small"):
        torch.hub.load(str(REPO), "vit_small", source="local", pretrained=str(official))
    probe = AttentiveClassifier(192, 3, num_heads=4, depth=1)
    torch.save({"classifiers": [{f"module.{k}": v for k, v in probe.state_dict().items()}]}, tmp_path / "probe.pt")
    hub_probe = torch.hub.load(
        str(REPO), "probe", source="local", checkpoint=(tmp_path / "probe.pt").as_uri(), num_heads=4
    )
    tokens = expected
    assert torch.equal(hub_probe(tokens), probe.eval()(tokens))


@pytest.mark.parametrize(
    "fmt, name",
    [("training", "model.safetensors"), ("jepa", "model.safetensors"), ("jepa", "config.json"),
     ("hf", "model.safetensors"), ("hf", "config.json")],
)  # fmt: skip
def test_damaged_file_is_named_by_every_reader(
    run: tuple[Path, dict[str, torch.nn.Module]], tmp_path: Path, fmt: str, name: str
) -> None:
    """A file truncated on disk is reported as `CheckpointMismatchError` with its path and size
    (it was a bare SafetensorError, or "not a jepa run" for a damaged config.json)."""
    run_dir, _ = run
    if fmt == "training":
        shutil.copytree(run_dir, tmp_path / "run")
        source, damaged = tmp_path / "run", tmp_path / "run" / "checkpoints" / "step_00000005" / name
    else:
        source = tmp_path / fmt
        assert _tool("export").main([str(run_dir), str(source), "--format", fmt]) == 0
        damaged = source / name
    damaged.write_bytes(damaged.read_bytes()[:20])
    with pytest.raises(CheckpointMismatchError, match=rf"{re.escape(str(damaged))} \(20 bytes\) is not a readable"):
        jepa.load_encoder(source)
