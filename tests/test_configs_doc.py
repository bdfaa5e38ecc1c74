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
    "data": config.DataConfig,
    "data.datasets[]": config.DatasetConfig,
    "data.synthetic": config.SyntheticConfig,
    "mask": config.MaskConfig,
    "mask.configs[]": config.MaskBlockConfig,
    "optim": config.OptimConfig,
    "trainer": config.TrainerConfig,
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
        f.name for f in dataclasses.fields(cls) if f.name not in {"model", "data", "mask", "optim", "trainer", "launch"}
    }


def test_every_schema_field_is_documented_and_nothing_else() -> None:
    docs = documented_keys()
    assert set(docs) == set(SECTIONS), f"sections in docs/configs.md: {sorted(docs)}"
    for section, cls in SECTIONS.items():
        missing, extra = schema_keys(cls) - docs[section], docs[section] - schema_keys(cls)
        assert not missing, f"{section}: {sorted(missing)} are in {cls.__name__} but not documented"
        assert not extra, f"{section}: {sorted(extra)} are documented but {cls.__name__} has no such field"
