"""Masks: 3D multiblock context/target sampling and the collator that attaches them."""

from jepa.masks.collate import MaskCollator, batch_seed
from jepa.masks.multiblock import (
    VJEPA1_DEFAULT,
    VJEPA2_DEFAULT,
    MaskConfig,
    MaskSampler,
    MultiBlockMaskGenerator,
    mask_configs_from_dicts,
    token_grid,
)

__all__ = [
    "MaskCollator",
    "MaskConfig",
    "MaskSampler",
    "MultiBlockMaskGenerator",
    "VJEPA1_DEFAULT",
    "VJEPA2_DEFAULT",
    "batch_seed",
    "mask_configs_from_dicts",
    "token_grid",
]
