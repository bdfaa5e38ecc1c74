"""jepa: pretrain video world models with the JEPA recipe (V-JEPA / V-JEPA 2)."""

__version__ = "0.1.0"
