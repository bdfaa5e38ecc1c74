"""Models: ViT encoder, predictor, attentive pooler, the shared layers they are built from, and
the Args dataclasses and registries that describe them."""

from jepa.models.args import ACPredictorArgs, EncoderArgs, PredictorArgs
from jepa.models.attentive_pool import AttentivePooler
from jepa.models.layers import (
    Attention,
    Block,
    CrossAttention,
    CrossBlock,
    Mlp,
    PatchEmbed3D,
    compile_blocks,
    run_blocks,
)
from jepa.models.pos_embed import interpolate_pos_embed, sincos_3d
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.registry import (
    ENCODERS,
    PREDICTORS,
    Registry,
    create_encoder,
    create_predictor,
    list_models,
    register_model,
)
from jepa.models.rope import RoPE3D, grid_positions, index_to_position
from jepa.models.vit import VisionTransformer

__all__ = [
    "ACPredictorArgs",
    "ENCODERS",
    "EncoderArgs",
    "PREDICTORS",
    "PredictorArgs",
    "Registry",
    "Attention",
    "AttentivePooler",
    "Block",
    "CrossAttention",
    "CrossBlock",
    "Mlp",
    "PatchEmbed3D",
    "compile_blocks",
    "RoPE3D",
    "VisionTransformer",
    "VisionTransformerPredictor",
    "create_encoder",
    "create_predictor",
    "grid_positions",
    "index_to_position",
    "interpolate_pos_embed",
    "list_models",
    "register_model",
    "run_blocks",
    "sincos_3d",
]
