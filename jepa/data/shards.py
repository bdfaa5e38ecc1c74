"""Tar shards of encoded videos (the webdataset layout) as a data source beside manifests.

A shard is a plain, uncompressed tar in which files sharing a basename form one sample:
``000000123.mp4`` (the encoded video, bytes unchanged) and ``000000123.json`` (metadata:
``label``, ``source`` path, manifest ``row``). Any webdataset reader can read them, and these
readers accept webdataset shards written by other tools (a ``.cls`` member is read as the
label). A corpus of millions of clips becomes a few thousand large files: what parallel file
systems and object stores handle well.

Next to each tar, ``<name>.tar.index.json`` records each sample's byte offset and size, so
a sample is one seek + read (uncompressed tars make members addressable; the video inside is
already compressed). Shards without an index are scanned once at start-up.

Two ways to read:

- ``ShardDataset``: random access by sample, a drop-in for the manifest ``VideoDataset``
  (it is one): the same clip for the same (seed, sample_id, file), exact resume, any world
  size, weighted mixing with other sources.
- ``ShardStream``: webdataset-style streaming. Shards are dealt to (rank, loader worker)
  slots and each slot reads its shards front to back, so every process opens only its own
  files and reads them sequentially. Its position is a count of samples per slot, which the
  number of batches a rank has consumed determines; it resumes exactly when the number of
  processes and workers is unchanged.

Members are decoded through a memory-only file (``memfd``) so that the decoders read them
exactly as they read files listed in a manifest.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import io
import itertools
import json
import logging
import os
import re
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from jepa.atomic import atomic_file, write_text_atomic
from jepa.data.clips import ClipSampler
from jepa.data.dataset import Decoded, Transform, VideoDataset
from jepa.data.image import ImageDecodeError
from jepa.data.loader import seed_worker
from jepa.data.manifest import VIDEO_EXTENSIONS, ManifestEntry, is_image_path
from jepa.data.video import Backend, VideoDecodeError

logger = logging.getLogger(__name__)

INDEX_SUFFIX = ".index.json"
INDEX_FORMAT = "jepa-shard-index"
INDEX_VERSION = 1
SHARD_NAME = "shard-{:06d}.tar"


class ShardError(ValueError):
    """A shard path, tar or index that cannot be used."""


@dataclass(frozen=True)
class ShardSample:
    """Where one sample's video lies inside a shard."""

    shard: str
    key: str
    ext: str
    offset: int
    size: int
    label: int | None = None

    @property
    def name(self) -> str:
        """A readable, unique name for logs and the dataset's bad-file set."""
        return f"{self.shard}#{self.key}{self.ext}"


def split_member_name(name: str) -> tuple[str, str]:
    """(key, extension) as webdataset splits them: at the first dot of the base name."""
    head, _, base = name.rpartition("/")
    stem, dot, rest = base.partition(".")
    key = f"{head}/{stem}" if head else stem
    return key, (dot + rest).lower()


def expand_shard_spec(spec: str | os.PathLike) -> list[str]:
    """Shard files named by a folder, glob(s) or webdataset brace ranges, sorted and unique.

    ``/data/k710`` (every ``*.tar`` inside), ``/data/k710/shard-*.tar``,
    ``/data/shard-{000000..000099}.tar``; several specs may be joined with commas.
    """
    found: list[str] = []
    for part in (p.strip() for p in os.fspath(spec).split(",")):
        if not part:
            continue
        for pattern in _expand_braces(part):
            if os.path.isdir(pattern):
                found.extend(glob.glob(os.path.join(pattern, "*.tar")))
            elif glob.has_magic(pattern):
                found.extend(glob.glob(pattern))
            elif os.path.isfile(pattern):
                found.append(pattern)
            else:
                raise ShardError(f"no such shard file or folder: {pattern}")
    shards = sorted({os.path.abspath(p) for p in found if p.endswith(".tar")})
    if not shards:
        raise ShardError(f"{os.fspath(spec)!r} names no .tar shard")
    return shards


