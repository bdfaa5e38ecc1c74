"""Build models, data and optimizer from the typed config (no training logic here)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from jepa.data.dataset import VideoDataset
from jepa.data.loader import build_pretrain_loader, default_decode_threads, default_num_workers
from jepa.data.manifest import read_manifest
from jepa.data.mixing import MixedDataset
from jepa.data.shards import ShardDataset, build_stream_loader
from jepa.data.synthetic import ensure_synthetic_dataset
from jepa.data.transforms import RandomResizedCropClip
from jepa.data.video import ClipSampler
from jepa.masks import multiblock
from jepa.masks.multiblock import MaskConfig as MaskSpec
from jepa.models.args import EncoderArgs, PredictorArgs
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.registry import ENCODERS, PREDICTORS
from jepa.models.vit import VisionTransformer
from jepa.train.pixel import PixelMAE, PixelPredictor
from jepa.train.step import JEPA


def section_changes(section: Any) -> dict[str, Any]:
    """The fields a `model.encoder` / `model.predictor` section sets (None = the registry's value)."""
    values = OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) else dict(section)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if v is not None}


def encoder_args(m: Any) -> EncoderArgs:
    """The encoder of the `model:` config: the registered size with the section's fields replaced."""
    changes = section_changes(m.encoder)
    return ENCODERS.args(m.name, **changes, use_activation_checkpointing=m.activation_checkpointing)


def predictor_args(m: Any, encoder: EncoderArgs) -> PredictorArgs:
    """The predictor of the `model:` config, on the encoder's grid (shared by both objectives)."""
    return PREDICTORS.args(m.predictor_name, **section_changes(m.predictor)).for_encoder(encoder, len(m.pred_levels))


def build_encoder(m: Any) -> VisionTransformer:
    return VisionTransformer(encoder_args(m))


def build_predictor(m: Any, encoder: VisionTransformer) -> VisionTransformerPredictor:
    return VisionTransformerPredictor(predictor_args(m, encoder.args))


def build_jepa(cfg: Any) -> JEPA:
    """Context encoder, predictor, and a target encoder that starts as an exact copy."""
    encoder = build_encoder(cfg.model)
    predictor = build_predictor(cfg.model, encoder)
    target = copy.deepcopy(encoder)
    return JEPA(
        encoder,
        predictor,
        target,
        loss_exp=cfg.optim.loss_exp,
        per_config_mask_tokens=cfg.model.per_config_mask_tokens,
        var_weight=cfg.optim.var_weight,
        cov_weight=cfg.optim.cov_weight,
        sigreg_weight=cfg.optim.sigreg_weight,
        sigreg_slices=cfg.optim.sigreg_slices,
        forecast_weight=cfg.optim.forecast_weight,
        target_layers=cfg.optim.target_layers,
        context_weight=cfg.optim.context_weight,
        levels=cfg.model.pred_levels,
        context_warmup_steps=cfg.optim.context_warmup_steps,
        total_steps=cfg.trainer.max_steps,
    )


def build_pixel(cfg: Any) -> PixelMAE:
    """The pixel-target baseline: same encoder and predictor body, output sized to a tubelet's pixels."""
    o = cfg.optim
    if o.var_weight or o.cov_weight or o.sigreg_weight or o.forecast_weight:
        raise ValueError(
            "optim.var_weight / cov_weight / sigreg_weight / forecast_weight are JEPA terms (on teacher "
            f"features); objective=pixel has none, got {o.var_weight}, {o.cov_weight}, {o.sigreg_weight}, "
            f"{o.forecast_weight}: set them to 0"
        )
    if cfg.model.pred_levels:
        raise ValueError(
            f"model.pred_levels is a JEPA option (teacher features of several blocks); objective=pixel has one "
            f"target, the pixels, got {list(cfg.model.pred_levels)}: set it to []"
        )
    if cfg.optim.context_weight:
        raise ValueError(
            "optim.context_weight is a JEPA term (regressing teacher features at the context positions); "
            f"objective=pixel would regress the pixels it is shown, got {cfg.optim.context_weight}: set it to 0"
        )
    encoder = build_encoder(cfg.model)
    out_dim = encoder.in_chans * encoder.tubelet_size * encoder.patch_size**2
    predictor = PixelPredictor(out_dim, predictor_args(cfg.model, encoder.args))
    return PixelMAE(
        encoder, predictor, loss_exp=cfg.optim.loss_exp, per_config_mask_tokens=cfg.model.per_config_mask_tokens
    )


