"""3D multiblock masks: the V-JEPA target is a union of space-time boxes, the context the rest.

Masks are int64 index tensors of kept token positions over a t-major (T', H', W') token grid
(index = t*H'*W' + h*W' + w), sorted ascending, with equal length in every row of a batch.

Sampling follows the released V-JEPA / V-JEPA 2 generator:

* one block size (t, h, w) per batch and mask config: temporal scale, spatial scale and aspect
  ratio are drawn uniformly from their ranges; t = max(1, floor(scale_t * T')),
  area = floor(scale_s * H' * W'), h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)),
  clipped to the grid (we also keep area, h and w >= 1 so a block is never empty);
* per sample, ``num_blocks`` block positions drawn uniformly; target = union of the blocks,
  context = complement of the union within the first ``max_temporal_keep`` of the frames
  (tokens of later frames are never context, so they join the target, as released);
* a sample whose context is too small is redrawn (the release retries on an empty context);
* every context row and every target row is cut to the shortest in the batch, keeping the
  lowest indices, so the last tokens in raster order become neither context nor target.

Unlike the release, every random number comes from the ``torch.Generator`` passed in, so a
batch of masks is a pure function of that generator's state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

Grid = tuple[int, int, int]

# Rounds of redrawing positions for samples whose context is smaller than min_keep. A draw that
# fails this often means the block size leaves (almost) no room, so we stop with an error
# instead of looping forever as the release would.
MAX_RESAMPLE_ROUNDS = 100


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_range(value: Any, name: str) -> tuple[float, float]:
    """Accept a (lo, hi) pair or a single number (meaning lo == hi); YAML lists are fine."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    else:
        try:
            items = list(value)
        except TypeError:
            raise ValueError(f"{name} must be a number or a (min, max) pair, got {value!r}") from None
        if len(items) != 2:
            raise ValueError(f"{name} must be a (min, max) pair, got {value!r}")
        try:
            pair = (float(items[0]), float(items[1]))
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold numbers, got {value!r}") from None
    if pair[0] > pair[1]:
        raise ValueError(f"{name} must satisfy min <= max, got {pair}")
    return pair


def _check_unit_range(pair: tuple[float, float], name: str) -> None:
    if not (0.0 < pair[0] <= 1.0 and 0.0 < pair[1] <= 1.0):
        raise ValueError(f"{name} values must lie in (0, 1], got {pair}")


@dataclass(frozen=True, kw_only=True)
class MaskConfig:
    """One mask family: how big the target blocks are and how many make up the target.

    Args:
        spatial_scale: range of the fraction of the H' x W' plane one block covers.
        num_blocks: blocks per sample; the target is their union.
        temporal_scale: range of the fraction of T' one block spans.
        aspect_ratio: range of the block's height / width.
        max_temporal_keep: fraction of the frames (from the start) the context may use.
        max_keep: cap on the context length (None: no cap).
        min_keep: a sample must keep at least this many context tokens; positions are redrawn
            until it does (the release uses 1: "non-empty").
        full_complement: when True the target is every token not in the (cut) context, so no
            token is dropped by the batch-length cut; the target then has N - K_ctx tokens.
        context_window: where the ``max_temporal_keep`` frames the context may use lie: "first"
            (the start of the clip, as released: the target is the future) or "random" (a
            window at a uniform random slice per sample: the target is past and future, so the
            context must carry which way and how fast things move, not only where they are).
    """

    spatial_scale: tuple[float, float]
    num_blocks: int
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    max_temporal_keep: float = 1.0
    max_keep: int | None = None
    min_keep: int = 1
    full_complement: bool = False
    context_window: str = "first"

    def __post_init__(self) -> None:
        spatial = _as_range(self.spatial_scale, "spatial_scale")
        temporal = _as_range(self.temporal_scale, "temporal_scale")
        aspect = _as_range(self.aspect_ratio, "aspect_ratio")
        _check_unit_range(spatial, "spatial_scale")
        _check_unit_range(temporal, "temporal_scale")
        if aspect[0] <= 0.0:
            raise ValueError(f"aspect_ratio values must be > 0, got {aspect}")
        if not _is_int(self.num_blocks) or self.num_blocks < 1:
            raise ValueError(f"num_blocks must be an integer >= 1, got {self.num_blocks!r}")
        keep_t = self.max_temporal_keep
        if isinstance(keep_t, bool) or not isinstance(keep_t, (int, float)) or not 0.0 < keep_t <= 1.0:
            raise ValueError(f"max_temporal_keep must lie in (0, 1], got {keep_t!r}")
        if not _is_int(self.min_keep) or self.min_keep < 1:
            raise ValueError(f"min_keep must be an integer >= 1, got {self.min_keep!r}")
        if self.max_keep is not None:
            if not _is_int(self.max_keep) or self.max_keep < 1:
                raise ValueError(f"max_keep must be None or an integer >= 1, got {self.max_keep!r}")
            if self.max_keep < self.min_keep:
                raise ValueError(f"max_keep ({self.max_keep}) must be >= min_keep ({self.min_keep})")
        if not isinstance(self.full_complement, bool):
            raise ValueError(f"full_complement must be a bool, got {self.full_complement!r}")
        if self.context_window not in ("first", "random"):
            raise ValueError(f"context_window must be 'first' or 'random', got {self.context_window!r}")
        object.__setattr__(self, "spatial_scale", spatial)
        object.__setattr__(self, "temporal_scale", temporal)
        object.__setattr__(self, "aspect_ratio", aspect)
        object.__setattr__(self, "max_temporal_keep", float(keep_t))
        object.__setattr__(self, "num_blocks", int(self.num_blocks))
        object.__setattr__(self, "min_keep", int(self.min_keep))
        if self.max_keep is not None:
            object.__setattr__(self, "max_keep", int(self.max_keep))


