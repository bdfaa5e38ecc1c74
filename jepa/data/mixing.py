"""Weighted mixing of several datasets into one stream of draws.

Each draw picks a dataset with probability proportional to its weight and an entry of it
uniformly, both from a generator seeded by (seed, sample_id): sampling with replacement, as
the released recipe's weighted sampler does, and independent of worker or rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from jepa.data.dataset import sample_key
from jepa.data.threads import check_threads, load_many


class MixedDataset(Dataset):
    """Draws from `datasets` with probabilities `weights` (normalised; need not sum to 1).

    Keys are a sample_id or a (sample_id, index) pair; the index part is ignored because the
    entry is drawn from the seeds. Sub-datasets are indexed with (sample_id, entry) pairs, so
    their own augmentation stays a function of the sample_id. Items gain a "dataset" field.
    `len()` is the total number of entries (what one "epoch" of a StreamSampler covers).
    `decode_threads` loads a batch's items on that many threads, as VideoDataset's does.
    """

    def __init__(
        self, datasets: Sequence[Dataset], weights: Sequence[float], seed: int = 0, decode_threads: int = 1
    ) -> None:
        if not datasets:
            raise ValueError("MixedDataset needs at least one dataset")
        if len(weights) != len(datasets):
            raise ValueError(f"{len(datasets)} datasets but {len(weights)} weights")
        w = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
        sizes = [len(d) for d in datasets]
        if any(size == 0 for size, weight in zip(sizes, w) if weight > 0):
            raise ValueError(f"a dataset with positive weight is empty (sizes {sizes})")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.datasets = list(datasets)
        self.weights = w / w.sum()
        self.seed = int(seed)
        self.decode_threads = check_threads(decode_threads)
        self._sizes = sizes
        self._cumulative = np.cumsum(self.weights)

    def __len__(self) -> int:
        return sum(self._sizes)

    def choose(self, sample_id: int) -> tuple[int, int]:
        """(dataset number, entry index) for a draw."""
        rng = np.random.default_rng([self.seed, sample_id])
        which = int(np.searchsorted(self._cumulative, rng.random() * self._cumulative[-1], side="right"))
        which = min(which, len(self.datasets) - 1)
        while self.weights[which] == 0:
            which -= 1
        return which, int(rng.integers(self._sizes[which]))

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[dict[str, Any]]:
        """A batch's items on `decode_threads` threads; parts with a `draw` / `complete` split
        (VideoDataset) decode there and transform on this thread."""
        items = []
        for which, drawn in load_many(self._draw, keys, self.decode_threads):
            part = self.datasets[which]
            item = part.complete(drawn) if hasattr(part, "draw") else drawn
            item["dataset"] = which
            items.append(item)
        return items

    def _draw(self, key: int | tuple[int, int]) -> tuple[int, Any]:
        sample_id, _ = sample_key(key, len(self))
        which, index = self.choose(sample_id)
        part = self.datasets[which]
        return which, part.draw((sample_id, index)) if hasattr(part, "draw") else part[(sample_id, index)]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        return self.__getitems__([key])[0]

    @property
    def num_failures(self) -> int:
        """Unreadable-file events in this process, over all sub-datasets."""
        return sum(getattr(d, "num_failures", 0) for d in self.datasets)

    @property
    def bad_paths(self) -> set[str]:
        """Unreadable files met in this process, over all sub-datasets."""
        return set().union(*(getattr(d, "bad_paths", set()) for d in self.datasets))
