"""The Args dataclasses are the one source of each model's options: registry, Hydra schema,
builders and adapters agree with them, and an option added there reaches every path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_train import compose_cfg, tiny_overrides

import jepa
from jepa.export.formats import save_exported
from jepa.export.hf import hf_config
from jepa.export.official import infer_encoder_args
from jepa.export.state import CheckpointMismatchError
from jepa.models import PREDICTORS, EncoderArgs, PredictorArgs, VisionTransformer, VisionTransformerPredictor
from jepa.models.args import ACPredictorArgs
from jepa.train import build, config
from jepa.world.ac_predictor import AC_PREDICTORS, ACPredictor


def test_args_reject_unknown_names_and_are_frozen() -> None:
    with pytest.raises(ValueError, match=r"no field\(s\) \['dept'\]"):
        EncoderArgs.from_dict({"dept": 3})
    with pytest.raises(ValueError, match="no field"):
        PredictorArgs().replace(width=3)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        EncoderArgs(embed_dim=100, num_heads=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        EncoderArgs().depth = 3  # type: ignore[misc]
    assert EncoderArgs(img_size=32).img_size == (32, 32)
    assert EncoderArgs.from_dict({"img_size": [32, 48]}).img_size == (32, 48)  # as stored in JSON


@pytest.mark.parametrize(
    "make, args_type",
    [(VisionTransformer, EncoderArgs), (VisionTransformerPredictor, PredictorArgs), (ACPredictor, ACPredictorArgs)],
)
def test_model_config_is_its_args(make: type, args_type: type) -> None:
    with torch.device("meta"):
        model = make(depth=1)
    assert model.config == dataclasses.asdict(model.args) and model.args == args_type(depth=1)
    assert args_type.from_dict(model.config) == model.args


def test_one_set_of_predictor_defaults() -> None:
    """The released predictor is the Args default, the registry's `vjepa2` and the constructor's."""
    assert PREDICTORS.args("vjepa2") == PredictorArgs()
    assert (PredictorArgs().predictor_embed_dim, PredictorArgs().depth, PredictorArgs().num_heads) == (384, 12, 12)
    with torch.device("meta"):
        assert VisionTransformerPredictor().args == jepa.models.create_predictor().args
    assert AC_PREDICTORS.args("vjepa2_ac_vitg") == ACPredictorArgs(extrinsics_dim=6)


def test_the_hydra_sections_are_the_settable_fields() -> None:
    for section, args_type in ((config.EncoderSection, EncoderArgs), (config.PredictorSection, PredictorArgs)):
        names = {f.name for f in dataclasses.fields(section)}
        assert names == {f.name for f in args_type.settable_fields()}
    assert "embed_dim" not in {f.name for f in dataclasses.fields(config.PredictorSection)}  # the encoder's


def test_a_new_encoder_option_reaches_config_export_and_loaders(tmp_path: Path) -> None:
    """`qk_norm` was added as one EncoderArgs field plus the adapter lines: it is a Hydra key,
    it is saved and reloaded by our format, official checkpoints reveal it, HF refuses it."""
    cfg = compose_cfg(tiny_overrides(tmp_path / "run", tmp_path / "cache") + ["model.encoder.qk_norm=true"])
    torch.manual_seed(0)
    encoder = build.build_encoder(cfg.model).eval()
    assert encoder.args.qk_norm and "blocks.0.attn.q_norm.weight" in encoder.state_dict()
    with torch.no_grad():
        for block in encoder.blocks:
            block.attn.q_norm.weight.normal_()
    save_exported(tmp_path / "exported", encoder.state_dict(), encoder.args)
    loaded = jepa.load_encoder(tmp_path / "exported")
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(clip), encoder(clip))
    assert infer_encoder_args(encoder.state_dict(), []).qk_norm
    assert not infer_encoder_args(VisionTransformer(depth=1).state_dict(), []).qk_norm
    with pytest.raises(CheckpointMismatchError, match="qk_norm"):
        hf_config(encoder.args)
