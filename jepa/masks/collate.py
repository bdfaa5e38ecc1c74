"""Collate samples into a batch and attach multiblock masks that do not depend on the worker.

Each DataLoader worker holds its own copy of the collate function, so a collator that keeps a
random generator as state would hand identical masks to the batches of different workers (the
release avoids this with a counter shared between processes). Here the masks of a batch are a
pure function of ``seed`` and the batch's ``sample_id`` values (each sample's position in the
global sampling stream), so they are the same whichever worker, process or resume builds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

from jepa.masks.multiblock import MaskConfig, MaskSampler

MASK_KEYS = ("masks_ctx", "masks_tgt")


def _sample_id(sample: Any, position: int) -> int:
    if not isinstance(sample, Mapping):
        raise ValueError(f"MaskCollator needs dict samples; sample {position} is a {type(sample).__name__}")
    if "sample_id" not in sample:
        raise ValueError(
            f"sample {position} has no 'sample_id'; the dataset must give each sample its integer "
            "position in the sampling stream so masks are reproducible across workers"
        )
    value = sample["sample_id"]
    if torch.is_tensor(value) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"sample {position} has a non-integer sample_id {value!r}")
    return int(value.__index__())


def batch_seed(seed: int, sample_ids: Sequence[int]) -> int:
    """A 63-bit seed from the run seed and the ordered sample ids (stable across processes)."""
    digest = hashlib.blake2b(repr((int(seed), tuple(sample_ids))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class MaskCollator:
    """``default_collate`` plus one (context, target) index pair per mask config.

    The returned dict holds the collated sample keys and ``masks_ctx`` / ``masks_tgt``: lists
    (one entry per config) of int64 tensors of shape (B, K).
    """

    def __init__(self, configs: Sequence[MaskConfig], grid: Sequence[int], seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.sampler = MaskSampler(configs, grid)
        self.seed = seed

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if len(samples) == 0:
            raise ValueError("cannot collate an empty batch")
        ids = [_sample_id(sample, i) for i, sample in enumerate(samples)]
        for key in MASK_KEYS:
            if key in samples[0]:
                raise ValueError(f"samples already carry a {key!r} key, which the collator writes")
        generator = torch.Generator().manual_seed(batch_seed(self.seed, ids))
        contexts, targets = self.sampler(len(samples), generator)
        batch = default_collate(list(samples))
        batch["masks_ctx"] = contexts
        batch["masks_tgt"] = targets
        return batch
