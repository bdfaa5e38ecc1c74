"""`export_encoder`: write an encoder (from a model or any loadable source) in an export format.

Formats:
- "jepa": our `config.json` + `model.safetensors` (`jepa.load_encoder(dir)` reads it back);
- "hf": the transformers `VJEPA2Model` layout (`VJEPA2Model.from_pretrained(dir)` opens it);
  with a probe, `VJEPA2ForVideoClassification` (encoder + the probe as its head);
- "pt2": a `torch.export` program of the encoder for one clip shape (batch size free),
  loadable with `torch.export.load(path).module()` and no jepa install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from jepa.export.formats import save_exported
from jepa.export.hf import save_hf
from jepa.export.hf_classifier import save_hf_classifier
from jepa.export.load import Source, build_models, read_source
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer

EXPORT_FORMATS: tuple[str, ...] = ("jepa", "hf", "pt2")
PT2_FILE = "encoder.pt2"


def export_program(
    encoder: VisionTransformer, path: str | Path, num_frames: int, img_size: int, batch: int = 2
) -> Path:
    """Save a `torch.export` program of `encoder` for (B, C, num_frames, img_size, img_size) clips."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(batch, encoder.in_chans, num_frames, img_size, img_size)
    dims = {"x": {0: torch.export.Dim("batch", min=1)}}
    with torch.no_grad():
        program = torch.export.export(encoder.eval(), (example,), dynamic_shapes=dims)
    torch.export.save(program, str(path))
    return path


def export_encoder(
    model_or_source: VisionTransformer | Source,
    out: str | Path,
    format: str = "jepa",
    *,
    which: str = "target_encoder",
    predictor: bool | VisionTransformerPredictor | None = False,
    strict: bool = True,
    num_frames: int | None = None,
    img_size: int | None = None,
    meta: dict[str, Any] | None = None,
    encoder_kwargs: dict[str, Any] | None = None,
    predictor_kwargs: dict[str, Any] | None = None,
    probe: torch.nn.Module | None = None,
) -> Path:
    """Export an encoder; returns the written directory (or `.pt2` file).

    `model_or_source` is a `VisionTransformer` or anything `jepa.load_encoder` reads. With a
    source, `predictor=True` also exports its predictor ("jepa" and "hf" formats); with a
    model, pass the predictor module. "pt2" needs the clip shape (defaults: the model's).
    `encoder_kwargs` / `predictor_kwargs` override stored or inferred architecture arguments
    of a source (e.g. `num_heads` for an official `.pt`). `probe` (an `AttentiveClassifier`,
    e.g. from `jepa.eval.load_probe`), "hf" only, writes a `VJEPA2ForVideoClassification`
    whose head is the probe.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    if probe is not None and format != "hf":
        raise ValueError(f"a probe is exported only in the hf format (VJEPA2ForVideoClassification), not {format!r}")
    pred: VisionTransformerPredictor | None = None
    info: dict[str, Any] = dict(meta or {})
    if isinstance(model_or_source, VisionTransformer):
        encoder = model_or_source
        pred = predictor if isinstance(predictor, VisionTransformerPredictor) else None
    else:
        raw = read_source(model_or_source, encoder_kwargs, predictor_kwargs)
        role, _ = raw.encoder_state(which)
        roles = (role, "predictor") if predictor and "predictor" in raw.states else (role,)
        if predictor and "predictor" not in raw.states:
            raise KeyError(f"{raw.source} holds no predictor to export")
        models = build_models(raw, roles, strict)
        encoder = getattr(models, role)
        pred = models.predictor
        info.update(source=raw.source, source_format=raw.format, role=role)
    if format == "pt2":
        h, w = encoder.img_size
        size = img_size or h
        if img_size is None and h != w:
            raise ValueError(f"pass img_size for the non-square model {h}x{w}")
        target = Path(out)
        target = target / PT2_FILE if target.suffix != ".pt2" else target
        return export_program(encoder, target, num_frames or encoder.num_frames, size)
    enc_state, enc_cfg = encoder.state_dict(), encoder.args
    pred_state = pred.state_dict() if pred is not None else None
    pred_cfg = pred.args if pred is not None else None
    if format == "hf" and probe is not None:
        return save_hf_classifier(out, enc_state, enc_cfg, probe, pred_state, pred_cfg)
    if format == "hf":
        return save_hf(out, enc_state, enc_cfg, pred_state, pred_cfg)
    return save_exported(out, enc_state, enc_cfg, pred_state, pred_cfg, meta=info)