def _expand_braces(pattern: str) -> list[str]:
    match = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if match is None:
        return [pattern]
    lo, hi = match.group(1), match.group(2)
    if int(hi) < int(lo):
        raise ShardError(f"descending range in {pattern!r}")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [x for n in range(int(lo), int(hi) + 1) for x in _expand_braces(f"{head}{str(n).zfill(len(lo))}{tail}")]


def _label_from(name: str, data: bytes) -> int | None:
    text = data.decode("utf-8").strip()
    if name.endswith(".cls"):
        return int(text)
    value = json.loads(text).get("label") if text else None
    return None if value is None else int(value)


def scan_shard(path: str | os.PathLike) -> list[ShardSample]:
    """Samples of one tar, in member order, read from its headers (and small label files)."""
    path = os.path.abspath(path)
    samples: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_member_name(member.name)
                entry = samples.setdefault(key, {})
                if ext in VIDEO_EXTENSIONS and "ext" not in entry:
                    entry.update(ext=ext, offset=member.offset_data, size=member.size)
                elif ext in (".json", ".cls"):
                    handle = tar.extractfile(member)
                    entry["label"] = _label_from(ext, handle.read() if handle else b"")
    except tarfile.ReadError as err:
        raise ShardError(
            f"{path}: not an uncompressed tar ({err}); compressed shards cannot be read by offset"
        ) from err
    out = [
        ShardSample(path, key, e["ext"], e["offset"], e["size"], e.get("label"))
        for key, e in samples.items()
        if "ext" in e
    ]
    if len(out) < len(samples):
        logger.warning("%s: %d sample(s) without a video member skipped", path, len(samples) - len(out))
    return out


def index_path(shard: str | os.PathLike) -> Path:
    return Path(os.fspath(shard) + INDEX_SUFFIX)


def write_index(shard: str | os.PathLike, samples: Sequence[ShardSample]) -> Path:
    """Record the samples of a shard beside it (written atomically)."""
    target = index_path(shard)
    body = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "tar_size": os.path.getsize(shard),
        "samples": [[s.key, s.ext, s.offset, s.size, s.label] for s in samples],
    }
    write_text_atomic(target, json.dumps(body))
    return target


def read_shard(path: str | os.PathLike) -> list[ShardSample]:
    """Samples of a shard from its index when it is current, else by scanning the tar."""
    path = os.path.abspath(path)
    idx = index_path(path)
    if idx.is_file():
        body = json.loads(idx.read_text())
        if body.get("format") == INDEX_FORMAT and body.get("tar_size") == os.path.getsize(path):
            return [ShardSample(path, k, e, int(o), int(n), lab) for k, e, o, n, lab in body["samples"]]
        logger.warning("%s: index is stale or unknown, scanning the tar", idx)
    return scan_shard(path)


def read_shards(spec: str | os.PathLike) -> list[list[ShardSample]]:
    """Per shard, its samples; shards without any sample are dropped (with a warning)."""
    shards = [read_shard(p) for p in expand_shard_spec(spec)]
    empty = sum(1 for s in shards if not s)
    if empty:
        logger.warning("%s: %d empty shard(s) ignored", os.fspath(spec), empty)
    shards = [s for s in shards if s]
    if not shards:
        raise ShardError(f"{os.fspath(spec)!r}: no video sample in any shard")
    return shards


def read_member(sample: ShardSample) -> bytes:
    with open(sample.shard, "rb") as f:
        f.seek(sample.offset)
        data = f.read(sample.size)
    if len(data) != sample.size:
        raise VideoDecodeError(f"{sample.name}: shard ends after {len(data)} of {sample.size} bytes (truncated?)")
    return data