OBJECTIVES = {"jepa": build_jepa, "pixel": build_pixel}


def build_model(cfg: Any) -> nn.Module:
    """The training objective module named by `cfg.objective` (see OBJECTIVES)."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {cfg.objective!r}")
    return OBJECTIVES[cfg.objective](cfg)


def mask_specs(cfg: Any) -> list[MaskSpec]:
    """The run's mask configs, validated (the Hydra schema mirrors `MaskSpec`'s fields)."""
    if not cfg.mask.configs:
        raise ValueError("mask.configs is empty: at least one mask config is needed")
    return multiblock.mask_configs_from_dicts(OmegaConf.to_container(cfg.mask.configs, resolve=True))


def token_grid(cfg: Any) -> tuple[int, int, int]:
    """The token grid of the run's clips (data.frames_per_clip x data.crop_size)."""
    e, d = encoder_args(cfg.model), cfg.data
    if d.frames_per_clip % e.tubelet_size or d.crop_size % e.patch_size:
        raise ValueError(
            f"data.frames_per_clip={d.frames_per_clip} must be divisible by the tubelet size {e.tubelet_size} "
            f"and data.crop_size={d.crop_size} by the patch size {e.patch_size} (model.encoder.*)"
        )
    return multiblock.token_grid(d.frames_per_clip, d.crop_size, e.patch_size, e.tubelet_size)


def dataset_sources(cfg: Any) -> list[tuple[Path, float, str, str | None]]:
    """(manifest path, weight, kind, label column) for every configured source; the synthetic
    set is made on first use."""
    d = cfg.data
    sources = [(Path(s.path), float(s.weight), s.kind, d.label_column) for s in d.datasets]
    if d.synthetic.enabled:
        s = d.synthetic
        manifest = ensure_synthetic_dataset(
            s.cache_dir,
            num_videos=s.num_videos,
            num_frames=s.num_frames,
            size=s.size,
            fps=s.fps,
            seed=s.seed,
            distractors=s.distractors,
            pan=s.pan,
        )
        sources.append((Path(manifest), 1.0, "video", None))
    if not sources:
        raise ValueError("no data: set data.datasets (manifests) or data.synthetic.enabled=true")
    return sources


def build_dataset(cfg: Any) -> torch.utils.data.Dataset:
    d = cfg.data
    sampler = ClipSampler(
        frames_per_clip=d.frames_per_clip,
        fps=d.fps,
        frame_step=d.frame_step,
        duration=d.duration,
        num_clips=1,
        random_start=True,
        short_video=d.short_video,
    )
    transform = RandomResizedCropClip(
        d.crop_size,
        scale=tuple(d.crop_scale),
        ratio=tuple(d.crop_aspect),
        hflip_p=0.5 if d.hflip else 0.0,
    )
    sources = dataset_sources(cfg)
    if d.stream_shards and (len(sources) != 1 or sources[0][2] != "shards"):
        raise ValueError(
            "data.stream_shards needs exactly one source of kind 'shards' (join several shard globs "
            f"with commas in its path); got kinds {[k for _, _, k, _ in sources]}"
        )
    # The outermost dataset spreads a batch over threads; a mix's parts load items one by one.
    threads = loader_threads(d.decode_threads, loader_workers(d.num_workers))
    inner = threads if len(sources) == 1 else 1
    datasets = [
        ShardDataset(str(path), sampler, transform, backend=d.backend, seed=cfg.seed, decode_threads=inner)
        if kind == "shards"
        else VideoDataset(
            read_manifest(path, kind=kind, label_column=label_column),
            sampler,
            transform,
            backend=d.backend,
            seed=cfg.seed,
            decode_threads=inner,
        )
        for path, _, kind, label_column in sources
    ]
    if len(datasets) == 1:
        return datasets[0]
    return MixedDataset(datasets, [w for _, w, _, _ in sources], seed=cfg.seed, decode_threads=threads)


