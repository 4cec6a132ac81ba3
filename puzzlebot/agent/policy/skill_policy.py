"""Skill policies: trained with PPO in the fitted model (`skill_env.SkillEnv`), exported with
`torch.export` (TorchScript's successor; `torch.jit` is deprecated in torch 2.13) with their
observation/action spec, and run on the arm as a follow's pace.

A trained policy stands in for the MPC (`agent.mpc`) where a move has a target: the same
inputs (the hand's travel, read as the part's opening), the same stopping rules, but one
small network evaluation per tick instead of a replan of 208 rollouts.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from puzzlebot.agent.policy.skill_env import OBS_SCALE, SkillEnv, SkillEnvConfig, observation
from puzzlebot.agent.rehearsal import Rehearser
from puzzlebot.files import write_text_atomic

SPEC_NAME = "skill_policy.json"
WEIGHTS_NAME = "skill_policy.pt2"


@dataclass(frozen=True)
class SkillTrainConfig:
    steps: int = 40_000  # environment ticks of experience
    n_envs: int = 4
    n_steps: int = 512  # ticks per env between updates
    batch_size: int = 256
    n_epochs: int = 5
    learning_rate: float = 3e-4
    gamma: float = 0.99
    hidden: tuple[int, ...] = (64, 64)
    seed: int = 0
    env: SkillEnvConfig = field(default_factory=SkillEnvConfig)

    def __post_init__(self) -> None:
        for name in ("steps", "n_envs", "n_steps", "batch_size", "n_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"SkillTrainConfig.{name}: {getattr(self, name)} must be >= 1")
        if not (0 < self.gamma <= 1 and self.learning_rate > 0):
            raise ValueError(f"SkillTrainConfig: gamma ({self.gamma}) must be in (0, 1], learning_rate positive")


@dataclass
class SkillPolicy:
    """A trained skill policy: observation (4,) -> action in [-1, 1] (a speed fraction), with
    the spec it was trained under."""

    module: torch.nn.Module  # maps a (1, 4) float32 observation to a (1, 1) action
    spec: dict

    def speed(self, obs: np.ndarray) -> float:
        """Hand speed (m/s) for one observation."""
        with torch.no_grad():
            action = float(self.module(torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1))[0, 0])
        return float(np.clip((action + 1.0) / 2.0, 0.0, 1.0)) * self.spec["max_speed"]

    def save(self, folder: Path) -> None:
        """`skill_policy.pt2` (a `torch.export` program) and `skill_policy.json` (its spec), atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        program = torch.export.export(self.module, (torch.zeros(1, len(OBS_FIELDS)),))
        tmp = folder / ("tmp_" + WEIGHTS_NAME)  # torch.export wants the .pt2 ending
        torch.export.save(program, str(tmp))
        tmp.replace(folder / WEIGHTS_NAME)
        write_text_atomic(folder / SPEC_NAME, json.dumps(self.spec, indent=1))

    @classmethod
    def load(cls, folder: Path) -> SkillPolicy:
        folder = Path(folder)
        for name in (SPEC_NAME, WEIGHTS_NAME):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder / name}: no exported skill policy here")
        spec = json.loads((folder / SPEC_NAME).read_text())
        if spec.get("observation") != OBS_FIELDS:
            raise ValueError(f"{folder / SPEC_NAME}: observation {spec.get('observation')} is not this "
                             f"version's {OBS_FIELDS}")
        return cls(torch.export.load(str(folder / WEIGHTS_NAME)).module(), spec)


OBS_FIELDS = ["shortfall_m", "velocity_m_s", "last_speed_fraction", "time_fraction"]


class _Actor(torch.nn.Module):
    """The deterministic actor of an SB3 MlpPolicy: features -> latent -> mean action, clipped."""

    def __init__(self, sb3_policy):
        super().__init__()
        self.latent = sb3_policy.mlp_extractor.policy_net
        self.action_net = sb3_policy.action_net

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.action_net(self.latent(obs)), -1.0, 1.0)


