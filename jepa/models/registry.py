"""Named architectures: each registry maps names to the Args of one model type.

`create_encoder("vit_large", num_frames=64, img_size=256)` builds the registered args with
fields replaced; `ENCODERS.register(name, args)` adds a name from anywhere. The encoder sizes
are the official V-JEPA dimensions; the predictors are the released V-JEPA 2 one and the
half-width one the ViT-tiny demo uses.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Generic

from jepa.models.args import A, EncoderArgs, PredictorArgs
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer


class Registry(Generic[A]):
    """Names -> Args of one model type."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._args: dict[str, A] = {}

    def register(self, name: str, args: A) -> A:
        if name in self._args:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._args[name] = args
        return args

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted, optionally filtered by a shell-style pattern ('vit_*')."""
        names = sorted(self._args)
        return names if pattern is None else fnmatch.filter(names, pattern)

    def __contains__(self, name: object) -> bool:
        return name in self._args

    def items(self) -> list[tuple[str, A]]:
        return sorted(self._args.items())

    def args(self, name: str, **changes: Any) -> A:
        """The registered args of `name` with `changes` applied."""
        if name not in self._args:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._args[name].replace(**changes)


ENCODERS: Registry[EncoderArgs] = Registry("encoder")
for _name, (_dim, _depth, _heads, _ratio) in {
    "vit_tiny": (192, 12, 3, 4.0),
    "vit_small": (384, 12, 6, 4.0),
    "vit_base": (768, 12, 12, 4.0),
    "vit_large": (1024, 24, 16, 4.0),
    "vit_huge": (1280, 32, 16, 4.0),
    "vit_giant": (1408, 40, 22, 48 / 11),
    # The released gigantic was meant to use 64/13, but a misspelled keyword left it at 4.
    "vit_gigantic": (1664, 48, 26, 4.0),
}.items():
    ENCODERS.register(_name, EncoderArgs(embed_dim=_dim, depth=_depth, num_heads=_heads, mlp_ratio=_ratio))

PREDICTORS: Registry[PredictorArgs] = Registry("predictor")
PREDICTORS.register("vjepa2", PredictorArgs())
# Half the released width and depth: enough for ViT-tiny's 192-wide tokens on a CPU budget.
PREDICTORS.register("tiny", PredictorArgs(predictor_embed_dim=192, depth=6, num_heads=6))


def register_model(name: str, args: EncoderArgs) -> EncoderArgs:
    """Register an encoder architecture under `name`."""
    return ENCODERS.register(name, args)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered encoder names, sorted, optionally filtered by a shell-style pattern."""
    return ENCODERS.names(pattern)


def create_encoder(name: str, **changes: Any) -> VisionTransformer:
    """Build a registered encoder; keyword arguments replace any of its EncoderArgs fields."""
    return VisionTransformer(ENCODERS.args(name, **changes))


def create_predictor(name: str = "vjepa2", **changes: Any) -> VisionTransformerPredictor:
    """Build a registered predictor (default: the released V-JEPA 2 one) with fields replaced."""
    return VisionTransformerPredictor(PREDICTORS.args(name, **changes))