# Released defaults (V-JEPA 1 configs/pretrain/vitl16.yaml, V-JEPA 2 configs/train/vitl16):
# 8 small blocks ("short-range") and 2 large blocks ("long-range"), both spanning all frames.
VJEPA2_DEFAULT: list[MaskConfig] = [
    MaskConfig(spatial_scale=(0.15, 0.15), num_blocks=8),
    MaskConfig(spatial_scale=(0.7, 0.7), num_blocks=2),
]
VJEPA1_DEFAULT: list[MaskConfig] = [
    MaskConfig(spatial_scale=(0.15, 0.15), num_blocks=8),
    MaskConfig(spatial_scale=(0.7, 0.7), num_blocks=2),
]


def mask_configs_from_dicts(items: Sequence[Mapping[str, Any]]) -> list[MaskConfig]:
    """Build configs from plain or OmegaConf mappings (the Hydra ``mask:`` list).

    Unknown keys raise instead of being ignored, so a typo cannot silently fall back to a
    default; ``max_keep: null`` is accepted as in the released YAML.
    """
    if isinstance(items, (Mapping, str, bytes)):
        raise ValueError("mask configs must be a list of mappings, one per mask config")
    allowed = {f.name for f in fields(MaskConfig)}
    configs = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"mask config #{i} must be a mapping, got {type(item).__name__}")
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise ValueError(f"mask config #{i} has unknown keys {unknown}; allowed: {sorted(allowed)}")
        missing = sorted({"spatial_scale", "num_blocks"} - set(item))
        if missing:
            raise ValueError(f"mask config #{i} is missing {missing}")
        configs.append(MaskConfig(**dict(item)))
    if not configs:
        raise ValueError("at least one mask config is required")
    return configs


