"""Parity with HF transformers `VJEPA2ForVideoClassification`: the same random weights give the
same logits through our encoder + AttentiveClassifier; a directory transformers saves loads as
our encoder and probe (class names included), ours -> HF -> ours is bit-exact, and a probe HF
cannot hold is refused by name."""

from pathlib import Path

import pytest
import torch
from tool_module import load_tool

from jepa.eval.probe import AttentiveClassifier, load_probe, save_probe
from jepa.export.hf import hf_config
from jepa.export.hf_classifier import probe_from_hf, probe_to_hf, save_hf_classifier
from jepa.export.load import load_encoder
from jepa.export.state import CheckpointMismatchError
from jepa.export.writers import export_encoder
from jepa.models.vit import VisionTransformer

transformers = pytest.importorskip("transformers")

TOL = 1e-4
ARCH = dict(img_size=32, patch_size=8, num_frames=4, tubelet_size=2)
LABELS = ["push", "pull", "lift"]


def _noisy(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():  # non-trivial norms and biases, so a swapped name cannot hide
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module.eval()


def _ours() -> tuple[VisionTransformer, AttentiveClassifier]:
    enc = _noisy(VisionTransformer(**ARCH, embed_dim=64, depth=2, num_heads=4))
    probe = _noisy(AttentiveClassifier(64, 3, num_heads=4, depth=2, labels=LABELS))
    return enc, probe


def _clip() -> torch.Tensor:
    return torch.randn(2, 3, 4, 32, 32)


@torch.no_grad()
def test_exported_classifier_gives_our_logits_in_transformers(tmp_path: Path) -> None:
    enc, probe = _ours()
    save_hf_classifier(tmp_path / "hf", enc.state_dict(), enc.config, probe)
    hf = transformers.VJEPA2ForVideoClassification.from_pretrained(tmp_path / "hf").eval()
    clip = _clip()
    theirs = hf(pixel_values_videos=clip.permute(0, 2, 1, 3, 4)).logits  # HF takes (B, T, C, H, W)
    ours = probe(enc(clip))
    assert ours.shape == theirs.shape == (2, 3)
    assert (ours - theirs).abs().max().item() <= TOL
    assert hf.config.id2label == {0: "push", 1: "pull", 2: "lift"}


@torch.no_grad()
def test_a_classifier_saved_by_transformers_loads_as_encoder_and_probe(tmp_path: Path) -> None:
    enc, _ = _ours()
    cfg = {k: v for k, v in hf_config(enc.config).items() if k not in ("model_type", "architectures")}
    config = transformers.VJEPA2Config(
        **cfg, num_pooler_layers=2, id2label={0: "a", 1: "b", 2: "c", 3: "d"}, label2id={"a": 0, "b": 1, "c": 2, "d": 3}
    )
    hf = _noisy(transformers.VJEPA2ForVideoClassification(config))
    hf.save_pretrained(tmp_path / "by_hf")
    encoder, probe = load_encoder(tmp_path / "by_hf"), load_probe(tmp_path / "by_hf")
    assert probe.config["labels"] == ["a", "b", "c", "d"] and probe.config["depth"] == 2
    clip = _clip()
    theirs = hf(pixel_values_videos=clip.permute(0, 2, 1, 3, 4)).logits
    assert (probe(encoder(clip)) - theirs).abs().max().item() <= TOL
    # Our probe format keeps the class names too.
    save_probe(probe, tmp_path / "ours")
    assert load_probe(tmp_path / "ours").config["labels"] == ["a", "b", "c", "d"]


def test_round_trip_ours_hf_ours_is_exact() -> None:
    _, probe = _ours()
    state = probe.state_dict()
    hf_state = probe_to_hf(state)
    assert "pooler.cross_attention_layer.cross_attn.k_proj.weight" in hf_state and "classifier.bias" in hf_state
    back = probe_from_hf(hf_state)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_probes_hf_cannot_hold_are_refused(tmp_path: Path) -> None:
    enc, _ = _ours()
    for probe, what in (
        (AttentiveClassifier(64, 3, num_heads=8, depth=1), "num_heads: 8, needs 4"),
        (AttentiveClassifier(64, 3, num_heads=4, depth=1, num_queries=2), "num_queries: 2, needs 1"),
    ):
        with pytest.raises(CheckpointMismatchError, match=what):
            save_hf_classifier(tmp_path / "x", enc.state_dict(), enc.config, probe)
    with pytest.raises(ValueError, match="2 labels for 3 classes"):
        AttentiveClassifier(64, 3, labels=["a", "b"])
    with pytest.raises(CheckpointMismatchError, match="no pooler"):
        probe_from_hf({"vjepa2.encoder.layernorm.weight": torch.ones(64)})


@torch.no_grad()
def test_export_tool_writes_a_probe_as_the_hf_head(tmp_path: Path) -> None:
    enc, probe = _ours()
    export_encoder(enc, tmp_path / "enc")
    save_probe(probe, tmp_path / "probe")
    load_tool("export").main(
        [str(tmp_path / "enc"), str(tmp_path / "cls"), "--format", "hf", "--probe", str(tmp_path / "probe")]
    )
    hf = transformers.VJEPA2ForVideoClassification.from_pretrained(tmp_path / "cls").eval()
    clip = _clip()
    assert (hf(pixel_values_videos=clip.permute(0, 2, 1, 3, 4)).logits - probe(enc(clip))).abs().max().item() <= TOL
    with pytest.raises(ValueError, match="only in the hf format"):
        export_encoder(enc, tmp_path / "x", "jepa", probe=probe)
