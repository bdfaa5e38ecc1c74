"""Architecture arguments: one frozen dataclass per model, the only place its options are declared.

Everything that describes a model reads and writes these: the registry (names -> Args), the
Hydra schema (`model.encoder.*` / `model.predictor.*` are generated from the fields), the
training builder, the HF and official-checkpoint adapters, and `model.config`
(`asdict(model.args)`), which checkpoints and exports store so `Args.from_dict` rebuilds the
model. Adding an option is one field here plus the adapter lines that map it.

Fields marked `derived` are not set on their own: the builder copies them from the encoder
(the predictor's token grid and input width) or from one training flag (activation
checkpointing), so the Hydra sections leave them out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from jepa.models.rope import ROPE_LAYOUTS

POS_EMBED_TYPES: tuple[str, ...] = ("rope", "sincos")
A = TypeVar("A", bound="ModelArgs")


def derived(default: Any) -> Any:
    """A field the builder sets from another model or flag (not a Hydra key of its own)."""
    return field(default=default, metadata={"derived": True})


def as_pair(value: int | tuple[int, int] | list[int], what: str) -> tuple[int, int]:
    """An int or a pair as (H, W) ints."""
    h, w = (value, value) if isinstance(value, int) else tuple(value)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return int(h), int(w)


@dataclass(frozen=True)
class ModelArgs:
    """What every Args type shares: building from a dict and changing fields, by name, checked."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def settable_fields(cls) -> tuple[dataclasses.Field, ...]:
        """The fields a config sets directly (not `derived`)."""
        return tuple(f for f in dataclasses.fields(cls) if not f.metadata.get("derived"))

    @classmethod
    def check_names(cls, names: Any) -> None:
        unknown = sorted(set(names) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {unknown}; fields: {', '.join(cls.field_names())}")

    @classmethod
    def from_dict(cls: type[A], values: Mapping[str, Any]) -> A:
        """Args from a stored config (`model.config`, an export's config.json); unknown keys raise."""
        cls.check_names(values)
        return cls(**values)

    @classmethod
    def of(cls: type[A], value: A | Mapping[str, Any]) -> A:
        """`value` itself if it is these Args, else Args from its dict (e.g. `model.config`)."""
        return value if isinstance(value, cls) else cls.from_dict(value)

    def replace(self: A, **changes: Any) -> A:
        """A copy with `changes` applied; a misspelt name raises instead of being ignored."""
        self.check_names(changes)
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_positions(pos_embed: str, rope_layout: str) -> None:
    if pos_embed not in POS_EMBED_TYPES:
        raise ValueError(f"pos_embed must be one of {POS_EMBED_TYPES}, got {pos_embed!r}")
    if rope_layout not in ROPE_LAYOUTS:
        raise ValueError(f"rope_layout must be one of {ROPE_LAYOUTS}, got {rope_layout!r}")


def _check_width(width: int, depth: int, num_heads: int, what: str) -> None:
    if min(width, depth, num_heads) < 1 or width % num_heads:
        raise ValueError(
            f"{what}: width, depth and num_heads must be >= 1 and the width divisible by num_heads, "
            f"got width {width}, depth {depth}, num_heads {num_heads}"
        )


@dataclass(frozen=True)
class EncoderArgs(ModelArgs):
    """`VisionTransformer`; defaults are ViT-B/16 on 16-frame 224-px clips.

    img_size, num_frames: the clip the model is built for (sin-cos tables; RoPE runs at any size).
    patch_size, tubelet_size: a token covers tubelet frames x patch x patch pixels.
    in_chans: input channels. embed_dim, depth, num_heads, mlp_ratio, qkv_bias: the transformer.
    qk_norm: LayerNorm of each head's queries and keys (bounded attention logits; not in the releases).
    drop_path_rate: stochastic depth, rising linearly over the blocks.
    pos_embed: "rope" (3D RoPE in attention, V-JEPA 2) or "sincos" (fixed table, V-JEPA 1).
    rope_layout: "released" loads official weights; "interleaved" is a true rotation.
    use_activation_checkpointing: recompute block activations in backward (derived: a training flag).
    init_std: truncated-normal std of the weights.
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_norm: bool = False
    drop_path_rate: float = 0.0
    pos_embed: str = "rope"
    rope_layout: str = "released"
    use_activation_checkpointing: bool = derived(False)
    init_std: float = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", as_pair(self.img_size, "img_size"))
        _check_positions(self.pos_embed, self.rope_layout)
        _check_width(self.embed_dim, self.depth, self.num_heads, "encoder")
        if min(self.patch_size, self.num_frames, self.tubelet_size, self.in_chans) < 1:
            raise ValueError("patch_size, num_frames, tubelet_size and in_chans must be >= 1")


@dataclass(frozen=True)
class PredictorArgs(ModelArgs):
    """`VisionTransformerPredictor`; defaults are the released V-JEPA 2 predictor (384 wide, 12 deep).

    img_size, patch_size, num_frames, tubelet_size, pos_embed, rope_layout (derived): the encoder's.
    embed_dim (derived): the encoder tokens it reads and predicts (x levels for V-JEPA 2.1).
    predictor_embed_dim, depth, num_heads, mlp_ratio, qkv_bias: its own transformer.
    drop_path_rate, init_std: as for the encoder.
    num_mask_tokens: learned mask tokens (one per mask config or clip-length group).
    zero_init_mask_tokens: mask tokens start at zero, as released (else truncated normal).
    use_activation_checkpointing (derived): the training flag.
    """

    img_size: tuple[int, int] = derived((224, 224))
    patch_size: int = derived(16)
    num_frames: int = derived(16)
    tubelet_size: int = derived(2)
    embed_dim: int = derived(768)
    predictor_embed_dim: int = 384
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    num_mask_tokens: int = 10
    zero_init_mask_tokens: bool = True
    pos_embed: str = derived("rope")
    rope_layout: str = derived("released")
    use_activation_checkpointing: bool = derived(False)
    init_std: float = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", as_pair(self.img_size, "img_size"))
        _check_positions(self.pos_embed, self.rope_layout)
        _check_width(self.predictor_embed_dim, self.depth, self.num_heads, "predictor")
        if self.num_mask_tokens < 1 or self.embed_dim < 1:
            raise ValueError(f"num_mask_tokens and embed_dim must be >= 1, got {self.num_mask_tokens}, "
                             f"{self.embed_dim}")  # fmt: skip

    def for_encoder(self, encoder: EncoderArgs, levels: int = 1) -> PredictorArgs:
        """These args on `encoder`'s grid and positions, reading `levels` concatenated encoder outputs."""
        return self.replace(
            img_size=encoder.img_size, patch_size=encoder.patch_size, num_frames=encoder.num_frames,
            tubelet_size=encoder.tubelet_size, embed_dim=encoder.embed_dim * max(1, levels),
            pos_embed=encoder.pos_embed, rope_layout=encoder.rope_layout,
            use_activation_checkpointing=encoder.use_activation_checkpointing,
        )  # fmt: skip


@dataclass(frozen=True)
class ACPredictorArgs(ModelArgs):
    """`ACPredictor` (V-JEPA 2-AC); defaults are the released one on ViT-g/16 at 256 px.

    embed_dim: the frozen encoder's width. predictor_embed_dim, depth, num_heads, mlp_ratio: its transformer.
    grid_size: patch tokens per frame (rows, columns).
    action_dim, state_dim: action and proprioceptive state sizes; extrinsics_dim: 0 for none.
    rope_layout, drop_path_rate, init_std: as for the encoder.
    activation_checkpointing: recompute block activations in backward.
    """

    embed_dim: int = 1408
    predictor_embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    grid_size: tuple[int, int] = (16, 16)
    action_dim: int = 7
    state_dim: int = 7
    extrinsics_dim: int = 0
    rope_layout: str = "released"
    drop_path_rate: float = 0.0
    init_std: float = 0.02
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid_size", as_pair(self.grid_size, "grid_size"))
        _check_positions("rope", self.rope_layout)
        _check_width(self.predictor_embed_dim, self.depth, self.num_heads, "AC predictor")
        if min(self.action_dim, self.state_dim, self.embed_dim) < 1 or self.extrinsics_dim < 0:
            raise ValueError(f"bad sizes: embed {self.embed_dim}, action {self.action_dim}, "
                             f"state {self.state_dim}, extrinsics {self.extrinsics_dim}")  # fmt: skip
