"""3D multiblock masks: invariants, statistics against first principles, determinism, collator."""

import math
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from jepa.masks import (
    VJEPA1_DEFAULT,
    VJEPA2_DEFAULT,
    MaskCollator,
    MaskConfig,
    MaskSampler,
    MultiBlockMaskGenerator,
    mask_configs_from_dicts,
    token_grid,
)

GRID_16F_256 = (8, 16, 16)  # 16 frames, 256 px, patch 16, tubelet 2
GRID_SMALL = (4, 8, 8)  # 8 frames, 128 px
SHORT, LONG = VJEPA2_DEFAULT


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check_batch(ctx: torch.Tensor, tgt: torch.Tensor, grid: tuple[int, int, int], batch: int) -> None:
    """Contract of one (context, target) pair; also that the length cut drops the last tokens."""
    n = math.prod(grid)
    for idx in (ctx, tgt):
        assert idx.dtype == torch.int64 and idx.ndim == 2 and idx.shape[0] == batch
        assert idx.shape[1] >= 1
        assert int(idx.min()) >= 0 and int(idx.max()) < n
        assert bool((idx[:, 1:] > idx[:, :-1]).all()), "rows must be sorted and unique"
    for c, t in zip(ctx.tolist(), tgt.tolist()):
        c_set, t_set = set(c), set(t)
        assert not c_set & t_set, "context and target overlap"
        dropped = set(range(n)) - c_set - t_set
        assert all(d > c[-1] or d > t[-1] for d in dropped), "the cut must keep the lowest indices"


# ---------------------------------------------------------------- reference expectation


def block_size(cfg: MaskConfig, grid: tuple[int, int, int], aspect: float) -> tuple[int, int, int]:
    """The released size rule for fixed scales: area = floor(s*H*W), h = round(sqrt(area*a))."""
    T, H, W = grid
    t = max(1, int(T * cfg.temporal_scale[0]))
    area = max(1, int(H * W * cfg.spatial_scale[0]))
    h = min(H, max(1, round(math.sqrt(area * aspect))))
    w = min(W, max(1, round(math.sqrt(area / aspect))))
    return t, h, w


def placements(grid: tuple[int, int, int], size: tuple[int, int, int]) -> np.ndarray:
    """(P, N) bool: every position of a box of ``size`` on the grid, flattened t-major."""
    T, H, W = grid
    t, h, w = size
    boxes = []
    for s in range(T - t + 1):
        for top in range(H - h + 1):
            for left in range(W - w + 1):
                box = np.zeros(grid, dtype=bool)
                box[s : s + t, top : top + h, left : left + w] = True
                boxes.append(box.ravel())
    return np.stack(boxes)


def expected_target_fraction(cfg: MaskConfig, grid: tuple[int, int, int], points: int = 2000) -> float:
    """E[|union of blocks| / N] for uniform, independent block positions.

    A cell is missed by one block with probability 1 - p (p = fraction of placements covering
    it), so it lies in the union of n independent blocks with probability 1 - (1 - p)^n. For two
    blocks all pairs are enumerated instead, dropping pairs that cover the whole grid, because
    the generator redraws a sample whose context is empty.
    """
    assert cfg.spatial_scale[0] == cfg.spatial_scale[1] and cfg.temporal_scale[0] == cfg.temporal_scale[1]
    lo, hi = cfg.aspect_ratio
    sizes = Counter(block_size(cfg, grid, lo + (i + 0.5) / points * (hi - lo)) for i in range(points))
    total = 0.0
    for size, count in sizes.items():
        boxes = placements(grid, size)
        if cfg.num_blocks == 2:
            union = (boxes[:, None, :] | boxes[None, :, :]).mean(axis=-1)
            frac = union[union < 1.0].mean()
        else:
            p = boxes.mean(axis=0)
            frac = (1.0 - (1.0 - p) ** cfg.num_blocks).mean()
        total += count * frac
    return total / points


# ---------------------------------------------------------------- configs


