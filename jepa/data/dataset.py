"""A map-style dataset of clips whose randomness is a pure function of (seed, sample_id).

Clip start, crop and flip of a draw come from generators seeded with (seed, sample_id,
attempt), never from process-global state, so a sample is the same whichever worker or rank
loads it and a resumed run sees exactly the samples it would have seen.

A file that cannot be read (corrupt, truncated, empty, missing) never stops training: it is
logged once per process, counted, and the draw moves to another entry chosen from the same
seeds, so the replacement is deterministic too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from jepa.data.clips import ClipSampler, ShortVideoError
from jepa.data.image import ImageDecodeError, load_image
from jepa.data.manifest import ManifestEntry, is_image_path
from jepa.data.threads import check_threads, load_many
from jepa.data.video import Backend, VideoDecodeError, gather_clips, open_video

logger = logging.getLogger(__name__)

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

# Guards the failure bookkeeping, which the threads of one batch (decode_threads) share.
_bookkeeping = threading.Lock()


@dataclass
class Decoded:
    """A draw's frames before the transform, with the generator the transform is to use.

    Decoding runs on loader threads and the transform on the calling thread: torch ops on
    several threads of a process slowed the training step computing in it (docs/data.md).
    """

    frames: torch.Tensor  # uint8 (num_clips, T, H, W, C); an image: (1, H, W, C)
    clip_indices: torch.Tensor | None  # None for an image
    generator: torch.Generator


def sample_key(key: int | tuple[int, int], length: int) -> tuple[int, int]:
    """(sample_id, index) from an int (a plain DataLoader index) or a (sample_id, index) pair."""
    if isinstance(key, tuple):
        if len(key) != 2:
            raise TypeError(f"a key tuple is (sample_id, index), got {key!r}")
        sample_id, index = int(key[0]), int(key[1])
    else:
        sample_id = int(key)
        index = sample_id % length
    if sample_id < 0 or not 0 <= index < length:
        raise IndexError(f"sample_id must be >= 0 and index in [0, {length}), got {(sample_id, index)}")
    return sample_id, index


class VideoDataset(Dataset):
    """Clips from video files and still images listed by manifest entries.

    Item: {"video": uint8 (num_clips, T, size, size, C), "label": int (-1 when none),
    "index": entry actually used, "sample_id", "clip_indices": int64 (num_clips, T),
    "num_failed": unreadable files met by this draw, "num_skipped": too-short videos met}.

    Images become clips by repeating the frame `image_frames` times (default: the clip length).
    `decode_short_side="auto"` asks the transform how small frames may be decoded
    (`min_source_short_side`); an int fixes it; None always decodes at full size.
    `decode_threads` > 1 decodes the items of a batch (`__getitems__`, which DataLoader calls)
    on that many threads of the process (jepa.data.threads); items do not change.
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        sampler: ClipSampler,
        transform: Transform | None = None,
        backend: Backend = "auto",
        seed: int = 0,
        max_retries: int = 20,
        image_frames: int | None = None,
        decode_short_side: int | Literal["auto"] | None = "auto",
        decode_threads: int = 1,
    ) -> None:
        if not entries:
            raise ValueError("VideoDataset needs at least one entry")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if image_frames is not None and image_frames < 1:
            raise ValueError(f"image_frames must be >= 1, got {image_frames}")
        self.entries = list(entries)
        self.sampler = sampler
        self.transform = transform
        self.backend = backend
        self.seed = int(seed)
        self.max_retries = int(max_retries)
        self.image_frames = image_frames or sampler.frames_per_clip
        if decode_short_side == "auto":
            decode_short_side = getattr(transform, "min_source_short_side", None)
        self.decode_short_side = decode_short_side
        self.decode_threads = check_threads(decode_threads)
        self.num_failures = 0
        self.bad_paths: set[str] = set()
        self.num_skipped_short = 0
        self.short_paths: set[str] = set()

    def __len__(self) -> int:
        return len(self.entries)

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[dict[str, Any]]:
        """A batch's items: decoded on `decode_threads` threads, transformed on this one."""
        return [self.complete(drawn) for drawn in load_many(self.draw, keys, self.decode_threads)]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        return self.complete(self.draw(key))

    def draw(self, key: int | tuple[int, int]) -> tuple[Decoded, dict[str, Any]]:
        """Decode a draw, moving past unusable files: its frames before the transform and the
        item's other fields. The half of an item that threads share (no torch ops)."""
        sample_id, index = sample_key(key, len(self.entries))
        failed = skipped = 0
        for attempt in range(self.max_retries + 1):
            entry = self.entries[index]
            if entry.path in self.bad_paths:
                failed += 1
                with _bookkeeping:
                    self.num_failures += 1
            elif entry.path in self.short_paths:
                skipped += 1
            else:
                try:
                    decoded = self.decode(entry, sample_id, attempt)
                except (VideoDecodeError, ImageDecodeError) as err:
                    failed += 1
                    with _bookkeeping:
                        self.num_failures += 1
                        first = entry.path not in self.bad_paths
                        self.bad_paths.add(entry.path)
                    if first:
                        logger.warning("skipping unreadable file (reported once): %s", err)
                except ShortVideoError as err:
                    skipped += 1
                    with _bookkeeping:
                        self.num_skipped_short += 1
                        self.short_paths.add(entry.path)
                    logger.info("skipping short video %s: %s", entry.path, err)
                else:
                    return decoded, {
                        "label": -1 if entry.label is None else int(entry.label),
                        "index": index,
                        "sample_id": sample_id,
                        "num_failed": failed,
                        "num_skipped": skipped,
                    }
            index = int(np.random.default_rng([self.seed, sample_id, attempt, 1]).integers(len(self.entries)))
        raise RuntimeError(
            f"sample {sample_id}: {self.max_retries + 1} entries in a row could not be used "
            f"({failed} unreadable, {skipped} too short); last tried {entry.path}"
        )

    def complete(self, drawn: tuple[Decoded, dict[str, Any]]) -> dict[str, Any]:
        """The item of a `draw`: its frames transformed."""
        decoded, fields = drawn
        video, clip_indices = self.finish(decoded)
        return {"video": video, "clip_indices": clip_indices, **fields}

    def decode(self, entry: ManifestEntry, sample_id: int, attempt: int = 0) -> Decoded:
        """The frames of one entry for a draw, untransformed; raises the decode errors."""
        rng = np.random.default_rng([self.seed, sample_id, attempt])
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        if is_image_path(entry.path):
            frame = torch.from_numpy(load_image(entry.path, self.decode_short_side))[None]
            return Decoded(frame, None, generator)
        reader = open_video(entry.path, self.backend)
        try:
            try:
                indices = self.sampler.sample(reader.num_frames, reader.fps, rng)
            except ShortVideoError:
                raise
            except ValueError as err:
                raise VideoDecodeError(f"{entry.path}: {err}") from err
            frames = gather_clips(reader, indices, self.decode_short_side)
        finally:
            reader.close()
        return Decoded(torch.from_numpy(frames), torch.from_numpy(indices), generator)

    def finish(self, decoded: Decoded) -> tuple[torch.Tensor, torch.Tensor]:
        """(video, clip_indices) of decoded frames: the transform, and images made into clips."""
        video = decoded.frames
        if self.transform is not None:
            video = self.transform(video, decoded.generator)
        if decoded.clip_indices is not None:
            return video, decoded.clip_indices
        shape = (self.sampler.num_clips, self.image_frames)
        return video.expand(*shape, *video.shape[1:]).contiguous(), torch.zeros(shape, dtype=torch.int64)

    def __repr__(self) -> str:
        return (
            f"VideoDataset({len(self.entries)} entries, {self.sampler}, transform={self.transform}, "
            f"backend={self.backend!r}, seed={self.seed})"
        )