def token_grid(num_frames: int, img_size: int | tuple[int, int], patch_size: int, tubelet_size: int) -> Grid:
    """(T', H', W') of the patch-embedded clip; an image (num_frames=1) is one tubelet."""
    named = (("num_frames", num_frames), ("patch_size", patch_size), ("tubelet_size", tubelet_size))
    for name, value in named:
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    size = (img_size, img_size) if _is_int(img_size) else img_size
    if (
        isinstance(size, str)
        or not isinstance(size, Sequence)
        or len(size) != 2
        or not all(_is_int(s) and s >= 1 for s in size)
    ):
        raise ValueError(f"img_size must be an int or (height, width) of ints >= 1, got {img_size!r}")
    if any(s % patch_size for s in size):
        raise ValueError(f"img_size {size} is not divisible by patch_size {patch_size}")
    if num_frames == 1:
        return (1, size[0] // patch_size, size[1] // patch_size)
    if num_frames % tubelet_size:
        raise ValueError(f"num_frames {num_frames} is not divisible by tubelet_size {tubelet_size}")
    return (num_frames // tubelet_size, size[0] // patch_size, size[1] // patch_size)


def _check_grid(grid: Sequence[int]) -> Grid:
    dims = tuple(grid)
    if len(dims) != 3 or not all(_is_int(d) and d >= 1 for d in dims):
        raise ValueError(f"grid must be three integers >= 1 (T', H', W'), got {grid!r}")
    return dims  # type: ignore[return-value]


def _first_k(mask: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the first ``k`` True entries of every row of a (B, N) bool mask, as (B, k)."""
    keep = mask & (mask.cumsum(dim=1) <= k)
    return keep.nonzero()[:, 1].reshape(mask.shape[0], k)


class MultiBlockMaskGenerator:
    """Draws (context, target) index batches for one :class:`MaskConfig` on a fixed grid."""

    def __init__(self, cfg: MaskConfig, grid: Sequence[int]) -> None:
        if not isinstance(cfg, MaskConfig):
            raise ValueError(f"cfg must be a MaskConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.grid = _check_grid(grid)
        t, h, w = self.grid
        self.num_tokens = t * h * w
        self.context_frames = max(1, int(t * cfg.max_temporal_keep))
        if cfg.min_keep > self.context_frames * h * w:
            raise ValueError(
                f"min_keep {cfg.min_keep} exceeds the {self.context_frames * h * w} tokens the "
                f"context may use on grid {self.grid} with max_temporal_keep {cfg.max_temporal_keep}"
            )

    def sample_block_size(self, generator: torch.Generator) -> Grid:
        """Draw one block size (t, h, w); the released recipe shares it across a batch."""
        T, H, W = self.grid
        u_t, u_s, u_a = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        lo, hi = self.cfg.temporal_scale
        t = max(1, int(T * (lo + u_t * (hi - lo))))
        lo, hi = self.cfg.spatial_scale
        area = max(1, int(H * W * (lo + u_s * (hi - lo))))
        lo, hi = self.cfg.aspect_ratio
        aspect = lo + u_a * (hi - lo)
        h = min(H, max(1, round(math.sqrt(area * aspect))))
        w = min(W, max(1, round(math.sqrt(area / aspect))))
        return (min(t, T), h, w)

    def _union(self, n: int, size: Grid, generator: torch.Generator) -> torch.Tensor:
        """(n, T', H', W') bool: union of num_blocks boxes at uniform random positions."""
        T, H, W = self.grid
        t, h, w = size
        nb = self.cfg.num_blocks
        start = torch.randint(0, T - t + 1, (n, nb, 1), generator=generator)
        top = torch.randint(0, H - h + 1, (n, nb, 1), generator=generator)
        left = torch.randint(0, W - w + 1, (n, nb, 1), generator=generator)
        ar_t, ar_h, ar_w = torch.arange(T), torch.arange(H), torch.arange(W)
        in_t = (ar_t >= start) & (ar_t < start + t)
        in_h = (ar_h >= top) & (ar_h < top + h)
        in_w = (ar_w >= left) & (ar_w < left + w)
        union = torch.zeros(n, T, H, W, dtype=torch.bool)
        for b in range(nb):
            union |= in_t[:, b, :, None, None] & in_h[:, b, None, :, None] & in_w[:, b, None, None, :]
        return union

    def _target_masks(self, batch_size: int, size: Grid, generator: torch.Generator) -> torch.Tensor:
        """(B, N) bool target masks whose context (complement in the kept frames) is big enough."""
        T, H, W = self.grid
        if self.cfg.context_window == "random":
            first = torch.randint(0, T - self.context_frames + 1, (batch_size, 1), generator=generator)
        else:
            first = torch.zeros(batch_size, 1, dtype=torch.long)
        ar_t = torch.arange(T)
        frames_out = (ar_t < first) | (ar_t >= first + self.context_frames)
        target = torch.empty(batch_size, T, H, W, dtype=torch.bool)
        todo = torch.arange(batch_size)
        for _ in range(MAX_RESAMPLE_ROUNDS):
            union = self._union(len(todo), size, generator) | frames_out[todo, :, None, None]
            ok = (~union).flatten(1).sum(dim=1) >= self.cfg.min_keep
            target[todo[ok]] = union[ok]
            todo = todo[~ok]
            if len(todo) == 0:
                return target.flatten(1)
        raise ValueError(
            f"could not keep min_keep={self.cfg.min_keep} context tokens after {MAX_RESAMPLE_ROUNDS} "
            f"redraws: {self.cfg.num_blocks} block(s) of size {size} leave too little of grid "
            f"{self.grid}; use smaller spatial/temporal scales, fewer blocks or a lower min_keep"
        )

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (context, target) int64 index tensors of shapes (B, K_ctx) and (B, K_tgt)."""
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        size = self.sample_block_size(generator)
        target = self._target_masks(batch_size, size, generator)
        context = ~target
        k_ctx = int(context.sum(dim=1).min())
        if self.cfg.max_keep is not None:
            k_ctx = min(k_ctx, self.cfg.max_keep)
        ctx_idx = _first_k(context, k_ctx)
        if self.cfg.full_complement:
            kept = torch.zeros_like(context)
            kept.scatter_(1, ctx_idx, True)
            return ctx_idx, _first_k(~kept, self.num_tokens - k_ctx)
        k_tgt = int(target.sum(dim=1).min())
        return ctx_idx, _first_k(target, k_tgt)


class MaskSampler:
    """One generator per mask config; a call yields one (context, target) pair per config."""

    def __init__(self, configs: Sequence[MaskConfig], grid: Sequence[int]) -> None:
        configs = list(configs)
        if not configs:
            raise ValueError("MaskSampler needs at least one MaskConfig")
        self.grid = _check_grid(grid)
        self.generators = [MultiBlockMaskGenerator(cfg, self.grid) for cfg in configs]

    @classmethod
    def for_clip(
        cls,
        configs: Sequence[MaskConfig],
        num_frames: int,
        img_size: int | tuple[int, int],
        patch_size: int = 16,
        tubelet_size: int = 2,
    ) -> MaskSampler:
        """Sampler on the token grid of a clip of the given size (see :func:`token_grid`)."""
        return cls(configs, token_grid(num_frames, img_size, patch_size, tubelet_size))

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        contexts, targets = [], []
        for gen in self.generators:
            ctx, tgt = gen(batch_size, generator)
            contexts.append(ctx)
            targets.append(tgt)
        return contexts, targets
