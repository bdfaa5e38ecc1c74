"""docs/configs.md documents the schema exactly: every field of every config group has a row,
and no row names a key the schema lacks (so the docs and jepa/train/config.py cannot drift)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from jepa.train import config

DOC = Path(__file__).resolve().parents[1] / "docs" / "configs.md"
SECTIONS = {
    "top level": config.JepaConfig,
    "model": config.ModelConfig,
    "model.encoder": config.EncoderSection,
    "model.predictor": config.PredictorSection,
    "data": config.DataConfig,
    "data.datasets[]": config.DatasetConfig,
    "data.synthetic": config.SyntheticConfig,
    "mask": config.MaskConfig,
    "mask.configs[]": config.MaskBlockConfig,
    "optim": config.OptimConfig,
    "trainer": config.TrainerConfig,
    "trainer.online_probe": config.OnlineProbeConfig,
    "launch": config.LaunchConfig,
}


def documented_keys() -> dict[str, set[str]]:
    """The backticked names in the first column of each `### section` table of the keys."""
    keys: dict[str, set[str]] = {}
    section = None
    for line in DOC.read_text().splitlines():
        if line.startswith("### "):
            section = line[4:].strip()
            keys.setdefault(section, set())
        elif line.startswith("## "):
            section = None
        elif section and line.startswith("| ") and not line.startswith("| key") and not line.startswith("|---"):
            keys[section] |= set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", line.split("|")[1]))
    return keys


def schema_keys(cls: type) -> set[str]:
    """Fields of a group; nested groups have sections of their own."""
    return {
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in {"model", "data", "mask", "optim", "trainer", "launch", "online_probe"}
    }


def test_every_schema_field_is_documented_and_nothing_else() -> None:
    docs = documented_keys()
    assert set(docs) == set(SECTIONS), f"sections in docs/configs.md: {sorted(docs)}"
    for section, cls in SECTIONS.items():
        missing, extra = schema_keys(cls) - docs[section], docs[section] - schema_keys(cls)
        assert not missing, f"{section}: {sorted(missing)} are in {cls.__name__} but not documented"
        assert not extra, f"{section}: {sorted(extra)} are documented but {cls.__name__} has no such field"


def test_the_mask_schema_mirrors_the_mask_config() -> None:
    """The Hydra schema of a mask config has MaskConfig's fields and defaults (lists for tuples),
    so `build.mask_specs` hands the schema's values to MaskConfig unchanged."""
    from jepa.masks.multiblock import MaskConfig

    def defaults(cls: type) -> dict:
        out = {}
        for f in dataclasses.fields(cls):
            value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            out[f.name] = tuple(value) if isinstance(value, list) else value
        return out

    schema, spec = defaults(config.MaskBlockConfig), defaults(MaskConfig)
    assert set(schema) == set(spec)
    assert {k: v for k, v in schema.items() if spec[k] is not dataclasses.MISSING} == {
        k: v for k, v in spec.items() if v is not dataclasses.MISSING
    }
