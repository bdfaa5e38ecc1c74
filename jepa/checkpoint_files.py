"""Reading the files checkpoints are made of, with errors that name the file.

Every loader in the package (training checkpoints, exports, HF directories, official `.pt`
files, probes, world-model checkpoints) reads through these three functions, so an empty,
truncated or foreign file is reported as `CheckpointMismatchError` with its path, size and
cause instead of a bare `SafetensorError: invalid header length` or `JSONDecodeError` that
says neither which file nor what to do. A pickle that would run code is refused
(`UnsafeCheckpointError`). This module sits below `jepa.train` and `jepa.export` so both
can use it without importing each other.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as _load_safetensors
from torch import Tensor

PathLike = str | Path


class CheckpointMismatchError(ValueError):
    """Raised when a checkpoint does not fit the model it is loaded into, or cannot be read."""


class UnsafeCheckpointError(RuntimeError):
    """Raised when a checkpoint would need arbitrary code to unpickle."""


def read_safetensors(path: PathLike) -> dict[str, Tensor]:
    """A safetensors file's tensors (on CPU)."""
    try:
        return _load_safetensors(str(path))
    except (SafetensorError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise unreadable(path, err, "safetensors file") from err


def read_json(path: PathLike) -> Any:
    """A JSON file's value."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise unreadable(path, err, "JSON file") from err


def load_torch_file(path: PathLike) -> Any:
    """A checkpoint file's contents: `torch.load` restricted to tensors and plain containers (a
    pickle carrying code is refused), or a safetensors file's tensors whatever its suffix; a
    file that is neither (empty, truncated, another format) is named as such."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":  # safetensors: an 8-byte header length, then the JSON header
        return read_safetensors(path)
    # torch.save writes a zip archive (PK..) or, in the legacy format, a pickle (protocol >= 2
    # opens with 0x80). Anything else would reach the unpickler as garbage opcodes and read as
    # "unsafe", which it is not.
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise unreadable(path, ValueError(f"starts with {head[:4]!r}: not a zip archive, pickle or safetensors file"))
    for mmap in (True, False):
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(
                f"refusing to load {path}: it needs arbitrary Python objects to unpickle, which could run code. "
                f"Only tensors and plain containers are accepted (torch.load weights_only=True). Detail: {err}"
            ) from err
        except RuntimeError as err:
            if mmap and "mmap" in str(err):
                continue  # a legacy (non-zip) file cannot be memory-mapped: read it whole
            raise unreadable(path, err) from err
        except (EOFError, KeyError, ValueError, OSError) as err:
            raise unreadable(path, err) from err
    raise AssertionError("unreachable: the second torch.load returns or raises")


def unreadable(path: PathLike, err: BaseException, kind: str = "torch checkpoint") -> CheckpointMismatchError:
    """The error for a file that exists but cannot be parsed: path, size and the reader's cause."""
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    detail = str(err).splitlines()[0].split(". ")[0][:200] if str(err) else "unexpected end of file"
    return CheckpointMismatchError(
        f"{path} ({size} bytes) is not a readable {kind} (empty, truncated or another format?): "
        f"{type(err).__name__}: {detail}"
    )
