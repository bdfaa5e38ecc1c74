"""World models as the planner sees them: encode frames, roll action sequences forward.

`LatentWorldModel` is the V-JEPA 2-AC one (frozen frame encoder + action-conditioned
predictor, rolled out autoregressively). `OracleWorldModel` knows the environment's true
dynamics and renders the result; it isolates the planner from model error (an upper bound for
the benchmark, and what the planning tests use).

Planning energy (`l1_energy`): the L1 distance between predicted latents and the goal frame's
latents, averaged over tokens and channels (as released).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jepa.world.ac_predictor import ACPredictor
from jepa.world.env import PointTableEnv
from jepa.world.frame_encoder import FrameEncoder

StateTransition = Callable[[Tensor, Tensor], Tensor]  # (K, S), (K, A) -> (K, S)


class WorldModel(Protocol):
    def encode(self, frames: np.ndarray) -> Tensor:
        """uint8 (K, H, W, 3) frames -> (K, ...) latents."""
        ...

    def rollout(self, latent: Tensor, state: Tensor, actions: Tensor) -> Tensor:
        """From one latent (...) and state (S,), apply (K, horizon, A) actions -> (K, horizon, ...)
        predicted latents after each action."""
        ...


def l1_energy(predicted: Tensor, goal: Tensor) -> Tensor:
    """(K, ...) predictions vs one goal (...) -> (K,) mean absolute differences."""
    return (predicted - goal.unsqueeze(0)).abs().flatten(1).mean(1)


def delta_transition(state: Tensor, action: Tensor) -> Tensor:
    """Proprio model for delta actions (the released AC planner adds the xyz deltas to the pose)."""
    return state + action


class LatentWorldModel:
    """Frozen encoder + AC predictor, rolled out with the predictor's own outputs as inputs.

    The proprioceptive state of imagined frames is not predicted but computed from the action by
    `state_transition`, as the released planner does (it composes the pose with the delta).
    """

    def __init__(
        self,
        encoder: FrameEncoder,
        predictor: ACPredictor,
        state_transition: StateTransition = delta_transition,
        normalize: bool = True,
    ) -> None:
        self.encoder = encoder
        # Frozen for planning: gradient planners then differentiate w.r.t. the actions only.
        self.predictor = predictor.eval().requires_grad_(False)
        self.state_transition = state_transition
        self.normalize = normalize
        self.device = next(predictor.parameters()).device

    def encode(self, frames: np.ndarray) -> Tensor:
        return self.encoder(torch.as_tensor(np.asarray(frames)).to(self.device))

    def predict_next(self, latents: Tensor, actions: Tensor, states: Tensor) -> Tensor:
        """(K, T, N, D), (K, T, A), (K, T, S) -> (K, N, D) latents of frame T (layer-normed)."""
        out = self.predictor(latents, actions, states)[:, -1]
        return F.layer_norm(out, out.shape[-1:]) if self.normalize else out

    def rollout(self, latent: Tensor, state: Tensor, actions: Tensor) -> Tensor:
        k, horizon, _ = actions.shape
        latents = latent.to(self.device).unsqueeze(0).unsqueeze(0).expand(k, 1, *latent.shape).contiguous()
        states = state.to(self.device).float().view(1, 1, -1).expand(k, 1, -1)
        actions = actions.to(self.device).float()
        for h in range(horizon):
            nxt = self.predict_next(latents, actions[:, : h + 1], states)
            latents = torch.cat((latents, nxt.unsqueeze(1)), dim=1)
            if h + 1 < horizon:
                states = torch.cat((states, self.state_transition(states[:, -1], actions[:, h]).unsqueeze(1)), dim=1)
        return latents[:, 1:]


class OracleWorldModel:
    """Perfect dynamics: step the true state, render it, and compare images pixel by pixel."""

    def __init__(self, env: PointTableEnv) -> None:
        self.env = env

    def encode(self, frames: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(frames)).float().div(255.0)

    def rollout(self, latent: Tensor, state: Tensor, actions: Tensor) -> Tensor:
        k, horizon = actions.shape[:2]
        states = [state.float().view(1, -1).expand(k, -1)]
        for h in range(horizon):
            states.append(self.env.transition(states[-1], actions[:, h]))
        frames = self.env.render(torch.stack(states[1:], dim=1).reshape(k * horizon, -1))
        return self.encode(frames).unflatten(0, (k, horizon))
