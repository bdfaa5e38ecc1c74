"""Frozen features for probes: computed on the fly from a manifest, or read from `tools/embed.py` output.

Both paths give the same `FeatureSet`: one row of tokens per (video, window, view), which keeps
the choice of how clips are combined (the released probe concatenates the tokens of all
temporal clips of a spatial view; per-clip predictions can also be averaged) to the probe.
On-the-fly extraction reuses the window / crop code of `jepa.export.embed`, so a probe trained
on embeddings from `tools/embed.py` sees exactly what it would see on the fly. Images are
clips of one frame (the encoder repeats it to a tubelet).
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.numpy import load_file
from torch import Tensor, nn
from torch.utils.data import DataLoader

from jepa.checkpoint_files import read_json
from jepa.data.image import ImageDecodeError, load_image
from jepa.data.manifest import ManifestEntry, is_image_path
from jepa.export.embed import (
    CONFIG_FILE,
    INDEX_FILE,
    ClipChunk,
    EmbedConfig,
    VideoWindows,
    ViewEncoder,
    feature_dim,
    make_views,
)

log = logging.getLogger(__name__)

Combine = Literal["concat", "separate"]
COMBINE_MODES: tuple[str, ...] = ("concat", "separate")


@dataclass
class FeatureSet:
    """Frozen encoder tokens of a labelled set of videos (or images).

    `tokens` (R, N, D): one row per (video, window, view); `video`, `window`, `view` (R,) say
    which; `labels` (num_videos,) one label per video (-1 when unknown); `paths` per video.
    """

    tokens: Tensor
    video: Tensor
    window: Tensor
    view: Tensor
    labels: Tensor
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3:
            raise ValueError(f"tokens must be (rows, N, D), got shape {tuple(self.tokens.shape)}")
        rows = self.tokens.shape[0]
        for name in ("video", "window", "view"):
            t = getattr(self, name)
            if t.shape != (rows,):
                raise ValueError(f"{name} must have shape ({rows},), got {tuple(t.shape)}")
        if rows == 0:
            raise ValueError("a FeatureSet needs at least one row")
        if int(self.video.min()) < 0 or int(self.video.max()) >= len(self.labels):
            raise ValueError(f"video ids must lie in [0, {len(self.labels)})")
        if torch.bincount(self.video, minlength=len(self.labels)).eq(0).any():
            raise ValueError("every video needs at least one row")

    @property
    def num_videos(self) -> int:
        return len(self.labels)

    @property
    def dim(self) -> int:
        return self.tokens.shape[-1]

    def with_labels(self, labels: Sequence[int] | Tensor) -> FeatureSet:
        """The same features labelled by another factor (one label per video)."""
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != (self.num_videos,):
            raise ValueError(f"need {self.num_videos} labels, got shape {tuple(labels.shape)}")
        return FeatureSet(self.tokens, self.video, self.window, self.view, labels, list(self.paths))

    def pooled(self) -> Tensor:
        """(num_videos, D) float32: tokens averaged over all tokens, windows and views of a video."""
        per_row = self.tokens.float().mean(dim=1)
        total = per_row.new_zeros(self.num_videos, self.dim).index_add_(0, self.video, per_row)
        return total / torch.bincount(self.video, minlength=self.num_videos)[:, None].float()

    def samples(self, combine: Combine = "concat") -> tuple[Tensor, Tensor]:
        """(tokens (S, N', D), video id (S,)) of the probe's samples.

        "concat": one sample per (video, view), the tokens of its windows concatenated in
        window order (released protocol; every video needs the same number of windows).
        "separate": every (video, window, view) row is its own sample.
        """
        if combine == "separate":
            return self.tokens, self.video
        if combine != "concat":
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
        num_views, num_windows = int(self.view.max()) + 1, int(self.window.max()) + 1
        group = self.video * num_views + self.view
        counts = torch.bincount(group)
        counts = counts[counts > 0]
        if not torch.all(counts == counts[0]):
            raise ValueError("videos have different numbers of windows; use combine='separate'")
        order = torch.argsort(group * num_windows + self.window)
        per_sample = int(counts[0])
        tokens = self.tokens[order].reshape(-1, per_sample * self.tokens.shape[1], self.dim)
        return tokens, self.video[order][::per_sample]


def _entries_in_chunks(entries: Sequence[ManifestEntry], cfg: EmbedConfig, device: torch.device) -> Iterator[ClipChunk]:
    """Chunks of views: videos through `VideoWindows` (optionally in workers), then images."""
    videos = [(i, e) for i, e in enumerate(entries) if not is_image_path(e.path)]
    if videos:
        loader = DataLoader(VideoWindows(videos, cfg), batch_size=None, num_workers=cfg.workers(device))
        yield from loader
    for i, entry in enumerate(entries):
        if not is_image_path(entry.path):
            continue
        try:
            image = load_image(entry.path, cfg.resize_to)
        except ImageDecodeError as err:
            yield ClipChunk(i, error=str(err))
            continue
        views = make_views(image[None, None], cfg).flatten(0, 1)
        rows = [dict(window=0, crop=k) for k in range(cfg.num_crops)]
        yield ClipChunk(i, views, rows, done=True)


@torch.inference_mode()
def extract_features(
    encoder: nn.Module,
    entries: Sequence[ManifestEntry],
    cfg: EmbedConfig,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> FeatureSet:
    """Run a frozen encoder over every window and view of every entry and keep all tokens.

    Windows, views and precision follow `cfg` exactly as `tools/embed.py` does (`num_clips`
    evenly spaced windows, or sliding ones; `num_crops` views; `precision="auto"` encodes in
    bf16 where the device runs it natively). Entries that cannot be read are skipped with
    a warning; `dtype=torch.float16` halves the memory of large sets.
    """
    if not entries:
        raise ValueError("no entries to extract features from")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = encoder.to(device).eval()
    feature_dim(encoder, cfg.layers)
    run_views = ViewEncoder(encoder, cfg, device)
    log.info(run_views.describe())
    out_tokens: list[Tensor] = []
    meta: list[tuple[int, int, int]] = []
    views_buf: list[Tensor] = []
    rows_buf: list[tuple[int, int, int]] = []
    failed: dict[int, str] = {}

    def run(final: bool = False) -> None:
        """Encode every full batch of buffered views (and the remainder when `final`)."""
        if not views_buf:
            return
        views = torch.cat(views_buf)
        views_buf.clear()
        start = 0
        while len(views) - start >= cfg.batch_size or (final and start < len(views)):
            stop = min(start + cfg.batch_size, len(views))
            out_tokens.append(run_views.tokens(views[start:stop]).to("cpu", dtype))
            start = stop
        meta.extend(rows_buf[:start])
        del rows_buf[:start]
        if start < len(views):
            views_buf.append(views[start:])

    done = 0
    for chunk in _entries_in_chunks(entries, cfg, device):
        if chunk.error is not None:
            failed[chunk.video] = chunk.error
            continue
        if chunk.views is not None:
            views_buf.append(chunk.views)
            rows_buf.extend((chunk.video, int(r["window"]), int(r["crop"])) for r in chunk.rows)
            run()
        if chunk.done:
            done += 1
            if progress and done % 50 == 0:
                log.info("features: %d / %d entries", done, len(entries))
    run(final=True)
    for video, reason in failed.items():
        log.warning("no features for %s: %s", entries[video].path, reason)
    if not meta:
        raise RuntimeError("no entry could be read; nothing to extract")
    ids = torch.tensor(meta, dtype=torch.long)
    kept = sorted({int(v) for v in ids[:, 0]})
    remap = torch.full((len(entries),), -1, dtype=torch.long)
    remap[kept] = torch.arange(len(kept))
    labels = torch.tensor([-1 if entries[i].label is None else int(entries[i].label) for i in kept], dtype=torch.long)
    return FeatureSet(
        torch.cat(out_tokens), remap[ids[:, 0]], ids[:, 1], ids[:, 2], labels, [entries[i].path for i in kept]
    )


def _read_shard(directory: Path, shard: int, output: str, fmt: str) -> np.ndarray:
    stem = directory / f"shard_{shard:05d}"
    if fmt == "safetensors":
        return load_file(str(stem.with_suffix(".safetensors")))[output]
    return np.load(stem.with_name(f"{stem.name}.{output}.npy"))


def embedding_classes(directory: str | Path) -> list[str] | None:
    """The class names `tools/embed.py` numbered the labels of `directory` by (None: integer labels)."""
    return read_json(Path(directory) / CONFIG_FILE).get("classes")


def load_embeddings(directory: str | Path, output: str | None = None) -> FeatureSet:
    """Read what `tools/embed.py` wrote into a `FeatureSet`.

    `output` picks "tokens" (a (T', H', W', D) grid per row, for attentive probes) or "pooled"
    (one vector per row: each window is one token); default: tokens when written.
    """
    directory = Path(directory)
    config_path, index_path = directory / CONFIG_FILE, directory / INDEX_FILE
    if not config_path.is_file() or not index_path.is_file():
        raise FileNotFoundError(f"{directory}: needs {CONFIG_FILE} and {INDEX_FILE} (run tools/embed.py to the end)")
    settings = read_json(config_path)["settings"]
    written = list(settings["outputs"])
    output = output or ("tokens" if "tokens" in written else "pooled")
    if output not in written:
        raise ValueError(f"{directory} holds {written}, not {output!r}")
    with open(index_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{index_path} lists no rows")
    rows.sort(key=lambda r: (int(r["shard"]), int(r["shard_row"])))
    by_shard: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        by_shard[int(r["shard"])].append(int(r["shard_row"]))
    parts = []
    for shard in sorted(by_shard):
        array = _read_shard(directory, shard, output, settings["format"])
        parts.append(torch.from_numpy(np.ascontiguousarray(array[by_shard[shard]])).float())
    tokens = torch.cat(parts)
    tokens = tokens.reshape(len(tokens), -1, tokens.shape[-1])
    videos = sorted({int(r["video"]) for r in rows})
    remap = {v: i for i, v in enumerate(videos)}
    first = {}
    for r in rows:
        first.setdefault(int(r["video"]), r)
    labels = torch.tensor([int(first[v]["label"]) if first[v]["label"] != "" else -1 for v in videos], dtype=torch.long)
    return FeatureSet(
        tokens,
        torch.tensor([remap[int(r["video"])] for r in rows]),
        torch.tensor([int(r["window"]) for r in rows]),
        torch.tensor([int(r["crop"]) for r in rows]),
        labels,
        [first[v]["path"] for v in videos],
    )
