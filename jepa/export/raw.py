"""What every checkpoint reader hands to the loader: our parameter names plus the models' Args.

Readers (ours, exported, official `.pt`, HF `VJEPA2Model`) differ only in file layout and
naming; once they produce a `RawCheckpoint`, building and strictly loading the models is
one code path (`jepa.export.load`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from jepa.models.args import EncoderArgs, PredictorArgs

ENCODER_ROLES: tuple[str, ...] = ("target_encoder", "encoder")
ROLES: tuple[str, ...] = ("target_encoder", "encoder", "predictor")


@dataclass
class RawCheckpoint:
    """State dicts by role ("encoder", "target_encoder", "predictor") in our names, and configs.

    `encoder_args` describe both encoders; `predictor_args` the predictor (None without one).
    `notes` record guesses (inferred sizes, fallbacks) so the loader can report them.
    """

    format: str
    source: str
    states: dict[str, dict[str, Tensor]]
    encoder_args: EncoderArgs
    predictor_args: PredictorArgs | None = None
    notes: list[str] = field(default_factory=list)

    def encoder_state(self, which: str) -> tuple[str, dict[str, Tensor]]:
        """(role actually used, state) for `which`; "target_encoder" falls back to "encoder"."""
        if which not in ENCODER_ROLES:
            raise ValueError(f"which must be one of {ENCODER_ROLES}, got {which!r}")
        if which in self.states:
            return which, self.states[which]
        if which == "target_encoder" and "encoder" in self.states:
            return "encoder", self.states["encoder"]
        raise KeyError(f"{self.source} has no {which!r} weights; it holds {sorted(self.states)}")
