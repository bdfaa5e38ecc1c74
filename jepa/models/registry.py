"""Named encoder sizes (timm-style registry) with the official V-JEPA dimensions.

`create_encoder("vit_large", num_frames=64, img_size=256)` builds the size's dims with any
constructor argument overridden; `register_model` adds new names from anywhere.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer


@dataclass(frozen=True)
class ViTSize:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float

    def as_kwargs(self) -> dict[str, Any]:
        return dict(embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio)


VIT_SIZES: dict[str, ViTSize] = {
    "vit_tiny": ViTSize(192, 12, 3, 4.0),
    "vit_small": ViTSize(384, 12, 6, 4.0),
    "vit_base": ViTSize(768, 12, 12, 4.0),
    "vit_large": ViTSize(1024, 24, 16, 4.0),
    "vit_huge": ViTSize(1280, 32, 16, 4.0),
    "vit_giant": ViTSize(1408, 40, 22, 48 / 11),
    # The released gigantic was meant to use 64/13, but a misspelled keyword left it at 4.
    "vit_gigantic": ViTSize(1664, 48, 26, 4.0),
}

_MODELS: dict[str, Callable[..., VisionTransformer]] = {}


def register_model(fn: Callable[..., VisionTransformer]) -> Callable[..., VisionTransformer]:
    """Register an encoder factory under its function name."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted, optionally filtered by a shell-style pattern ('vit_*')."""
    names = sorted(_MODELS)
    return names if pattern is None else fnmatch.filter(names, pattern)


def create_encoder(name: str, **overrides: Any) -> VisionTransformer:
    """Build a registered encoder; keyword overrides replace any constructor argument."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[name](**overrides)


def create_predictor(**kwargs: Any) -> VisionTransformerPredictor:
    """Build a predictor; defaults are the released V-JEPA 2 ones (width 384, depth 12, 12 heads, 10 mask tokens)."""
    kwargs.setdefault("predictor_embed_dim", 384)
    kwargs.setdefault("depth", 12)
    kwargs.setdefault("num_heads", 12)
    kwargs.setdefault("num_mask_tokens", 10)
    return VisionTransformerPredictor(**kwargs)


def _sized(size: str, overrides: dict[str, Any]) -> VisionTransformer:
    return VisionTransformer(**{**VIT_SIZES[size].as_kwargs(), **overrides})


@register_model
def vit_tiny(**overrides: Any) -> VisionTransformer:
    return _sized("vit_tiny", overrides)


@register_model
def vit_small(**overrides: Any) -> VisionTransformer:
    return _sized("vit_small", overrides)


@register_model
def vit_base(**overrides: Any) -> VisionTransformer:
    return _sized("vit_base", overrides)


@register_model
def vit_large(**overrides: Any) -> VisionTransformer:
    return _sized("vit_large", overrides)


@register_model
def vit_huge(**overrides: Any) -> VisionTransformer:
    return _sized("vit_huge", overrides)


@register_model
def vit_giant(**overrides: Any) -> VisionTransformer:
    return _sized("vit_giant", overrides)


@register_model
def vit_gigantic(**overrides: Any) -> VisionTransformer:
    return _sized("vit_gigantic", overrides)
