"""World models on a frozen JEPA encoder (V-JEPA 2-AC): environment, trajectory format,
action-conditioned predictor, its training, and planning (CEM, gradient, receding horizon).

The CLI side (Hydra configs, benchmark) lives in `jepa.world.pipeline` and tools/; see
docs/world_model.md.
"""

from jepa.world.ac_predictor import ACPredictor, clean_released_state_dict, create_ac_predictor, frame_causal_mask
from jepa.world.cem import CEMConfig, PlanResult, cem_plan
from jepa.world.env import Observation, PointTableEnv
from jepa.world.frame_encoder import FrameEncoder, build_frame_encoder
from jepa.world.gradient_planner import GradientPlannerConfig, gradient_plan
from jepa.world.mpc import PlanningPolicy, RandomPolicy, evaluate, run_episode
from jepa.world.trajectories import Episode, Manifest, TrajectoryWriter, iter_episodes, load_manifest, read_episode
from jepa.world.world_model import LatentWorldModel, OracleWorldModel, l1_energy

__all__ = [
    "ACPredictor",
    "CEMConfig",
    "Episode",
    "FrameEncoder",
    "GradientPlannerConfig",
    "LatentWorldModel",
    "Manifest",
    "Observation",
    "OracleWorldModel",
    "PlanResult",
    "PlanningPolicy",
    "PointTableEnv",
    "RandomPolicy",
    "TrajectoryWriter",
    "build_frame_encoder",
    "cem_plan",
    "clean_released_state_dict",
    "create_ac_predictor",
    "evaluate",
    "frame_causal_mask",
    "gradient_plan",
    "iter_episodes",
    "l1_energy",
    "load_manifest",
    "read_episode",
    "run_episode",
]