@contextlib.contextmanager
def member_file(sample: ShardSample) -> Iterator[str]:
    """A path from which the decoders read a member's bytes, gone when the block exits.

    On Linux an anonymous memory file (no disk, no /dev/shm size limit); elsewhere a
    temporary file with the member's extension.
    """
    data = read_member(sample)
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("jepa-shard-member")
        try:
            with open(fd, "wb", closefd=False) as f:
                f.write(data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(suffix=sample.ext) as f:
        f.write(data)
        f.flush()
        yield f.name


class ShardDataset(VideoDataset):
    """Clips from the videos of tar shards, by random access; see the module docstring.

    Behaves exactly like a ``VideoDataset`` over the same files in the same order: item i is
    the i-th sample over the shards in sorted order, and the clip of (sample_id, i) is the
    one the manifest dataset gives for the same file.
    """

    def __init__(
        self,
        spec: str | os.PathLike,
        sampler: ClipSampler,
        transform: Transform | None = None,
        backend: Backend = "auto",
        seed: int = 0,
        max_retries: int = 20,
        decode_short_side: int | Literal["auto"] | None = "auto",
        decode_threads: int = 1,
    ) -> None:
        self.shards = read_shards(spec)
        self.samples = [s for shard in self.shards for s in shard]
        self._by_name = {s.name: s for s in self.samples}
        entries = [ManifestEntry(s.name, s.label) for s in self.samples]
        super().__init__(
            entries,
            sampler,
            transform,
            backend=backend,
            seed=seed,
            max_retries=max_retries,
            decode_short_side=decode_short_side,
            decode_threads=decode_threads,
        )

    def decode(self, entry: ManifestEntry, sample_id: int, attempt: int = 0) -> Decoded:
        sample = self._by_name[entry.path]
        try:
            with member_file(sample) as path:
                return super().decode(ManifestEntry(path, entry.label), sample_id, attempt)
        except (VideoDecodeError, ImageDecodeError, OSError) as err:
            raise VideoDecodeError(f"{sample.name}: {err}") from err

    def __repr__(self) -> str:
        return f"ShardDataset({len(self.shards)} shards, {len(self.samples)} samples, {self.sampler}, seed={self.seed})"


def _batches_of_worker(batches: int, worker: int, num_workers: int) -> int:
    """Batches worker `worker` has produced when a rank has consumed `batches`.

    A DataLoader over an endless IterableDataset takes batch k from worker k % num_workers.
    """
    return max(0, (batches - worker + num_workers - 1) // num_workers)


class ShardStream(IterableDataset):
    """Endless webdataset-style stream of a ShardDataset's samples for one rank.

    Shard visits are numbered q = 0, 1, 2, ...: visit q reads shard perm_e[q mod M] of epoch
    e = q // M (M shards, perm_e seeded by (seed, e)), every sample in stored order. Slot s
    of S = world_size x workers takes visits s, s + S, s + 2S, ...: across all slots each
    epoch reads each shard once, even when there are more slots than shards. Sample i of
    epoch e gets sample_id e * N + i (N samples), so augmentations differ between epochs.
    """

    def __init__(
        self,
        dataset: ShardDataset,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
        start_batch: int = 0,
        shuffle: bool = True,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
        if batch_size < 1 or start_batch < 0 or seed < 0:
            raise ValueError(
                f"need batch_size >= 1, start_batch >= 0, seed >= 0, got {batch_size}, {start_batch}, {seed}"
            )
        self.dataset = dataset
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.batch_size, self.start_batch, self.shuffle = int(batch_size), int(start_batch), shuffle
        sizes = [len(s) for s in dataset.shards]
        self._first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._sizes = np.asarray(sizes, dtype=np.int64)
        self._epoch_perm: tuple[int, np.ndarray] | None = None

    def _perm(self, epoch: int) -> np.ndarray:
        """Shard order of an epoch (the last one is kept: a slot moves through epochs in order)."""
        if self._epoch_perm is None or self._epoch_perm[0] != epoch:
            m = len(self._sizes)
            perm = np.random.default_rng([self.seed, epoch]).permutation(m) if self.shuffle else np.arange(m)
            self._epoch_perm = (epoch, perm)
        return self._epoch_perm[1]

    def slot_order(self, slot: int, num_slots: int, skip: int = 0) -> Iterator[tuple[int, int]]:
        """(sample_id, index) pairs of one slot, endless, after its first `skip` samples."""
        m, n = len(self._sizes), int(self._sizes.sum())
        visit = slot
        while True:
            epoch = visit // m
            shard = int(self._perm(epoch)[visit % m])
            size = int(self._sizes[shard])
            if skip >= size:
                skip -= size
            else:
                for j in range(skip, size):
                    index = int(self._first[shard]) + j
                    yield epoch * n + index, index
                skip = 0
            visit += num_slots

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # A new loader asks worker 0 first, but the next batch of the stream is the one the
        # worker (start_batch mod workers) of the previous run would have made: rotate roles.
        role = (worker + self.start_batch) % workers
        slot = self.rank * workers + role
        consumed = _batches_of_worker(self.start_batch, role, workers) * self.batch_size
        keys = self.slot_order(slot, self.world_size * workers, skip=consumed)
        while True:  # a batch's keys at a time, decoded on the dataset's decode_threads
            yield from self.dataset.__getitems__(list(itertools.islice(keys, self.batch_size)))

    @property
    def decode_threads(self) -> int:
        return self.dataset.decode_threads


def build_stream_loader(
    dataset: ShardDataset,
    batch_size: int,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    start_batch: int = 0,
    shuffle: bool = True,
    prefetch_factor: int = 2,
) -> DataLoader:
    """An endless loader of full batches streaming this rank's shards.

    `start_batch` is the number of batches this rank has consumed (global step x gradient
    accumulation); it resumes exactly only with the same world size and `num_workers`.
    """
    stream = ShardStream(dataset, seed, rank, world_size, batch_size, start_batch, shuffle)
    workers = num_workers > 0
    return DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=functools.partial(seed_worker, seed=seed, rank=rank) if workers else None,
        prefetch_factor=prefetch_factor if workers else None,
        persistent_workers=workers,
    )


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    # Fixed owner and time: the same manifest gives byte-identical shards.
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
    return info


def write_shards(
    entries: Sequence[ManifestEntry],
    out_dir: str | os.PathLike,
    samples_per_shard: int = 256,
    max_shard_bytes: int | None = None,
    shuffle_seed: int | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write the videos of `entries` into tar shards (+ indexes) under `out_dir`.

    A shard closes at `samples_per_shard` samples or once it holds `max_shard_bytes`.
    `shuffle_seed` writes rows in a seeded random order (streaming reads shards front to
    back, so a shuffled corpus gives varied batches); by default rows keep manifest order
    and sample i of the shards is row i. Each shard is written under a temporary name and
    renamed when complete.
    """
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    if max_shard_bytes is not None and max_shard_bytes < 1:
        raise ValueError(f"max_shard_bytes must be >= 1, got {max_shard_bytes}")
    if not entries:
        raise ValueError("no entries to write")
    images = [e.path for e in entries if is_image_path(e.path)]
    if images:
        raise ValueError(f"shards hold videos; keep images in a manifest source (first: {images[0]})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob("*.tar"))
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds {len(existing)} shard(s); pass overwrite=True to replace them")
    for old in existing:
        old.unlink()
        index_path(old).unlink(missing_ok=True)
    order = np.arange(len(entries))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(entries))
    written: list[Path] = []
    for rows in _plan_shards([entries[i].path for i in order], samples_per_shard, max_shard_bytes):
        final = out / SHARD_NAME.format(len(written))
        with atomic_file(final) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for position in rows:
                row = int(order[position])
                entry = entries[row]
                data = Path(entry.path).read_bytes()
                key = f"{position:09d}"
                meta = json.dumps({"label": entry.label, "source": entry.path, "row": row}).encode()
                tar.addfile(_tar_info(key + Path(entry.path).suffix.lower(), len(data)), io.BytesIO(data))
                tar.addfile(_tar_info(key + ".json", len(meta)), io.BytesIO(meta))
        write_index(final, scan_shard(final))
        written.append(final)
    return written


def _plan_shards(paths: Sequence[str], samples_per_shard: int, max_shard_bytes: int | None) -> Iterator[list[int]]:
    """Positions of the samples of each shard, closed by count or (when given) by size."""
    rows: list[int] = []
    size = 0
    for position, path in enumerate(paths):
        rows.append(position)
        size += os.path.getsize(path)
        if len(rows) >= samples_per_shard or (max_shard_bytes is not None and size >= max_shard_bytes):
            yield rows
            rows, size = [], 0
    if rows:
        yield rows
