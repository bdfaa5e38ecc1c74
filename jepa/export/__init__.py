"""Load encoders from any checkpoint source, export them, and extract embeddings.

Readers (ours, exported, official V-JEPA `.pt`, HF `VJEPA2Model`) turn a source into our
parameter names plus constructor kwargs (`RawCheckpoint`); `load.py` builds and strictly
fills the models; `writers.py` writes the export formats; `embed.py` runs an encoder over a
manifest into sharded embedding files.
"""

from jepa.export.load import LoadedModels, load_encoder, load_models, load_predictor, read_source
from jepa.export.state import CheckpointMismatchError, UnsafeCheckpointError
from jepa.export.writers import EXPORT_FORMATS, export_encoder

__all__ = [
    "EXPORT_FORMATS",
    "CheckpointMismatchError",
    "LoadedModels",
    "UnsafeCheckpointError",
    "export_encoder",
    "load_encoder",
    "load_models",
    "load_predictor",
    "read_source",
]
