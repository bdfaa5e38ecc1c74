"""Strict state-dict loading with a full, readable report of what does not fit.

`nn.Module.load_state_dict(strict=False)` silently drops keys (the released hub loader relies
on it, so a wrong architecture loads "fine" and gives garbage features). Here every missing,
unexpected or wrongly-shaped tensor is listed: strict mode raises with the whole list,
non-strict mode loads what fits and warns with the same list.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from jepa.checkpoint_files import CheckpointMismatchError, UnsafeCheckpointError

__all__ = ["CheckpointMismatchError", "LoadReport", "UnsafeCheckpointError", "compare_state", "load_state"]

_MAX_LISTED = 200


@dataclass
class LoadReport:
    """What a state dict did not match: names, and (name, checkpoint shape, model shape)."""

    what: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        lines = [f"{self.what}: checkpoint does not match the model"]
        for title, items in (
            ("missing in checkpoint", self.missing),
            ("unexpected in checkpoint", self.unexpected),
            ("shape mismatch (checkpoint vs model)", [f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in self.mismatched]),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {item}" for item in items[:_MAX_LISTED]]
                if len(items) > _MAX_LISTED:
                    lines.append(f"    ... and {len(items) - _MAX_LISTED} more")
        return "\n".join(lines)


def compare_state(model_state: Mapping[str, Tensor], ckpt: Mapping[str, Tensor], what: str) -> LoadReport:
    """Report the keys and shapes of `ckpt` that do not fit `model_state`."""
    report = LoadReport(what)
    report.missing = sorted(k for k in model_state if k not in ckpt)
    report.unexpected = sorted(k for k in ckpt if k not in model_state)
    report.mismatched = sorted(
        (k, tuple(ckpt[k].shape), tuple(model_state[k].shape))
        for k in model_state
        if k in ckpt and tuple(ckpt[k].shape) != tuple(model_state[k].shape)
    )
    return report


@torch.no_grad()
def load_state(module: nn.Module, state: Mapping[str, Tensor], strict: bool = True, what: str = "model") -> LoadReport:
    """Copy `state` into `module`; raise (strict) or warn (non-strict) listing every mismatch."""
    own = module.state_dict()
    report = compare_state(own, state, what)
    if not report.ok:
        if strict:
            raise CheckpointMismatchError(
                report.describe() + "\n(pass strict=False to load the matching tensors anyway)"
            )
        message = "NON-STRICT LOAD: the model is only partly initialised from the checkpoint.\n" + report.describe()
        warnings.warn(message, stacklevel=3)
    bad = {k for k, _, _ in report.mismatched}
    fitting = {k: v for k, v in state.items() if k in own and k not in bad}
    module.load_state_dict(fitting, strict=False)
    return report
