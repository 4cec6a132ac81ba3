"""Typed schema of puzzlebot-sim's config, registered in hydra's ConfigStore.

The YAML groups under `configs/` fill it in; hydra checks every override against these
types, so `puzzle.depth=deep` or an unknown key fails with the field's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class PuzzleConfig:
    kind: str = MISSING
    """'generated' (sim/generator.py, seeded by the run's seed) or 'file'."""
    name: str = MISSING
    """Run-folder label (kind=file: the path's stem, by default)."""
    path: str | None = None
    """kind=file: a shipped name or a path to a puzzle YAML (PuzzleSpec or MJCF puzzle)."""
    depth: int = 3
    """kind=generated: length of the shortest solving sequence."""
    n_parts: int | None = None
    """kind=generated: total parts (None: depth + 1)."""
    branching: int = 1
    """kind=generated: most blockers on one part."""


@dataclass
class RobotConfig:
    name: str = MISSING
    """'gripper' (floating parallel gripper) or 'jaco' (Kinova Jaco arm)."""


@dataclass
class PPOSchema:
    """agent=ppo: the learner's settings (`agent.policy.ppo_baseline.PPOConfig`)."""

    n_steps: int = 6
    batch_size: int = 6
    n_epochs: int = 4
    learning_rate: float = 3e-3
    gamma: float = 0.95
    gae_lambda: float = 0.9
    ent_coef: float = 0.01
    hidden: list[int] = field(default_factory=lambda: [64, 64])


@dataclass
class AgentConfig:
    name: str = MISSING
    """'puzzlebot' (the agent, on the reality emulator), its baselines 'random', 'nominal' (same
    loop and emulator) and 'ppo' (model-free PPO on the emulator, same budget), or 'oracle'
    (ground truth, upper bound)."""
    max_attempts: int = 12
    """Moves the agent may try before the run is reported unsolved."""
    max_robot_s: float = 900.0
    """puzzlebot, random, nominal, ppo: seconds on the arm's clock before the run is reported unsolved."""
    ppo: PPOSchema | None = None
    """agent=ppo only: the learner's settings."""
    memory: str | None = None
    """agent=puzzlebot only: a family memory file (`agent.memory`, JSON) the run starts from and
    learns into when it is done, so the next puzzle of the family starts from this one; created
    if missing. None: default priors, nothing carried."""


@dataclass
class ExperimentConfig:
    video: bool = True
    video_camera: str = "front"
    video_fps: int = 25
    video_size: list[int] = field(default_factory=lambda: [360, 480])
    """Height and width in pixels."""
    wandb: str = "offline"
    """'offline', 'online' or 'disabled'; never needs an account by default."""


@dataclass
class SimConfig:
    puzzle: PuzzleConfig = MISSING
    robot: RobotConfig = MISSING
    agent: AgentConfig = MISSING
    experiment: ExperimentConfig = MISSING
    seed: int = 0


def register() -> None:
    """Register the schema (idempotent: ConfigStore replaces entries of the same name)."""
    store = ConfigStore.instance()
    store.store(name="sim_schema", node=SimConfig)
    store.store(group="puzzle", name="puzzle_schema", node=PuzzleConfig)
    store.store(group="robot", name="robot_schema", node=RobotConfig)
    store.store(group="agent", name="agent_schema", node=AgentConfig)
    store.store(group="experiment", name="experiment_schema", node=ExperimentConfig)
