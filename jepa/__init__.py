"""jepa: pretrain video world models with the JEPA recipe (V-JEPA / V-JEPA 2).

The loading and export API is re-exported here and imported on first use, so
`import jepa` stays cheap and subpackages never import each other through it.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_encoder": "jepa.export.load",
    "load_predictor": "jepa.export.load",
    "load_models": "jepa.export.load",
    "export_encoder": "jepa.export.writers",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jepa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