def loader_workers(num_workers: int | None) -> int:
    """`data.num_workers`, with None meaning one per core this process may use minus one."""
    if num_workers is None:
        return default_num_workers()
    if num_workers < 0:
        raise ValueError(f"data.num_workers must be >= 0 or null (one per core), got {num_workers}")
    return num_workers


def loader_threads(decode_threads: int | None, workers: int) -> int:
    """`data.decode_threads`, with None meaning workers x threads covers the cores left for loading."""
    if decode_threads is None:
        return default_decode_threads(workers)
    if isinstance(decode_threads, bool) or decode_threads < 1:
        raise ValueError(f"data.decode_threads must be >= 1 or null (auto), got {decode_threads}")
    return decode_threads


def build_loader(
    cfg: Any, dataset: torch.utils.data.Dataset, rank: int, world_size: int, start_sample: int
) -> torch.utils.data.DataLoader:
    """This rank's endless batch loader, resuming after `start_sample` samples of all ranks."""
    d = cfg.data
    workers = loader_workers(d.num_workers)
    if d.stream_shards:
        return build_stream_loader(
            dataset,
            batch_size=d.batch_size,
            num_workers=workers,
            seed=cfg.seed,
            rank=rank,
            world_size=world_size,
            start_batch=start_sample // (d.batch_size * world_size),
        )
    return build_pretrain_loader(
        dataset,
        batch_size=d.batch_size,
        num_workers=workers,
        seed=cfg.seed,
        rank=rank,
        world_size=world_size,
        start_sample=start_sample,
    )


def param_groups(model: nn.Module, predictor_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms, mask tokens and position tables (all 1-D
    or token-shaped parameters), as the issue asks; ``apply_wd`` marks the decayed group so the
    weight-decay schedule can update it, ``lr_scale`` multiplies the scheduled lr. With a
    predictor lr scale other than 1 the predictor's parameters get groups of their own."""
    if not predictor_lr_scale > 0:
        raise ValueError(f"optim.predictor_lr_scale must be > 0, got {predictor_lr_scale!r}")
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim <= 1 or "mask_token" in name or "pos_embed" in name)
        scale = predictor_lr_scale if "predictor" in name.split(".") else 1.0
        groups.setdefault((decay, scale), []).append(p)
    order = sorted(groups, key=lambda k: (k[1] != 1.0, not k[0]))
    return [
        {"params": groups[k], "apply_wd": k[0], "lr_scale": k[1], **({} if k[0] else {"weight_decay": 0.0})}
        for k in order
    ]


def adamw(groups: list[dict[str, Any]], sharded: bool = False, **options: Any) -> torch.optim.AdamW:
    """AdamW over `groups`, with torch's fused kernel where it has one for the parameters.

    The fused step makes one pass per tensor where the default CPU path loops over tensors and
    the foreach path runs ~10 list-wide passes with full-size temporaries: on the dev CPU the
    ViT-S step's optimizer phase goes from ~57 to ~11 ms (docs/benchmarks.md). Sharded (FSDP)
    parameters keep torch's default choice.
    """
    if not sharded:
        try:
            return torch.optim.AdamW(groups, fused=True, **options)
        except RuntimeError:  # a device (or torch build) without the fused kernel
            pass
    return torch.optim.AdamW(groups, **options)