def train_skill(rehearser: Rehearser, part: str, pushing: bool,
                config: SkillTrainConfig = SkillTrainConfig()) -> tuple[SkillPolicy, float]:
    """PPO (stable-baselines3) on `config.n_envs` copies of the skill env; the policy and the
    seconds it took."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    tic = time.perf_counter()
    envs = DummyVecEnv([lambda: SkillEnv(rehearser, part, pushing, config.env) for _ in range(config.n_envs)])
    envs.seed(config.seed)
    model = PPO("MlpPolicy", envs, n_steps=config.n_steps, batch_size=config.batch_size, n_epochs=config.n_epochs,
                learning_rate=config.learning_rate, gamma=config.gamma, seed=config.seed, device="cpu", verbose=0,
                policy_kwargs={"net_arch": list(config.hidden)})
    model.learn(total_timesteps=config.steps)
    env = envs.envs[0]
    spec = {"part": part, "pushing": pushing, "lever": env.lever, "max_speed": config.env.max_speed,
            "max_s": config.env.max_s, "control_s": config.env.control_s, "tolerance": config.env.tolerance,
            "rest_speed": config.env.rest_speed, "observation": OBS_FIELDS, "obs_scale": OBS_SCALE.tolist(),
            "action": "speed fraction in [-1, 1] -> (a + 1) / 2 * max_speed",
            "randomization": config.env.randomization, "train": {**asdict(config), "env": asdict(config.env)}}
    policy = SkillPolicy(_Actor(model.policy).eval(), spec)
    return policy, time.perf_counter() - tic


def evaluate(policy: SkillPolicy, env: SkillEnv, episodes: int, seed: int = 0) -> np.ndarray:
    """Final errors (m of hand travel) of `episodes` episodes of `policy` in `env`."""
    errors = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        while True:
            speed = policy.speed(obs)
            action = np.array([2.0 * speed / policy.spec["max_speed"] - 1.0])
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                errors.append(info["error_m"])
                break
    return np.array(errors)


@dataclass(frozen=True)
class VisitedMove:
    """A move a skill policy paced on the arm: what it saw at each step, and the part's opening
    and velocity read from the hand there (joint units), towards `target`."""

    part: str
    pushing: bool
    target: float
    observations: np.ndarray  # (n, 4)
    openings: np.ndarray  # (n,)
    velocities: np.ndarray  # (n,)


class PolicyPace:
    """A skill policy as a probe's follow speed (`Prober.probe(pace=...)`), with the MPC pace's
    reading of the hand's travel and its stopping rules (`mpc.MPCPace`)."""

    VELOCITY_TICKS = 5

    def __init__(self, policy: SkillPolicy, start: float, target: float, revolute: bool, radius: float | None = None):
        self.policy, self.start, self.target, self.revolute = policy, float(start), float(target), revolute
        self.lever = float(policy.spec["lever"])
        self.radius = self.lever if radius is None else float(radius)  # the hand's circle about a hinge
        self.finished = False
        self.calls, self.compute_s = 0, 0.0  # policy evaluations and the seconds they took
        self.visited: list[tuple[np.ndarray, float, float]] = []  # (what it saw, opening, velocity) per call
        self._history: list[tuple[float, float]] = []
        self._t0: float | None = None
        self._last = 0.0

    def visited_move(self) -> VisitedMove | None:
        """The states this pace acted on (for `distill.learn_from_moves`); None if it never acted."""
        if not self.visited:
            return None
        obs, openings, velocities = zip(*self.visited, strict=True)
        return VisitedMove(str(self.policy.spec["part"]), bool(self.policy.spec.get("pushing", False)), self.target,
                           np.array(obs), np.array(openings), np.array(velocities))

    def opening(self, travelled: float) -> float:
        if not self.revolute:
            return self.start + travelled / self.lever
        return self.start + 2.0 * float(np.arcsin(min(1.0, travelled / (2.0 * self.radius))))

    def __call__(self, t: float, travelled: float) -> float | None:
        spec = self.policy.spec
        self._t0 = t if self._t0 is None else self._t0
        q = self.opening(travelled)
        self._history = (self._history + [(t, q)])[-self.VELOCITY_TICKS:]
        times, qs = np.array(self._history).T
        velocity = float(np.polyfit(times, qs, 1)[0]) if len(self._history) >= 2 and np.ptp(times) > 0 else 0.0
        at_rest = abs(velocity) * self.lever < spec["rest_speed"]
        close = (self.target - q) * self.lever <= spec["tolerance"]
        if q >= self.target or (len(self._history) >= self.VELOCITY_TICKS and at_rest and close):
            self.finished = True
            return None
        obs = observation(self.target - q, velocity, self.lever, self._last, min(1.0, (t - self._t0) / spec["max_s"]))
        self.visited.append((obs, q, velocity))
        tic = time.perf_counter()
        speed = self.policy.speed(obs)
        self.calls, self.compute_s = self.calls + 1, self.compute_s + time.perf_counter() - tic
        self._last = speed / spec["max_speed"]
        return speed
