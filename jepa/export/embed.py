"""Embedding extraction: run a frozen encoder over every window of every video of a manifest.

Each video is cut into windows of `frames_per_clip` frames (sampled at `fps` or every
`frame_step` source frames): sliding windows every `stride_s` seconds / `stride_frames`
frames (default: back to back), or `num_clips` evenly spaced ones. Each window gives
`num_crops` spatial views (short side resized to `short_side`, crops spread along the long
side). One output row per (video, window, crop): a pooled vector (mean over tokens) and/or
the token grid (T', H', W', D).

Output directory:
- `embed.json`: settings, encoder config, manifest fingerprint (a rerun with other settings
  into the same directory is refused instead of mixing rows);
- `shard_00000.safetensors` (tensors `pooled`, `tokens`) or `shard_00000.pooled.npy` /
  `shard_00000.tokens.npy`, one shard per `videos_per_shard` manifest entries;
- `shard_00000.csv`: the shard's rows, written last, so its presence marks a finished
  shard and a rerun after an interruption skips it;
- `index.csv`: all rows once every shard is done, `row` being the global row number:
  row, shard, shard_row, path, label, video, window, crop, start_frame, end_frame, start_s, end_s
  (frames [start_frame, end_frame) of the source video, seconds likewise).

Videos that cannot be decoded or are too short with `short_video="skip"` give no rows and
are listed in the summary; they never stop a run.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file as save_numpy
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from jepa.atomic import atomic_file, write_text_atomic
from jepa.checkpoint_files import read_json
from jepa.data.clips import SHORT_VIDEO, ClipSampler, ShortVideoError
from jepa.data.loader import default_num_workers
from jepa.data.manifest import ManifestEntry
from jepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_clip, resize_frames
from jepa.data.video import VideoDecodeError, gather_clips, open_video, resolve_backend

log = logging.getLogger(__name__)

CONFIG_FILE = "embed.json"
INDEX_FILE = "index.csv"
OUTPUTS: tuple[str, ...] = ("pooled", "tokens")
FORMATS: tuple[str, ...] = ("safetensors", "npy")
ROW_FIELDS: tuple[str, ...] = (
    "path", "label", "video", "window", "crop", "start_frame", "end_frame", "start_s", "end_s",
)  # fmt: skip
INDEX_FIELDS: tuple[str, ...] = ("row", "shard", "shard_row", *ROW_FIELDS)


@dataclass(frozen=True)
class EmbedConfig:
    """How windows, views, batches and shards are made; see the module docstring."""

    frames_per_clip: int = 16
    fps: float | None = None
    frame_step: int | None = None
    stride_s: float | None = None
    stride_frames: int | None = None
    num_clips: int | None = None
    short_video: str = "fit"
    crop_size: int = 256
    short_side: int | None = None
    num_crops: int = 1
    outputs: tuple[str, ...] = ("pooled",)
    # Blocks whose (normed) outputs are concatenated per token; None = the last block's.
    layers: tuple[int, ...] | None = None
    batch_size: int = 8
    videos_per_shard: int = 256
    format: str = "safetensors"
    precision: str = "auto"
    save_dtype: str = "float32"
    backend: str = "auto"
    # Decoding worker processes; None: none on CPU, where the encoder is the bottleneck (and a
    # worker only takes cores from it), and one per core but one on CUDA, where decoding is.
    num_workers: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        if (self.fps is None) == (self.frame_step is None):
            raise ValueError("give exactly one of fps / frame_step")
        if self.stride_s is not None and self.stride_frames is not None:
            raise ValueError("give at most one of stride_s / stride_frames")
        if self.num_clips is not None and (self.stride_s is not None or self.stride_frames is not None):
            raise ValueError("num_clips (evenly spaced windows) and a stride (sliding windows) exclude each other")
        for name in ("frames_per_clip", "crop_size", "num_crops", "batch_size", "videos_per_shard"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("stride_s", "stride_frames", "num_clips"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.outputs or set(self.outputs) - set(OUTPUTS):
            raise ValueError(f"outputs must be a non-empty subset of {OUTPUTS}, got {self.outputs}")
        choices = {
            "format": FORMATS,
            "precision": ("auto", "fp32", "bf16"),
            "save_dtype": ("float32", "float16"),
            "short_video": SHORT_VIDEO,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.short_side is not None and self.short_side < self.crop_size:
            raise ValueError(f"short_side {self.short_side} must be >= crop_size {self.crop_size}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 or None (auto), got {self.num_workers}")
        if self.layers is not None and (not self.layers or min(self.layers) < 1):
            raise ValueError(f"layers must be a non-empty list of block numbers >= 1, got {self.layers}")

    def workers(self, device: torch.device) -> int:
        """`num_workers`, or its automatic value for `device` when None."""
        if self.num_workers is not None:
            return self.num_workers
        return default_num_workers() if device.type == "cuda" else 0

    @property
    def resize_to(self) -> int:
        """Short side before cropping: as given, else crop * 256 / 224 (the usual eval ratio)."""
        return self.short_side if self.short_side is not None else round(self.crop_size * 256 / 224)

    def sampler(self) -> ClipSampler:
        return ClipSampler(
            self.frames_per_clip, fps=self.fps, frame_step=self.frame_step, num_clips=self.num_clips or 1,
            random_start=False, short_video=self.short_video,  # type: ignore[arg-type]
        )  # fmt: skip


def window_indices(num_frames: int, video_fps: float, cfg: EmbedConfig) -> np.ndarray:
    """Source frame indices (num_windows, frames_per_clip) of the windows of one video.

    Raises ShortVideoError for a video shorter than one window with short_video="skip".
    """
    sampler = cfg.sampler()
    offsets = sampler.offsets(video_fps)
    span = int(offsets[-1]) + 1
    if cfg.num_clips is not None or span > num_frames:
        return sampler.sample(num_frames, video_fps, np.random.default_rng(0))
    if cfg.stride_frames is not None:
        stride = int(cfg.stride_frames)
    elif cfg.stride_s is not None:
        stride = max(1, round(cfg.stride_s * video_fps))
    else:
        stride = span
    starts = np.arange(0, num_frames - span + 1, stride, dtype=np.int64)
    return starts[:, None] + offsets[None, :]


def crop_offsets(height: int, width: int, size: int, num_crops: int) -> list[tuple[int, int]]:
    """(top, left) of `num_crops` size x size crops: centred, spread evenly along the long side."""
    if height < size or width < size:
        raise ValueError(f"frame {height}x{width} is smaller than the crop {size}")
    centre = ((height - size) // 2, (width - size) // 2)
    if num_crops == 1:
        return [centre]
    steps = np.linspace(0, max(height, width) - size, num_crops).round().astype(int)
    return [(int(s), centre[1]) if height > width else (centre[0], int(s)) for s in steps]


def make_views(frames: np.ndarray, cfg: EmbedConfig) -> Tensor:
    """uint8 windows (W, T, H, W, C) -> uint8 views (W, num_crops, T, crop, crop, C)."""
    clips = torch.from_numpy(np.ascontiguousarray(frames))
    w, t, h, wd, c = clips.shape
    scale = cfg.resize_to / min(h, wd)
    new_h, new_w = max(cfg.crop_size, round(h * scale)), max(cfg.crop_size, round(wd * scale))
    clips = resize_frames(clips.reshape(-1, h, wd, c), (new_h, new_w)).reshape(w, t, new_h, new_w, c)
    size = cfg.crop_size
    views = [
        clips[:, :, top : top + size, left : left + size]
        for top, left in crop_offsets(new_h, new_w, size, cfg.num_crops)
    ]
    return torch.stack(views, dim=1)


def _row(entry: ManifestEntry, video: int, window: int, crop: int, frames: np.ndarray, fps: float) -> dict[str, Any]:
    """Index fields of one output row (frames [start, end) of the source video)."""
    start, end = int(frames[0]), int(frames[-1]) + 1
    return {
        "path": entry.path,
        "label": "" if entry.label is None else entry.label,
        "video": video,
        "window": window,
        "crop": crop,
        "start_frame": start,
        "end_frame": end,
        "start_s": round(start / fps, 4),
        "end_s": round(end / fps, 4),
    }


@dataclass
class ClipChunk:
    """Views of some windows of one video, or the reason the video gave no rows (`error`)."""

    video: int
    views: Tensor | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    done: bool = False


class VideoWindows(IterableDataset):
    """Yields `ClipChunk`s (up to `batch_size` windows each) for the given manifest entries.

    Workers take videos round-robin; the consumer sorts rows, so the output does not depend
    on the number of workers. Every video ends with a chunk marked `done` or `error`.
    """

    def __init__(self, entries: Sequence[tuple[int, ManifestEntry]], cfg: EmbedConfig) -> None:
        self.entries = list(entries)
        self.cfg = cfg

    def __iter__(self) -> Iterator[ClipChunk]:
        info = get_worker_info()
        mine = self.entries if info is None else self.entries[info.id :: info.num_workers]
        for video, entry in mine:
            yield from self._video(video, entry)

    def _video(self, video: int, entry: ManifestEntry) -> Iterator[ClipChunk]:
        cfg = self.cfg
        try:
            reader = open_video(entry.path, cfg.backend)  # type: ignore[arg-type]
        except VideoDecodeError as err:
            yield ClipChunk(video, error=str(err))
            return
        try:
            windows = window_indices(reader.num_frames, reader.fps, cfg)
            for first in range(0, len(windows), cfg.batch_size):
                idx = windows[first : first + cfg.batch_size]
                views = make_views(gather_clips(reader, idx, cfg.resize_to), cfg)
                rows = [
                    _row(entry, video, first + i, k, w, reader.fps)
                    for i, w in enumerate(idx)
                    for k in range(cfg.num_crops)
                ]
                yield ClipChunk(video, views.flatten(0, 1), rows)
            yield ClipChunk(video, done=True)
        except (VideoDecodeError, ShortVideoError, ValueError) as err:
            yield ClipChunk(video, error=f"{entry.path}: {err}")
        finally:
            reader.close()


@dataclass
class EmbedSummary:
    out_dir: Path
    num_rows: int
    num_shards: int
    computed_shards: list[int]
    skipped_shards: list[int]
    failed_videos: list[tuple[str, str]]
    index_path: Path


def _fingerprint(entries: Sequence[ManifestEntry]) -> str:
    digest = hashlib.sha256()
    for e in entries:
        digest.update(f"{e.path}\t{e.label}\n".encode())
    return digest.hexdigest()


def _shard_stem(out_dir: Path, shard: int) -> Path:
    return out_dir / f"shard_{shard:05d}"


def _data_files(stem: Path, cfg: EmbedConfig) -> list[Path]:
    if cfg.format == "safetensors":
        return [stem.with_suffix(".safetensors")]
    return [stem.with_name(f"{stem.name}.{name}.npy") for name in cfg.outputs]


def shard_done(out_dir: Path, shard: int, cfg: EmbedConfig) -> bool:
    """A shard is finished when its CSV (written last) and its data files exist."""
    stem = _shard_stem(out_dir, shard)
    return stem.with_suffix(".csv").is_file() and all(p.is_file() for p in _data_files(stem, cfg))


def write_shard(
    out_dir: Path, shard: int, arrays: dict[str, np.ndarray], rows: list[dict[str, Any]], cfg: EmbedConfig
) -> None:
    """Write a shard's data files, then its CSV (each through a temp file and a rename)."""
    stem = _shard_stem(out_dir, shard)
    if cfg.format == "safetensors":
        with atomic_file(stem.with_suffix(".safetensors")) as tmp:
            save_numpy({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    else:
        for name, array in arrays.items():
            with atomic_file(stem.with_name(f"{stem.name}.{name}.npy")) as tmp, open(tmp, "wb") as f:
                np.save(f, array)
    with atomic_file(stem.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["shard_row", *ROW_FIELDS])
        writer.writeheader()
        writer.writerows({"shard_row": i, **row} for i, row in enumerate(rows))


def write_index(out_dir: Path, num_shards: int) -> tuple[Path, int]:
    """Concatenate the shard CSVs into `index.csv` with global row numbers."""
    final = out_dir / INDEX_FILE
    row = 0
    with atomic_file(final) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(INDEX_FIELDS))
        writer.writeheader()
        for shard in range(num_shards):
            with open(_shard_stem(out_dir, shard).with_suffix(".csv"), newline="") as part:
                for rec in csv.DictReader(part):
                    writer.writerow({"row": row, "shard": shard, **rec})
                    row += 1
    return final, row


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 matmuls natively: any CUDA GPU, or a CPU with AVX-512-BF16 / AMX.

    There bf16 autocast roughly doubles encoder throughput (on this project's 2-core EPYC: 2.1x
    for ViT-S, 2.0x for ViT-L, docs/benchmarks.md) for ~1% relative error in the embeddings;
    elsewhere bf16 is emulated and slower than fp32.
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    cpu = torch.cpu
    return any(
        getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for "auto" / "fp32" / "bf16" on `device` (None = fp32)."""
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def encode(encoder: nn.Module, x: Tensor, layers: Sequence[int] | None = None) -> Tensor:
    """Tokens of `x`: the encoder's output, or its blocks `layers` concatenated on channels."""
    return encoder(x) if layers is None else encoder(x, out_layers=layers)


def feature_dim(encoder: nn.Module, layers: Sequence[int] | None = None) -> int:
    """Channels per token that `encode` gives; checks `layers` against the encoder's depth."""
    dim = int(encoder.embed_dim)  # type: ignore[arg-type]
    if layers is None:
        return dim
    return dim * len(encoder.check_out_layers(layers))  # type: ignore[operator]


class ViewEncoder:
    """Normalise uint8 views on the device, run the encoder (bf16 autocast if `cfg.precision`
    asks for it), and hand back tokens or the outputs `cfg` asks to save. Embedding files and
    on-the-fly probe features (jepa.eval.features) both encode through it."""

    def __init__(self, encoder: nn.Module, cfg: EmbedConfig, device: torch.device) -> None:
        self.encoder, self.cfg, self.device = encoder, cfg, device
        self.autocast = resolve_precision(cfg.precision, device)
        self.save_dtype = np.float32 if cfg.save_dtype == "float32" else np.float16

    def describe(self) -> str:
        """What the encoding runs with, logged once at start (the first thing to check when slow)."""
        cfg, auto = self.cfg, " (auto)" if self.cfg.num_workers is None else ""
        precision = "bf16" if self.autocast == torch.bfloat16 else "fp32"
        return (
            f"setup: {self.device}, precision {precision}{' (auto)' if cfg.precision == 'auto' else ''}, "
            f"decode workers {cfg.workers(self.device)}{auto}, decoder {resolve_backend(cfg.backend)}"
        )

    @torch.inference_mode()
    def tokens(self, views: Tensor) -> Tensor:
        """float32 tokens (B, N, D) of uint8 views (B, T, H, W, C), on the device."""
        x = normalize_clip(views.to(self.device, non_blocking=True), self.cfg.mean, self.cfg.std)
        autocast = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        with autocast:
            return encode(self.encoder, x, self.cfg.layers).float()

    @torch.inference_mode()
    def __call__(self, views: Tensor) -> dict[str, np.ndarray]:
        tokens = self.tokens(views)
        out: dict[str, np.ndarray] = {}
        if "pooled" in self.cfg.outputs:
            out["pooled"] = tokens.mean(dim=1).cpu().numpy().astype(self.save_dtype)
        if "tokens" in self.cfg.outputs:
            grid = self.encoder.grid_size(*views.shape[1:4])  # type: ignore[operator]
            out["tokens"] = tokens.reshape(len(tokens), *grid, -1).cpu().numpy().astype(self.save_dtype)
        return out


def _empty_arrays(encoder: nn.Module, cfg: EmbedConfig, dtype: type) -> dict[str, np.ndarray]:
    dim = feature_dim(encoder, cfg.layers)
    grid = encoder.grid_size(cfg.frames_per_clip, cfg.crop_size, cfg.crop_size)  # type: ignore[operator]
    shapes = {"pooled": (0, dim), "tokens": (0, *grid, dim)}
    return {name: np.zeros(shapes[name], dtype=dtype) for name in cfg.outputs}


# Settings that do not change a single output value: a resumed extraction may change them.
NEUTRAL_SETTINGS = ("num_workers",)


def _differences(stored: Any, record: Any, where: str = "") -> list[str]:
    """`key: stored -> new` for every leaf where two records differ."""
    if isinstance(stored, dict) and isinstance(record, dict):
        keys = sorted(set(stored) | set(record))
        return [d for k in keys for d in _differences(stored.get(k), record.get(k), f"{where}{k}.")]
    return [] if stored == record else [f"{where[:-1]}: {stored!r} -> {record!r}"]


def _check_or_write_config(out_dir: Path, record: dict[str, Any], overwrite: bool) -> None:
    path = out_dir / CONFIG_FILE
    if path.is_file() and not overwrite:
        stored = read_json(path)
        for key in NEUTRAL_SETTINGS:  # files written before these were left out
            stored.get("settings", {}).pop(key, None)
        changed = _differences(stored, record)
        if changed:
            raise ValueError(
                f"{out_dir} holds embeddings made with other settings ({'; '.join(changed)}); "
                "use another directory or overwrite=True"
            )
        return
    if overwrite:
        for old in out_dir.glob("shard_*"):
            old.unlink()
        (out_dir / INDEX_FILE).unlink(missing_ok=True)
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def extract_embeddings(
    encoder: nn.Module,
    entries: Sequence[ManifestEntry],
    out_dir: str | Path,
    cfg: EmbedConfig,
    device: str | torch.device | None = None,
    progress: bool = True,
    overwrite: bool = False,
    source: str = "",
    classes: Sequence[str] | None = None,
) -> EmbedSummary:
    """Embed every window of every entry into sharded files under `out_dir` (resumable).

    `classes` names the label indices (from `jepa.data.manifest.manifest_classes`); it is kept
    in `config.json` so probes on two embedding directories can check they number alike."""
    if not entries:
        raise ValueError("no manifest entries to embed")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = encoder.to(device).eval()
    feature_dim(encoder, cfg.layers)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in asdict(cfg).items() if k not in NEUTRAL_SETTINGS}
    record = {
        "settings": json.loads(json.dumps(settings)),
        "encoder": json.loads(json.dumps(getattr(encoder, "config", {}))),
        "source": source,
        "num_videos": len(entries),
        "manifest_sha256": _fingerprint(entries),
        "classes": list(classes) if classes is not None else None,
    }
    _check_or_write_config(out_dir, record, overwrite)
    run = ViewEncoder(encoder, cfg, device)
    log.info(run.describe())
    num_shards = math.ceil(len(entries) / cfg.videos_per_shard)
    todo = [s for s in range(num_shards) if not shard_done(out_dir, s, cfg)]
    skipped = [s for s in range(num_shards) if s not in todo]
    failed: list[tuple[str, str]] = []
    bar = tqdm(total=sum(len(_shard_entries(entries, s, cfg)) for s in todo), unit="video", disable=not progress)
    for shard in todo:
        failed += _embed_shard(run, entries, shard, out_dir, cfg, device, bar)
    bar.close()
    index, num_rows = write_index(out_dir, num_shards)
    for path, reason in failed:
        log.warning("no embeddings for %s: %s", path, reason)
    return EmbedSummary(out_dir, num_rows, num_shards, todo, skipped, failed, index)


def _shard_entries(entries: Sequence[ManifestEntry], shard: int, cfg: EmbedConfig) -> list[tuple[int, ManifestEntry]]:
    first = shard * cfg.videos_per_shard
    return [(i, entries[i]) for i in range(first, min(first + cfg.videos_per_shard, len(entries)))]


def _embed_shard(
    run: ViewEncoder, entries: Sequence[ManifestEntry], shard: int, out_dir: Path, cfg: EmbedConfig,
    device: torch.device, bar: tqdm,
) -> list[tuple[str, str]]:  # fmt: skip
    """Compute and write one shard; returns the (path, reason) of videos that gave no rows."""
    dataset = VideoWindows(_shard_entries(entries, shard, cfg), cfg)
    loader = DataLoader(dataset, batch_size=None, num_workers=cfg.workers(device), pin_memory=device.type == "cuda")
    rows: list[dict[str, Any]] = []
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in cfg.outputs}
    pending_views: list[Tensor] = []
    pending_rows: list[dict[str, Any]] = []
    failed: dict[int, str] = {}

    def flush(final: bool = False) -> None:
        """Run full batches of `batch_size` views (and the remainder when `final`)."""
        views = torch.cat(pending_views) if pending_views else torch.empty(0)
        pending_views.clear()
        while len(views) >= cfg.batch_size or (final and len(views)):
            take = min(cfg.batch_size, len(views))
            result = run(views[:take])
            for name in cfg.outputs:
                outputs[name].append(result[name])
            rows.extend(pending_rows[:take])
            del pending_rows[:take]
            views = views[take:]
        if len(views):
            pending_views.append(views)

    for chunk in loader:
        if chunk.error is not None:
            failed[chunk.video] = chunk.error
            bar.update(1)
        elif chunk.done:
            bar.update(1)
        else:
            pending_views.append(chunk.views)
            pending_rows.extend(chunk.rows)
            if len(pending_rows) >= cfg.batch_size:
                flush()
    flush(final=True)
    arrays = {
        k: np.concatenate(v) if v else _empty_arrays(run.encoder, cfg, run.save_dtype)[k] for k, v in outputs.items()
    }
    keep = [i for i, r in enumerate(rows) if r["video"] not in failed]
    order = sorted(keep, key=lambda i: (rows[i]["video"], rows[i]["window"], rows[i]["crop"]))
    arrays = {k: v[order] for k, v in arrays.items()}
    write_shard(out_dir, shard, arrays, [rows[i] for i in order], cfg)
    return [(entries[v].path, reason) for v, reason in sorted(failed.items())]
