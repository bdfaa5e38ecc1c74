"""Typed configuration schema for pretraining.

Hydra merges the YAML tree under ``configs/`` into these dataclasses, so a misspelt key or a
value of the wrong type fails at compose time, before any data is read or model is built
(the released code reads untyped dicts and fails hours later, or never).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from jepa.models.args import EncoderArgs, ModelArgs, PredictorArgs


def args_section(args_type: type[ModelArgs], name: str) -> type:
    """A Hydra section with every settable field of `args_type`, each defaulting to None (= the
    registered architecture's value), so a new Args field is a config key with no schema edit."""

    def schema_type(hint: Any) -> Any:
        return hint if hint in (int, float, bool, str) else Any  # (H, W) pairs: an int or a list

    hints = typing.get_type_hints(args_type)
    fields = [(f.name, schema_type(hints[f.name]) | None, None) for f in args_type.settable_fields()]
    # Named in this module, so a pickled config (submitit ships one) resolves to the same class.
    return dataclasses.make_dataclass(name, fields, namespace={"__module__": __name__})


EncoderSection = args_section(EncoderArgs, "EncoderSection")
PredictorSection = args_section(PredictorArgs, "PredictorSection")


@dataclass
class ModelConfig:
    # Registered architectures (jepa.models.registry); the sections below replace their fields.
    name: str = "vit_tiny"
    predictor_name: str = "tiny"
    encoder: EncoderSection = field(default_factory=EncoderSection)  # type: ignore[valid-type]
    predictor: PredictorSection = field(default_factory=PredictorSection)  # type: ignore[valid-type]
    # One flag for both models: it trades compute for memory and changes no result.
    activation_checkpointing: bool = False
    # Released V-JEPA 2 passes the clip-length group index (0 for one clip length), so all mask
    # configs share mask token 0; True gives each mask config its own token.
    per_config_mask_tokens: bool = False
    # V-JEPA 2.1's deep self-supervision: encoder blocks (ending at the last) whose outputs the
    # predictor takes, concatenated, and predicts from the teacher; [] = the last block only.
    pred_levels: list[int] = field(default_factory=list)


# The flat `model:` keys of run configs written before the encoder / predictor sections existed.
_FLAT_MODEL_KEYS = {
    **{k: ("encoder", k) for k in ("img_size", "num_frames", "patch_size", "tubelet_size", "pos_embed",
                                   "rope_layout", "drop_path_rate")},
    "pred_depth": ("predictor", "depth"), "pred_embed_dim": ("predictor", "predictor_embed_dim"),
    "pred_num_heads": ("predictor", "num_heads"), "num_mask_tokens": ("predictor", "num_mask_tokens"),
    "zero_init_mask_tokens": ("predictor", "zero_init_mask_tokens"),
}  # fmt: skip


def upgrade_model_section(model: Any) -> Any:
    """A stored `model:` section in today's layout, so older run directories still load."""
    values = OmegaConf.to_container(model, resolve=True) if OmegaConf.is_config(model) else dict(model)
    if not set(values) & set(_FLAT_MODEL_KEYS):
        return model
    out: dict[str, Any] = {"predictor_name": "vjepa2", "encoder": {}, "predictor": {}}
    for key, value in values.items():
        section, name = _FLAT_MODEL_KEYS.get(key, (None, key))
        (out[section] if section else out)[name] = value
    return OmegaConf.create(out)


@dataclass
class DatasetConfig:
    # A manifest or folder; for kind "shards", tar shards: a folder, glob or {000..099} range.
    path: str = "???"
    weight: float = 1.0
    # "auto" / "video" / "image" filter a manifest's rows; "shards" reads tar shards.
    kind: str = "auto"


@dataclass
class SyntheticConfig:
    enabled: bool = False
    cache_dir: str | None = None
    num_videos: int = 64
    num_frames: int = 32
    size: int = 64
    fps: int = 8
    seed: int = 0
    # Harder variants (jepa.data.synthetic): sprites of other shapes moving any way, and a
    # camera panning at this many pixels per frame; 0 = the demo's set.
    distractors: int = 0
    pan: float = 0.0


@dataclass
class DataConfig:
    datasets: list[DatasetConfig] = field(default_factory=list)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    batch_size: int = 8
    frames_per_clip: int = 16
    fps: float | None = None
    frame_step: int | None = 2
    duration: float | None = None
    crop_size: int = 64
    crop_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    crop_aspect: list[float] = field(default_factory=lambda: [0.75, 1.35])
    hflip: bool = True
    backend: str = "auto"
    # The label column of manifests with a header row (`path,digit,direction`); None: a column
    # named `label`, else the only other one, else none. Pretraining reads no label; set it to
    # check the column exists, as the probes will need it.
    label_column: str | None = None
    # None: one per core this process may use, minus one for the training loop (at most 16).
    num_workers: int | None = 0
    # Threads per loader worker, each loading whole clips of a batch (FFmpeg decodes without
    # the GIL). None: workers x threads covers the cores left for loading (jepa.data.loader).
    decode_threads: int | None = None
    # A video shorter than one clip: "fit" (spread the clip over it), "pad" (repeat its last frame), "skip".
    short_video: str = "fit"
    # Read tar shards front to back, dealt to (rank, worker) slots (webdataset-style), instead
    # of by random access. Needs one source of kind "shards"; resumes exactly only with the
    # same number of processes and workers.
    stream_shards: bool = False


@dataclass
class MaskBlockConfig:
    spatial_scale: list[float] = field(default_factory=lambda: [0.15, 0.15])
    temporal_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    aspect_ratio: list[float] = field(default_factory=lambda: [0.75, 1.5])
    num_blocks: int = 8
    max_temporal_keep: float = 1.0
    max_keep: int | None = None
    min_keep: int = 1
    # True: the target is every token outside the context, so the batch-length cut drops none
    # (jepa.masks.multiblock.MaskConfig).
    full_complement: bool = False
    # "first" (released): the context may use the first max_temporal_keep of the clip; "random":
    # that window sits at a random slice per sample, so the target is past and future.
    context_window: str = "first"


@dataclass
class MaskConfig:
    configs: list[MaskBlockConfig] = field(default_factory=list)


@dataclass
class OptimConfig:
    lr: float = 5.25e-4
    start_lr: float = 1e-4
    final_lr: float = 5.25e-4
    # The global batch lr / start_lr / final_lr were chosen for: a run at another global batch
    # scales them by (its batch / this) ** lr_batch_power (0.5, square-root scaling, keeps
    # AdamW's update noise about level). null = use them as given at any batch.
    lr_reference_batch: int | None = None
    lr_batch_power: float = 0.5
    warmup_steps: int = 40
    decay: str = "cosine"
    weight_decay: float = 0.04
    final_weight_decay: float = 0.04
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    ema: list[float] = field(default_factory=lambda: [0.99925, 0.99925])
    clip_grad: float | None = None
    loss_exp: float = 1.0
    # Weights of the variance / covariance terms on the context tokens (jepa.train.step.
    # variance_covariance); 0 = the released recipe.
    var_weight: float = 0.0
    cov_weight: float = 0.0
    # LeJEPA's SIGReg on the same tokens (jepa.train.sigreg): an isotropic-Gaussian target for the
    # features instead of a variance hinge; 0 = off. Random directions per step: sigreg_slices.
    sigreg_weight: float = 0.0
    sigreg_slices: int = 256
    # The slice forecast (jepa.train.forecast): the mean of a time slice's context tokens predicts
    # the next slice's targets through one linear map, so pooled features carry motion; 0 = off.
    forecast_weight: float = 0.0
    # Target = mean of the last k target-encoder blocks' outputs, each layer-normed (data2vec's
    # top-k average); 1 = the released target, the final (normed) output.
    target_layers: int = 1
    # V-JEPA 2.1's dense term: the predictor also regresses the targets at the context positions,
    # weighted by context_weight / sqrt(distance to the nearest target token); 0 = V-JEPA 2.
    context_weight: float = 0.0
    # Steps over which that weight ramps linearly from context_weight / n to context_weight
    # (V-JEPA 2.1 warms it up so it does not hurt global features early); 0 = full from step 0.
    context_warmup_steps: int = 0
    # The predictor's lr as a multiple of the encoder's (same schedule): a predictor that is
    # still random back-propagates noise into the encoder, so it may learn faster; 1 = released.
    predictor_lr_scale: float = 1.0


@dataclass
class OnlineProbeConfig:
    """Linear-probe and k-NN top-1 of the teacher on a small labelled manifest (jepa.train.online_probe)."""

    manifest: str | None = None  # None: off
    every: int = 100  # steps between probes (and at the last step)
    label_column: str | None = None
    max_videos: int = 256  # the first of a fixed permutation: the probe's cost stays bounded
    val_fraction: float = 0.5
    knn_k: int = 10


@dataclass
class TrainerConfig:
    max_steps: int = 200
    grad_accum: int = 1
    # Run the mask configs one at a time, each followed by its backward, so only one config's
    # activations are alive at once; same loss and gradients (the var/cov terms ride on config
    # 0's call). Off under FSDP, whose lazy init forbids the target pass before the root forward.
    backward_per_mask: bool = True
    mixed_precision: str = "no"
    cpu: bool = False
    ckpt_every: int = 100
    keep_last: int = 2
    log_every: int = 10
    max_nonfinite: int = 5
    resume: bool = True
    # Start from another run's weights (a run dir or checkpoint dir) with a fresh optimizer and
    # step 0: the cooldown / progressive-resolution phase. Ignored when this run has its own
    # checkpoint to resume from.
    init_from: str | None = None
    progress: bool = True
    tensorboard: bool = True
    threads: int | None = None
    # Warn when the across-batch feature std (`feat_std` in metrics.jsonl) drops below this:
    # the encoder is mapping different clips to nearly the same vector (collapse).
    collapse_threshold: float = 0.01
    # ... or when the effective rank (RankMe) of the teacher's or student's token features falls
    # below this share of its value at the run's first step: the partial collapse that feat_std
    # misses (jepa.train.health).
    rank_warn_fraction: float = 0.25
    online_probe: OnlineProbeConfig = field(default_factory=OnlineProbeConfig)
    # Shard weights, gradients and optimizer state over all processes (torch FSDP2, one unit
    # per transformer block) instead of replicating them (DDP): needed for ViT-g and larger.
    fsdp: bool = False
    # torch.compile each transformer block (jepa.models.layers.compile_blocks): on a GPU with
    # bf16 the step runs about 1.4x faster (docs/benchmarks.md); the first steps pay the compile.
    compile: bool = False


@dataclass
class LaunchConfig:
    """Resources for ``-m hydra/launcher=slurm`` (or ``local``); read only by
    configs/hydra/launcher/*.yaml, so an experiment can state the size it was tuned for."""

    nodes: int = 1
    # One process per GPU (on CPU with the local launcher: the number of processes).
    gpus_per_node: int = 8
    cpus_per_task: int = 10
    mem_gb: int | None = None
    timeout_min: int = 4320
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    # Times SLURM may requeue the job at its time limit; each restart resumes from `latest`.
    max_requeue: int = 0


@dataclass
class JepaConfig:
    name: str = "demo"
    seed: int = 0
    run_dir: str = "runs/${name}"
    # What the predictor regresses: "jepa" (EMA target-encoder features, the recipe) or
    # "pixel" (normalised pixels of the masked tubelets, the VideoMAE-style baseline).
    objective: str = "jepa"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)


