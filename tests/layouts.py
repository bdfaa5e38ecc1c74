"""The released checkpoints' parameter names and shapes (tests/data/official_checkpoint_layout.json),
recorded from the official V-JEPA 1 / 2 / 2-AC files so layout tests run from a plain clone."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LAYOUT_FILE = Path(__file__).resolve().parent / "data" / "official_checkpoint_layout.json"


@cache
def official_layout() -> dict:
    """{model: {"non_block_keys", "block_0_keys", "num_keys", "num_blocks"}} as released."""
    return json.loads(LAYOUT_FILE.read_text())
