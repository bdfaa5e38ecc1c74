"""Parity with a real peer: HF transformers `VJEPA2Model` with the same random weights gives the
same encoder features (with and without masks) and predictor outputs; ours -> HF -> ours is
bit-exact; an exported HF directory opens with `VJEPA2Model.from_pretrained`."""

from pathlib import Path

import pytest
import torch

from jepa.export.hf import encoder_to_hf, hf_config, hf_to_ours, predictor_to_hf, read_hf, save_hf
from jepa.export.load import load_encoder, load_predictor
from jepa.export.state import CheckpointMismatchError
from jepa.masks.ops import gather_tokens
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer

transformers = pytest.importorskip("transformers")

TOL = 1e-4
ARCH = dict(img_size=32, patch_size=8, num_frames=4, tubelet_size=2)


def _ours(head_dim_rest: bool = False) -> tuple[VisionTransformer, VisionTransformerPredictor]:
    # embed 64 / 4 heads = head dim 16: 3 RoPE parts of 4 channels and 4 unrotated ones.
    enc = VisionTransformer(**ARCH, embed_dim=64, depth=2, num_heads=4).eval()
    pred = VisionTransformerPredictor(
        **ARCH, embed_dim=64, predictor_embed_dim=48, depth=2, num_heads=4, num_mask_tokens=3,
        zero_init_mask_tokens=False,
    ).eval()  # fmt: skip
    with torch.no_grad():  # non-trivial norms and biases, so a swapped name cannot hide
        for p in (*enc.parameters(), *pred.parameters()):
            p.add_(0.05 * torch.randn_like(p))
    return enc, pred


def _hf(enc: VisionTransformer, pred: VisionTransformerPredictor) -> "transformers.VJEPA2Model":
    cfg = {k: v for k, v in hf_config(enc.config, pred.config).items() if k not in ("model_type", "architectures")}
    model = transformers.VJEPA2Model(transformers.VJEPA2Config(**cfg)).eval()
    state = encoder_to_hf(enc.state_dict()) | predictor_to_hf(pred.state_dict())
    model.load_state_dict(state, strict=True)
    return model


def _masks(batch: int, n: int, k: int) -> torch.Tensor:
    return torch.stack([torch.randperm(n)[:k].sort().values for _ in range(batch)])


@torch.no_grad()
def test_encoder_features_match_hf_without_masks() -> None:
    enc, pred = _ours()
    hf = _hf(enc, pred)
    clip = torch.randn(2, 3, 4, 32, 32)
    ours = enc(clip)
    theirs = hf.get_vision_features(clip.permute(0, 2, 1, 3, 4))  # HF takes (B, T, C, H, W)
    assert ours.shape == theirs.shape == (2, 32, 64)
    assert (ours - theirs).abs().max().item() <= TOL


@torch.no_grad()
def test_encoder_features_match_hf_with_masks() -> None:
    """HF's encoder has no mask argument; its layers take the kept positions (`position_mask`),
    which is how the released encoder runs on context tokens, so drive them directly."""
    enc, pred = _ours()
    hf = _hf(enc, pred)
    clip = torch.randn(2, 3, 4, 32, 32)
    keep = _masks(2, 32, 13)
    ours = enc(clip, masks=keep)
    tokens = gather_tokens(hf.encoder.embeddings(clip.permute(0, 2, 1, 3, 4)), keep)
    for layer in hf.encoder.layer:
        tokens = layer(tokens, position_mask=keep)[0]
    theirs = hf.encoder.layernorm(tokens)
    assert ours.shape == (2, 13, 64)
    assert (ours - theirs).abs().max().item() <= TOL
    # Masked encoding is not a subset of the full one: the check above is not trivially true.
    assert (ours - gather_tokens(enc(clip), keep)).abs().max().item() > 1e-3


@torch.no_grad()
def test_predictor_matches_hf() -> None:
    enc, pred = _ours()
    hf = _hf(enc, pred)
    clip = torch.randn(2, 3, 4, 32, 32)
    ctx, tgt = _masks(2, 32, 20), _masks(2, 32, 9)
    out = hf(clip.permute(0, 2, 1, 3, 4), context_mask=[ctx], target_mask=[tgt])
    theirs = out.predictor_output.last_hidden_state
    feats = enc(clip)
    # HF hard-wires mask token 1; ours takes it as an argument.
    ours = pred(gather_tokens(feats, ctx), ctx, tgt, mask_index=1)
    assert ours.shape == theirs.shape == (2, 9, 64)
    assert (ours - theirs).abs().max().item() <= TOL
    assert (pred(gather_tokens(feats, ctx), ctx, tgt, mask_index=0) - theirs).abs().max().item() > 1e-3


def test_round_trip_ours_hf_ours_is_exact() -> None:
    enc, pred = _ours()
    hf = _hf(enc, pred)
    enc_state, pred_state = hf_to_ours(hf.state_dict())
    for ours, back in ((enc.state_dict(), enc_state), (pred.state_dict(), pred_state)):
        assert set(ours) == set(back)
        assert all(torch.equal(ours[k], back[k]) for k in ours)


@torch.no_grad()
def test_exported_dir_opens_in_transformers_and_loads_back(tmp_path: Path) -> None:
    enc, pred = _ours()
    save_hf(tmp_path / "hf", enc.state_dict(), enc.config, pred.state_dict(), pred.config)
    hf = transformers.VJEPA2Model.from_pretrained(tmp_path / "hf").eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    assert (hf.get_vision_features(clip.permute(0, 2, 1, 3, 4)) - enc(clip)).abs().max().item() <= TOL
    hf.save_pretrained(tmp_path / "saved_by_hf")  # a directory written by transformers itself
    back = load_encoder(tmp_path / "saved_by_hf")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in enc.state_dict().items())
    back_pred = load_predictor(tmp_path / "saved_by_hf")
    assert all(torch.equal(back_pred.state_dict()[k], v) for k, v in pred.state_dict().items())
    assert read_hf(tmp_path / "saved_by_hf").encoder_args.num_heads == 4


def test_v1_and_interleaved_models_refuse_hf_export(tmp_path: Path) -> None:
    v1 = VisionTransformer(**ARCH, embed_dim=48, depth=1, num_heads=4, pos_embed="sincos")
    with pytest.raises(CheckpointMismatchError, match="RoPE"):
        save_hf(tmp_path / "a", v1.state_dict(), v1.config)
    inter = VisionTransformer(**ARCH, embed_dim=48, depth=1, num_heads=4, rope_layout="interleaved")
    with pytest.raises(CheckpointMismatchError, match="released layout"):
        save_hf(tmp_path / "b", inter.state_dict(), inter.config)