class ConfigError(ValueError):
    """A config that does not fit the schema (unknown key, wrong type)."""


def _unknown_keys(node: Any, schema: Any, prefix: str) -> list[str]:
    if dataclasses.is_dataclass(schema):
        if not isinstance(node, dict):
            return []
        fields = {f.name: f.type for f in dataclasses.fields(schema)}
        hints = typing.get_type_hints(schema)
        bad = [f"{prefix}{k}" for k in node if k not in fields]
        for k, v in node.items():
            if k in fields:
                bad += _unknown_keys(v, hints[k], f"{prefix}{k}.")
        return bad
    origin, args = typing.get_origin(schema), typing.get_args(schema)
    if origin in (list, list) and args and isinstance(node, list):
        return [b for i, item in enumerate(node) for b in _unknown_keys(item, args[0], f"{prefix}{i}.")]
    if origin is typing.Union:
        return [b for a in args if dataclasses.is_dataclass(a) for b in _unknown_keys(node, a, prefix)]
    return []


def validate_config(cfg: Any) -> Any:
    """Check ``cfg`` against the typed schema; unknown keys or wrong types raise ``ConfigError``.

    Composition already checks keys coming from the YAML tree, but Hydra's ``+key=value``
    bypasses the schema on purpose; this closes that gap before any work is done.
    """
    container = OmegaConf.to_container(cfg, resolve=False)
    unknown = _unknown_keys(container, JepaConfig, "")
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(unknown)} (see configs/ and jepa/train/config.py)")
    try:
        return OmegaConf.merge(OmegaConf.structured(JepaConfig), cfg)
    except (ConfigKeyError, ValidationError) as e:
        raise ConfigError(f"invalid config: {e}") from None


def register_configs() -> None:
    """Register the schema so ``configs/config.yaml`` can name it first in its defaults."""
    ConfigStore.instance().store(name="jepa_schema", node=JepaConfig)


register_configs()
