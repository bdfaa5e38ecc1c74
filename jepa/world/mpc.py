"""Receding-horizon control to an image goal, and its evaluation over seeded episodes.

Every step the policy plans a `horizon`-long action sequence from the current frame and state
towards the goal frame, executes only its first action, observes, and plans again (as the
released V-JEPA 2-AC robot experiments do). Success is judged on the true final state, which
the policy never sees.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from jepa.world.cem import CEMConfig, cem_plan
from jepa.world.env import Observation, PointTableEnv
from jepa.world.gradient_planner import GradientPlannerConfig, gradient_plan
from jepa.world.world_model import WorldModel, l1_energy


class Policy(Protocol):
    def reset(self, goal_frame: np.ndarray, seed: int) -> None: ...

    def act(self, obs: Observation) -> np.ndarray: ...


class RandomPolicy:
    """The baseline: uniform random actions within the bounds, ignoring the goal."""

    def __init__(self, action_dim: int, action_bound: float) -> None:
        self.action_dim, self.action_bound = action_dim, action_bound
        self._rng = np.random.default_rng(0)

    def reset(self, goal_frame: np.ndarray, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs: Observation) -> np.ndarray:
        return self._rng.uniform(-self.action_bound, self.action_bound, self.action_dim).astype(np.float32)


ENERGY_MODES = ("last", "sum")


class PlanningPolicy:
    """Plans with CEM (or gradient descent) on the L1 energy of a world model.

    `energy="last"` scores only the latents after the last planned action (as released);
    `energy="sum"` adds the energies after every action. With "last" and horizon > 1 the split
    of the motion between the planned steps is arbitrary, so the executed first action is
    arbitrary too and the agent jitters around the goal; "sum" prefers getting there now.
    """

    def __init__(
        self,
        model: WorldModel,
        action_dim: int,
        config: CEMConfig | GradientPlannerConfig,
        energy: str = "last",
        warm_start: bool = False,
    ) -> None:
        if energy not in ENERGY_MODES:
            raise ValueError(f"energy must be one of {ENERGY_MODES}, got {energy!r}")
        self.model, self.action_dim, self.config = model, action_dim, config
        self.energy_mode = energy
        self.warm_start = warm_start
        self.plan_seconds: list[float] = []
        self.last_energy = float("nan")
        self._goal: torch.Tensor | None = None
        self._previous: torch.Tensor | None = None
        self._generator = torch.Generator()

    def reset(self, goal_frame: np.ndarray, seed: int) -> None:
        self._goal = self.model.encode(goal_frame[None])[0]
        self._previous = None
        self._generator.manual_seed(seed)

    def act(self, obs: Observation) -> np.ndarray:
        if self._goal is None:
            raise RuntimeError("call reset(goal_frame, seed) before act()")
        start = time.perf_counter()
        latent = self.model.encode(obs.frame[None])[0]
        state = torch.as_tensor(obs.state)
        goal = self._goal

        def energy(actions: torch.Tensor) -> torch.Tensor:
            predicted = self.model.rollout(latent, state, actions)  # (K, horizon, ...)
            if self.energy_mode == "last":
                return l1_energy(predicted[:, -1], goal)
            return torch.stack([l1_energy(predicted[:, h], goal) for h in range(predicted.shape[1])]).sum(0)

        init = None
        if self.warm_start and self._previous is not None:  # shift the last plan by one step
            init = torch.cat((self._previous[1:], torch.zeros_like(self._previous[:1])))
        if isinstance(self.config, CEMConfig):
            result = cem_plan(energy, self.action_dim, self.config, init_mean=init, generator=self._generator)
        else:
            result = gradient_plan(energy, self.action_dim, self.config, init_mean=init, generator=self._generator)
        self._previous = result.actions
        self.last_energy = result.energy
        self.plan_seconds.append(time.perf_counter() - start)
        return result.actions[0].detach().cpu().numpy().astype(np.float32)


@dataclass
class EpisodeResult:
    seed: int
    start: np.ndarray
    goal: np.ndarray
    goal_frame: np.ndarray
    frames: np.ndarray  # (T, H, W, 3), the observed frames including the first
    states: np.ndarray  # (T, 2)
    actions: np.ndarray  # (T - 1, 2)
    final_distance: float
    success: bool


def run_episode(
    env: PointTableEnv, policy: Policy, seed: int, max_steps: int, min_distance: float = 0.4
) -> EpisodeResult:
    """One seeded start/goal pair; the goal is given to the policy only as a rendered frame."""
    start, goal = env.sample_task(seed, min_distance=min_distance)
    goal_frame = env.render(goal)
    obs = env.reset(state=start)
    policy.reset(goal_frame, seed)
    frames, states, actions = [obs.frame], [obs.state], []
    for _ in range(max_steps):
        action = policy.act(obs)
        obs = env.step(action)
        frames.append(obs.frame)
        states.append(obs.state)
        actions.append(env.clip_action(action))
    dist = env.distance(obs.state, goal)
    return EpisodeResult(
        seed,
        start,
        goal,
        goal_frame,
        np.stack(frames),
        np.stack(states),
        np.stack(actions),
        dist,
        dist < env.success_tol,
    )


@dataclass
class EvalSummary:
    success_rate: float
    mean_final_distance: float
    seconds_per_plan_median: float  # nan for a policy that does not plan
    seconds_per_plan_mean: float
    episodes: list[EpisodeResult] = field(repr=False)


def evaluate(env: PointTableEnv, policy: Policy, seeds: Sequence[int], max_steps: int) -> EvalSummary:
    """Run one episode per seed and aggregate success and planning time."""
    if not seeds:
        raise ValueError("evaluate needs at least one seed")
    already = len(getattr(policy, "plan_seconds", []))  # a reused policy keeps earlier timings
    episodes = [run_episode(env, policy, s, max_steps) for s in seeds]
    times = list(getattr(policy, "plan_seconds", []))[already:]
    nan = float("nan")
    return EvalSummary(
        success_rate=sum(e.success for e in episodes) / len(episodes),
        mean_final_distance=float(np.mean([e.final_distance for e in episodes])),
        seconds_per_plan_median=statistics.median(times) if times else nan,
        seconds_per_plan_mean=statistics.fmean(times) if times else nan,
        episodes=episodes,
    )
