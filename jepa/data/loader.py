"""The pretraining DataLoader: a StreamSampler in batches, workers seeded per (seed, rank, worker).

Samples do not depend on the workers (their randomness is keyed by sample_id); the worker
seeds only matter for randomness drawn inside a worker outside the dataset, such as a mask
collator, which then differs across workers and ranks yet repeats from run to run.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from jepa.data.sampler import StreamSampler


def process_cores(local_world_size: int | None = None) -> int:
    """The cores this process may use: its affinity shared among the processes of this node."""
    if local_world_size is None:
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, local_world_size))


def default_num_workers(local_world_size: int | None = None) -> int:
    """Loader workers per process: the cores this process may use, minus one for the main loop."""
    return max(0, min(16, process_cores(local_world_size) - 1))


def default_decode_threads(num_workers: int, local_world_size: int | None = None) -> int:
    """Threads per loader worker so that workers x threads covers the cores left for loading.

    One core stays with the training loop, so the default workers (cores - 1) get one thread
    each and fewer workers get more. Without workers it is one thread: the main process then
    loads between steps, and on the demo (64 px clips, 3-4% batch wait) two threads gave no
    gain (docs/data.md).
    """
    if num_workers <= 0:
        return 1
    return max(1, (process_cores(local_world_size) - 1) // num_workers)


def seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """worker_init_fn: one torch thread per worker, RNGs seeded from (seed, rank, worker_id)."""
    torch.set_num_threads(1)
    state = np.random.SeedSequence([seed, rank, worker_id]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[1]))
    torch.manual_seed((int(state[0]) << 32) | int(state[1]))


def build_pretrain_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    start_sample: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    shuffle: bool = True,
    pin_memory: bool | None = None,
    prefetch_factor: int = 2,
    persistent_workers: bool = True,
    timeout: float = 0,
) -> DataLoader:
    """An endless loader of batches for this rank.

    `start_sample` is the number of samples all ranks together have consumed (global step x
    global batch size); the stream resumes exactly there. Iterating never ends: the training
    loop decides when to stop. Batches are always full. `timeout` (seconds, 0 = none) makes a
    stuck worker raise instead of hanging the run.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers is None:
        num_workers = default_num_workers()
    sampler = StreamSampler(len(dataset), seed, rank=rank, world_size=world_size, start=start_sample, shuffle=shuffle)
    workers = num_workers > 0
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(sampler, batch_size, drop_last=True),
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        worker_init_fn=functools.partial(seed_worker, seed=seed, rank=rank) if workers else None,
        prefetch_factor=prefetch_factor if workers else None,
        persistent_workers=persistent_workers and workers,
        timeout=timeout if workers else 0,
    )
