"""torch.hub entry points: build our encoders, optionally filled from a checkpoint.

`pretrained` / `checkpoint` is anything `jepa.load_encoder` reads: a local run, checkpoint,
exported or HF directory, an official V-JEPA `.pt`, or an http(s)/file URL to a file (cached
under `torch.hub.get_dir()`)::

    enc = torch.hub.load("path/to/jepa", "vit_large", source="local")                  # random init
    enc = torch.hub.load("path/to/jepa", "vit_large", source="local", pretrained="https://.../vitl.pt")
    enc = torch.hub.load("path/to/jepa", "encoder", source="local", checkpoint="runs/demo")
    pred = torch.hub.load("path/to/jepa", "predictor", source="local", checkpoint="runs/demo")
    head = torch.hub.load("path/to/jepa", "probe", source="local", checkpoint="https://.../ssv2-vitl.pt")

Loading is strict (any mismatch raises with the full list) and never unpickles code.
"""

from typing import Any

dependencies = ["torch", "safetensors", "timm", "omegaconf"]


def _sized(name: str, pretrained: str | None, kwargs: dict[str, Any]) -> Any:
    from jepa.export.load import load_encoder
    from jepa.models.registry import ENCODERS, create_encoder

    if pretrained is None:
        return create_encoder(name, **kwargs)
    size = ENCODERS.args(name)
    model = load_encoder(pretrained, **kwargs)
    if (model.embed_dim, model.depth) != (size.embed_dim, size.depth):
        raise ValueError(f"{pretrained} holds a {model.embed_dim} x {model.depth} encoder, not {name}")
    return model


def encoder(checkpoint: str, which: str = "target_encoder", strict: bool = True, **kwargs: Any) -> Any:
    """The encoder of any checkpoint source (the EMA target encoder by default), in eval mode."""
    from jepa.export.load import load_encoder

    return load_encoder(checkpoint, which=which, strict=strict, **kwargs)


def predictor(checkpoint: str, strict: bool = True, **kwargs: Any) -> Any:
    """The predictor of a checkpoint source, in eval mode."""
    from jepa.export.load import load_predictor

    return load_predictor(checkpoint, strict=strict, **kwargs)


def probe(checkpoint: str, head: int = 0, num_heads: int = 16) -> Any:
    """An attentive probe, in eval mode: our probe directory, the head of an HF
    `VJEPA2ForVideoClassification` directory, or an official evaluation `.pt` (path or URL;
    `head` picks one of its classifiers, `num_heads` is not recorded there: 16 as released)."""
    from jepa.eval.probe import load_probe
    from jepa.export.load import fetch

    path = fetch(checkpoint) if checkpoint.startswith(("http://", "https://", "file://")) else checkpoint
    return load_probe(path, head=head, num_heads=num_heads)


def vit_tiny(pretrained: str | None = None, **kwargs: Any) -> Any:
    """ViT-tiny/16 (192 wide, 12 deep)."""
    return _sized("vit_tiny", pretrained, kwargs)


def vit_small(pretrained: str | None = None, **kwargs: Any) -> Any:
    """ViT-small/16 (384 wide, 12 deep)."""
    return _sized("vit_small", pretrained, kwargs)


def vit_base(pretrained: str | None = None, **kwargs: Any) -> Any:
    """ViT-base/16 (768 wide, 12 deep)."""
    return _sized("vit_base", pretrained, kwargs)


def vit_large(pretrained: str | None = None, **kwargs: Any) -> Any:
    """ViT-large/16 (1024 wide, 24 deep), the V-JEPA 2 ViT-L."""
    return _sized("vit_large", pretrained, kwargs)


def vit_huge(pretrained: str | None = None, **kwargs: Any) -> Any:
    """ViT-huge/16 (1280 wide, 32 deep)."""
    return _sized("vit_huge", pretrained, kwargs)


def vit_giant(pretrained: str | None = None, **kwargs: Any) -> Any:
    """ViT-giant/16 (1408 wide, 40 deep)."""
    return _sized("vit_giant", pretrained, kwargs)


def vit_gigantic(pretrained: str | None = None, **kwargs: Any) -> Any:
    """ViT-gigantic/16 (1664 wide, 48 deep)."""
    return _sized("vit_gigantic", pretrained, kwargs)