def test_presets_are_the_released_recipe() -> None:
    for preset in (VJEPA2_DEFAULT, VJEPA1_DEFAULT):
        assert [(c.num_blocks, c.spatial_scale) for c in preset] == [(8, (0.15, 0.15)), (2, (0.7, 0.7))]
        for c in preset:
            assert c.temporal_scale == (1.0, 1.0)
            assert c.aspect_ratio == (0.75, 1.5)
            assert c.max_temporal_keep == 1.0 and c.max_keep is None and not c.full_complement


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(spatial_scale=(0.0, 0.2)), "spatial_scale"),
        (dict(spatial_scale=(0.2, 1.5)), "spatial_scale"),
        (dict(spatial_scale=(0.5, 0.2)), "min <= max"),
        (dict(spatial_scale=(0.1, 0.2, 0.3)), "pair"),
        (dict(spatial_scale="big"), "spatial_scale"),
        (dict(temporal_scale=(0.0, 1.0)), "temporal_scale"),
        (dict(aspect_ratio=(0.0, 1.0)), "aspect_ratio"),
        (dict(num_blocks=0), "num_blocks"),
        (dict(num_blocks=1.5), "num_blocks"),
        (dict(max_temporal_keep=0.0), "max_temporal_keep"),
        (dict(max_temporal_keep=1.2), "max_temporal_keep"),
        (dict(min_keep=0), "min_keep"),
        (dict(max_keep=0), "max_keep"),
        (dict(max_keep=4, min_keep=8), "max_keep"),
        (dict(full_complement="yes"), "full_complement"),
        (dict(context_window="last"), "context_window"),
    ],
)
def test_bad_config_raises(kwargs: dict, message: str) -> None:
    base = dict(spatial_scale=(0.15, 0.15), num_blocks=8)
    with pytest.raises(ValueError, match=message):
        MaskConfig(**{**base, **kwargs})


def test_configs_from_dicts_accepts_hydra_lists_and_rejects_typos() -> None:
    yaml = OmegaConf.create(
        [
            {
                "spatial_scale": [0.15, 0.15],
                "temporal_scale": [1.0, 1.0],
                "aspect_ratio": [0.75, 1.5],
                "num_blocks": 8,
                "max_temporal_keep": 1.0,
                "max_keep": None,
            },
            {"spatial_scale": 0.7, "num_blocks": 2},
        ]
    )
    assert mask_configs_from_dicts(yaml) == VJEPA2_DEFAULT
    with pytest.raises(ValueError, match="unknown keys"):
        mask_configs_from_dicts([{"spatial_scale": 0.15, "num_blocks": 8, "nblocks": 8}])
    with pytest.raises(ValueError, match="missing"):
        mask_configs_from_dicts([{"spatial_scale": 0.15}])
    with pytest.raises(ValueError, match="at least one"):
        mask_configs_from_dicts([])
    with pytest.raises(ValueError, match="list of mappings"):
        mask_configs_from_dicts({"spatial_scale": 0.15, "num_blocks": 8})


def test_token_grid() -> None:
    assert token_grid(16, 256, 16, 2) == GRID_16F_256
    assert token_grid(64, 384, 16, 2) == (32, 24, 24)
    assert token_grid(1, 224, 16, 2) == (1, 14, 14)  # an image is one tubelet
    assert token_grid(2, (128, 96), 16, 2) == (1, 8, 6)
    for args in [(15, 256, 16, 2), (16, 250, 16, 2), (0, 256, 16, 2), (16, 256, 0, 2)]:
        with pytest.raises(ValueError):
            token_grid(*args)
    sampler = MaskSampler.for_clip(VJEPA2_DEFAULT, num_frames=16, img_size=256)
    assert sampler.grid == GRID_16F_256


def test_bad_grid_and_call_arguments_raise() -> None:
    with pytest.raises(ValueError, match="grid"):
        MultiBlockMaskGenerator(SHORT, (8, 16))
    with pytest.raises(ValueError, match="grid"):
        MaskSampler(VJEPA2_DEFAULT, (8, 0, 16))
    with pytest.raises(ValueError, match="at least one"):
        MaskSampler([], GRID_SMALL)
    g = MultiBlockMaskGenerator(SHORT, GRID_SMALL)
    with pytest.raises(ValueError, match="batch_size"):
        g(0, gen())
    with pytest.raises(ValueError, match="generator"):
        g(2, None)  # type: ignore[arg-type]


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize("grid", [GRID_16F_256, GRID_SMALL, (1, 14, 14), (2, 4, 4)])
@pytest.mark.parametrize("batch", [1, 7, 24])
def test_masks_follow_the_contract(grid: tuple[int, int, int], batch: int) -> None:
    sampler = MaskSampler(VJEPA2_DEFAULT, grid)
    g = gen(1)
    for _ in range(5):
        contexts, targets = sampler(batch, g)
        assert len(contexts) == len(targets) == 2
        for ctx, tgt in zip(contexts, targets):
            check_batch(ctx, tgt, grid, batch)


