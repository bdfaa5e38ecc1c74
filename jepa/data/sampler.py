"""An endless, resumable stream of (sample_id, index) pairs split across ranks.

The global stream is positions 0, 1, 2, ...; position p belongs to epoch p // num_samples
and draws entry perm_epoch[p % num_samples], where perm_epoch is a permutation seeded by
(seed, epoch). Rank r of w reads positions start + r, start + r + w, ... and yields
(sample_id=p, index). Every quantity is a function of p alone, so resuming means passing
start = number of samples all ranks have consumed, and nothing else needs saving.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class StreamSampler(Sampler[tuple[int, int]]):
    """Infinite sampler of (sample_id, index) pairs for one rank; see the module docstring."""

    def __init__(
        self,
        num_samples: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        shuffle: bool = True,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
        if start < 0 or seed < 0:
            raise ValueError(f"start and seed must be >= 0, got start={start} seed={seed}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.start = int(start)
        self.shuffle = shuffle
        self._epoch = -1
        self._perm: np.ndarray | None = None

    def index_at(self, position: int) -> int:
        """Entry index drawn at a global stream position."""
        if not self.shuffle:
            return position % self.num_samples
        epoch = position // self.num_samples
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            self._epoch = epoch
        return int(self._perm[position % self.num_samples])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start + self.rank
        while True:
            yield position, self.index_at(position)
            position += self.world_size

    def state_dict(self) -> dict[str, int]:
        return {"start": self.start, "seed": self.seed, "num_samples": self.num_samples}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a stream; `start` should be the global number of samples already consumed."""
        if state.get("num_samples", self.num_samples) != self.num_samples:
            raise ValueError(
                f"the stream was built for {state['num_samples']} samples, this one has {self.num_samples}"
            )
        self.seed = int(state.get("seed", self.seed))
        self.start = int(state["start"])