@pytest.mark.parametrize("grid", [GRID_16F_256, GRID_SMALL])
@pytest.mark.parametrize("cfg", [SHORT, LONG], ids=["8x0.15", "2x0.7"])
def test_target_fraction_matches_first_principles(grid: tuple[int, int, int], cfg: MaskConfig) -> None:
    n = math.prod(grid)
    g = gen(2)
    generator = MultiBlockMaskGenerator(cfg, grid)
    draws = 1000
    fractions = np.empty(draws)
    for i in range(draws):
        ctx, tgt = generator(1, g)  # batch of one: nothing is cut, so tgt is the whole union
        assert ctx.shape[1] + tgt.shape[1] == n
        fractions[i] = tgt.shape[1] / n
    lo, hi = cfg.aspect_ratio
    block_fracs = [math.prod(block_size(cfg, grid, a)) / n for a in np.linspace(lo, hi, 201)]
    assert fractions.min() >= min(block_fracs) - 1e-9  # the union holds at least one block
    assert fractions.max() <= min(1.0, cfg.num_blocks * max(block_fracs)) + 1e-9
    s = cfg.spatial_scale[0]
    assert s * 0.9 <= fractions.mean() <= min(1.0, cfg.num_blocks * s)
    expected = expected_target_fraction(cfg, grid)
    tolerance = 5 * fractions.std() / math.sqrt(draws) + 1e-3
    assert abs(fractions.mean() - expected) < tolerance, (fractions.mean(), expected)


def test_single_fixed_block_is_an_exact_box() -> None:
    grid = GRID_SMALL
    cfg = MaskConfig(spatial_scale=0.25, temporal_scale=0.5, aspect_ratio=(1.0, 1.0), num_blocks=1)
    ctx, tgt = MultiBlockMaskGenerator(cfg, grid)(50, gen(3))
    assert tgt.shape == (50, 2 * 4 * 4)
    for row in tgt:
        t, h, w = np.unravel_index(row.numpy(), grid)
        assert (t.max() - t.min(), h.max() - h.min(), w.max() - w.min()) == (1, 3, 3)
    # every sample has exactly N - 32 context tokens, so the cut drops nothing
    assert ctx.shape == (50, math.prod(grid) - 32)
    full = torch.sort(torch.cat([ctx, tgt], dim=1), dim=1).values
    assert torch.equal(full, torch.arange(math.prod(grid)).expand(50, -1))


def test_union_size_is_bounded_by_its_blocks() -> None:
    grid = GRID_SMALL
    cfg = MaskConfig(spatial_scale=0.25, temporal_scale=0.5, aspect_ratio=(1.0, 1.0), num_blocks=3)
    generator = MultiBlockMaskGenerator(cfg, grid)
    g = gen(4)
    sizes = [generator(1, g)[1].shape[1] for _ in range(200)]
    assert min(sizes) >= 32 and max(sizes) <= 96
    assert min(sizes) < max(sizes)  # positions really vary


def test_long_range_config_keeps_context_in_big_batches() -> None:
    sampler = MaskSampler(VJEPA2_DEFAULT, GRID_16F_256)
    g = gen(5)
    for _ in range(20):
        contexts, _ = sampler(24, g)
        assert contexts[1].shape[1] > 0
        assert contexts[0].shape[1] > contexts[1].shape[1]


# ---------------------------------------------------------------- options


def test_max_temporal_keep_puts_later_frames_in_the_target() -> None:
    grid = GRID_SMALL
    hw = grid[1] * grid[2]
    cfg = MaskConfig(spatial_scale=0.15, temporal_scale=(0.5, 1.0), num_blocks=4, max_temporal_keep=0.5)
    generator = MultiBlockMaskGenerator(cfg, grid)
    assert generator.context_frames == 2
    g = gen(6)
    for _ in range(20):
        ctx, tgt = generator(1, g)
        assert int(ctx.max()) < 2 * hw
        assert set(range(2 * hw, 4 * hw)) <= set(tgt[0].tolist())
    ctx, tgt = generator(16, g)
    check_batch(ctx, tgt, grid, 16)


def test_max_keep_caps_the_context() -> None:
    cfg = MaskConfig(spatial_scale=0.15, num_blocks=8, max_keep=100)
    ctx, tgt = MultiBlockMaskGenerator(cfg, GRID_16F_256)(8, gen(7))
    assert ctx.shape == (8, 100)
    check_batch(ctx, tgt, GRID_16F_256, 8)


def test_full_complement_predicts_every_unseen_token() -> None:
    grid = GRID_SMALL
    n = math.prod(grid)
    cfg = MaskConfig(spatial_scale=0.15, num_blocks=8, full_complement=True)
    ctx, tgt = MultiBlockMaskGenerator(cfg, grid)(12, gen(8))
    assert ctx.shape[1] + tgt.shape[1] == n
    full = torch.sort(torch.cat([ctx, tgt], dim=1), dim=1).values
    assert torch.equal(full, torch.arange(n).expand(12, -1))


def test_random_context_window_lies_anywhere_and_spans_its_slices() -> None:
    """context_window="random": each sample's context sits in one window of the allowed length,
    the window's start is spread over the whole clip, and the target is everything else."""
    T, H, W = GRID_16F_256
    cfg = MaskConfig(
        spatial_scale=0.15, num_blocks=8, max_temporal_keep=0.25, full_complement=True, context_window="random"
    )
    ctx, tgt = MultiBlockMaskGenerator(cfg, GRID_16F_256)(64, gen(11))
    check_batch(ctx, tgt, GRID_16F_256, 64)
    slices = ctx // (H * W)
    first, last = slices.min(dim=1).values, slices.max(dim=1).values
    assert bool((last - first < 2).all())
    assert set(first.tolist()) == set(range(T - 1))
    assert ctx.shape[1] + tgt.shape[1] == T * H * W


def test_first_context_window_keeps_the_context_at_the_start() -> None:
    cfg = MaskConfig(spatial_scale=0.15, num_blocks=8, max_temporal_keep=0.5, context_window="first")
    ctx, _ = MultiBlockMaskGenerator(cfg, GRID_SMALL)(16, gen(13))
    assert bool((ctx // (GRID_SMALL[1] * GRID_SMALL[2]) < GRID_SMALL[0] // 2).all())


def test_min_keep_is_honoured_and_impossible_requests_raise() -> None:
    cfg = MaskConfig(spatial_scale=0.7, num_blocks=2, min_keep=40)
    g = gen(9)
    for _ in range(10):
        ctx, tgt = MultiBlockMaskGenerator(cfg, GRID_16F_256)(8, g)
        assert ctx.shape[1] >= 40
    covers_all = MaskConfig(spatial_scale=1.0, aspect_ratio=(1.0, 1.0), num_blocks=1)
    with pytest.raises(ValueError, match="could not keep"):
        MultiBlockMaskGenerator(covers_all, (2, 2, 2))(1, gen())
    with pytest.raises(ValueError, match="min_keep"):
        MultiBlockMaskGenerator(MaskConfig(spatial_scale=0.1, num_blocks=1, min_keep=9), (1, 2, 2))


def test_tiny_grid_redraws_until_context_is_non_empty() -> None:
    # on 1x4x4 two 0.7 blocks can cover everything (e.g. 4x3 boxes at columns 0 and 1)
    sampler = MaskSampler([LONG], (1, 4, 4))
    g = gen(10)
    for _ in range(50):
        (ctx,), (tgt,) = sampler(4, g)
        check_batch(ctx, tgt, (1, 4, 4), 4)


# ---------------------------------------------------------------- determinism


def test_same_seed_same_masks_other_seed_other_masks() -> None:
    sampler = MaskSampler(VJEPA2_DEFAULT, GRID_16F_256)
    a_ctx, a_tgt = sampler(6, gen(11))
    b_ctx, b_tgt = sampler(6, gen(11))
    c_ctx, c_tgt = sampler(6, gen(12))
    assert all(torch.equal(x, y) for x, y in zip(a_ctx + a_tgt, b_ctx + b_tgt))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a_ctx + a_tgt, c_ctx + c_tgt))


def test_masks_ignore_the_global_rng() -> None:
    sampler = MaskSampler(VJEPA2_DEFAULT, GRID_SMALL)
    torch.manual_seed(1)
    a = sampler(4, gen(13))
    torch.manual_seed(2)
    b = sampler(4, gen(13))
    assert all(torch.equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))


# ---------------------------------------------------------------- collator


def samples(ids: list[int]) -> list[dict]:
    return [{"clip": torch.full((3, 2, 4, 4), float(i)), "label": i % 3, "sample_id": i} for i in ids]


def same_masks(a: dict, b: dict) -> bool:
    pairs = list(zip(a["masks_ctx"] + a["masks_tgt"], b["masks_ctx"] + b["masks_tgt"]))
    return all(x.shape == y.shape and torch.equal(x, y) for x, y in pairs)


def test_collator_batches_samples_and_attaches_masks() -> None:
    collate = MaskCollator(VJEPA2_DEFAULT, GRID_SMALL, seed=0)
    batch = collate(samples([0, 1, 2, 3]))
    assert batch["clip"].shape == (4, 3, 2, 4, 4)
    assert batch["sample_id"].tolist() == [0, 1, 2, 3]
    assert len(batch["masks_ctx"]) == len(batch["masks_tgt"]) == 2
    for ctx, tgt in zip(batch["masks_ctx"], batch["masks_tgt"]):
        check_batch(ctx, tgt, GRID_SMALL, 4)


def test_collator_masks_depend_on_sample_ids_not_on_call_order() -> None:
    collate = MaskCollator(VJEPA2_DEFAULT, GRID_SMALL, seed=0)
    first_a, first_b = collate(samples([0, 1, 2, 3])), collate(samples([4, 5, 6, 7]))
    fresh = pickle.loads(pickle.dumps(collate))  # what a DataLoader worker holds
    second_b, second_a = fresh(samples([4, 5, 6, 7])), fresh(samples([0, 1, 2, 3]))
    assert same_masks(first_a, second_a) and same_masks(first_b, second_b)
    assert not same_masks(first_a, first_b)
    other_seed = MaskCollator(VJEPA2_DEFAULT, GRID_SMALL, seed=1)(samples([0, 1, 2, 3]))
    assert not same_masks(first_a, other_seed)


class _IdDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict:
        return samples([i])[0]


def test_collator_gives_the_same_masks_in_worker_processes() -> None:
    collate = MaskCollator(VJEPA2_DEFAULT, GRID_SMALL, seed=3)
    loader = lambda workers: torch.utils.data.DataLoader(  # noqa: E731
        _IdDataset(), batch_size=4, num_workers=workers, collate_fn=collate
    )
    in_process = list(loader(0))
    in_workers = list(loader(2))
    assert len(in_process) == len(in_workers) == 4
    for a, b in zip(in_process, in_workers):
        assert torch.equal(a["sample_id"], b["sample_id"]) and same_masks(a, b)
    assert not same_masks(in_workers[0], in_workers[1])  # workers do not repeat masks


def test_collator_rejects_samples_without_ids() -> None:
    collate = MaskCollator(VJEPA2_DEFAULT, GRID_SMALL)
    with pytest.raises(ValueError, match="sample_id"):
        collate([{"clip": torch.zeros(1)}])
    with pytest.raises(ValueError, match="sample_id"):
        collate([{"clip": torch.zeros(1), "sample_id": 1.5}])
    with pytest.raises(ValueError, match="dict samples"):
        collate([(torch.zeros(1), 0)])
    with pytest.raises(ValueError, match="empty"):
        collate([])
    with pytest.raises(ValueError, match="masks_ctx"):
        collate([{"sample_id": 0, "masks_ctx": 1}])
    with pytest.raises(ValueError, match="seed"):
        MaskCollator(VJEPA2_DEFAULT, GRID_SMALL, seed="0")  # type: ignore[arg-type]
    batch = collate([{"clip": torch.zeros(1), "sample_id": torch.tensor(5)}])
    assert batch["sample_id"].tolist() == [5]
