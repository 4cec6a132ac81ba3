"""The skill "bring a part to a target opening" as a gymnasium env in the fitted model, with
domain randomization, for learning a policy that does what the MPC does without planning.

An episode is one move of one part: it starts at rest at some opening, and a target lies a
few centimetres of hand travel further. Each control tick (10 ms, the arm's period) the
policy sees how far short of the target the part is and how fast it goes (both in metres of
hand travel, as `mpc.MPCPace` reads them off the hand) and the speed it last sent, and sends
a hand speed along the part's path. The episode ends as the pace does on the arm: the part
reaches the target (the hand stops at once), or comes to rest within the tolerance, or time
runs out; the part is then left to settle (a pushed part coasts on) and the reward is how
close it ended, less a small cost per tick.

The physics are the rehearsal's (`agent.rehearsal`: the hand as a force-capped speed servo on
the joint, pushing one way only for a fingertip). What each episode randomizes is the
`randomization` variant:

- `"none"`: the fitted point estimate, no latency, noise or delay;
- `"uniform"`: friction, damping and inertia log-uniform within `uniform_factor` of the
  estimate either way (a wide prior that ignores what was fitted), plus latency, noise, delay;
- `"posterior"`: a draw from the fitted posterior (`FittedModel.sample_params`), plus latency,
  noise and delay.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from puzzlebot.agent.rehearsal import Rehearser

VARIANTS = ("none", "uniform", "posterior")
OBS_SCALE = np.array([0.05, 0.1, 1.0, 1.0])  # m, m/s, speed fraction, time fraction


@dataclass(frozen=True)
class SkillEnvConfig:
    randomization: str = "posterior"  # "none" | "uniform" | "posterior" (see the module)
    uniform_factor: float = 10.0  # "uniform": each parameter within this factor of the estimate, either way
    travel: tuple[float, float] = (0.01, 0.05)  # m of hand travel from the start to the target
    start_fraction: float = 0.5  # the start is drawn in [0, this] of the range seen
    control_s: float = 0.01  # s per control tick (the arm's period)
    max_s: float = 3.0  # s per episode at most
    settle_s: float = 1.0  # s the part is left to settle after the hand stops
    max_speed: float = 0.096  # m/s of hand travel at most (the probe's fast follow speed)
    latency_ticks: tuple[int, int] = (0, 3)  # a speed sent acts this many ticks later (drawn per episode)
    obs_delay_ticks: tuple[int, int] = (0, 2)  # what the policy sees is this many ticks old
    obs_noise: float = 0.0005  # m of hand travel, on the opening seen
    tolerance: float = 0.003  # m: within this and at rest, the move is done (as `MPCConfig.tolerance`)
    rest_speed: float = 0.005  # m/s under which the part is at rest
    tick_cost: float = 0.002  # reward per tick: time is the arm's

    def __post_init__(self) -> None:
        if self.randomization not in VARIANTS:
            raise ValueError(f"SkillEnvConfig.randomization: {self.randomization!r}; choose one of {VARIANTS}")
        if not (0 < self.travel[0] <= self.travel[1]):
            raise ValueError(f"SkillEnvConfig.travel: {self.travel} must be 0 < low <= high (m)")
        for name in ("uniform_factor", "control_s", "max_s", "settle_s", "max_speed", "tolerance", "rest_speed"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SkillEnvConfig.{name}: {getattr(self, name)!r} must be positive")
        for name in ("latency_ticks", "obs_delay_ticks"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"SkillEnvConfig.{name}: {(lo, hi)} must be 0 <= low <= high")
        if self.uniform_factor < 1 or not 0 <= self.start_fraction <= 1 or self.obs_noise < 0:
            raise ValueError("SkillEnvConfig: uniform_factor must be >= 1, start_fraction in [0, 1], obs_noise >= 0")


class SkillEnv(gym.Env):
    """Bring `part` of a fitted model to a target opening (see the module)."""

    metadata = {"render_modes": []}

    def __init__(self, rehearser: Rehearser, part: str, pushing: bool, config: SkillEnvConfig = SkillEnvConfig()):
        if part not in rehearser.parts:
            raise ValueError(f"no skill env for {part!r}: it has no fitted joint; parts with one: {rehearser.parts}")
        self.rehearser, self.part, self.pushing, self.config = rehearser, part, pushing, config
        self.lever, self.sign = rehearser.lever(part), rehearser.opening_sign(part)
        fitted = rehearser.fitted.part(part)
        lo, hi = fitted.articulation.observed_range
        self.seen_range = max(hi, -lo)
        self.estimate = fitted.point_estimate()
        joint = rehearser.base.joint(f"{part}/joint")
        self._qadr, self._vadr = int(joint.qposadr[0]), int(joint.dofadr[0])
        self._act = rehearser.parts.index(part)
        self._substeps = max(1, int(round(config.control_s / rehearser.base.opt.timestep)))
        self.observation_space = gym.spaces.Box(-10.0, 10.0, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None

    # ------------------------------------------------------------------ gymnasium
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        cfg, rng = self.config, self.np_random
        params = self._draw_params(rng)
        self.start = float(rng.uniform(0.0, cfg.start_fraction * self.seen_range))
        self.target = self.start + float(rng.uniform(*cfg.travel)) / self.lever
        self.model = self.rehearser.driving(self.rehearser.with_params({self.part: params}), self.part,
                                            self.target * 2.0 + 0.1, self.pushing)
        self.data = mujoco.MjData(self.model)
        self.data.qpos[self._qadr] = self.sign * self.start
        mujoco.mj_forward(self.model, self.data)
        randomized = cfg.randomization != "none"
        self.latency = int(rng.integers(cfg.latency_ticks[0], cfg.latency_ticks[1] + 1)) if randomized else 0
        self.delay = int(rng.integers(cfg.obs_delay_ticks[0], cfg.obs_delay_ticks[1] + 1)) if randomized else 0
        self.noise = cfg.obs_noise if randomized else 0.0
        self.pending = [0.0] * self.latency  # speeds sent, not yet acting
        self.seen: list[tuple[float, float]] = [self._state()] * (self.delay + 1)
        self.last_action, self.ticks = 0.0, 0
        return self._obs(), {"target": self.target, "start": self.start, "params": params}

    def step(self, action):
        cfg = self.config
        fraction = float(np.clip((np.asarray(action, dtype=float).reshape(-1)[0] + 1.0) / 2.0, 0.0, 1.0))
        self.pending.append(fraction * cfg.max_speed)
        speed = self.pending.pop(0)
        self.data.ctrl[self._act] = self.sign * speed / self.lever
        mujoco.mj_step(self.model, self.data, self._substeps)
        self.ticks += 1
        self.last_action = fraction
        self.seen = (self.seen + [self._state()])[-(self.delay + 1):]
        q, qd = self._state()
        reached = q >= self.target
        at_rest = abs(qd) * self.lever < cfg.rest_speed and (self.target - q) * self.lever <= cfg.tolerance
        timed_out = self.ticks * cfg.control_s >= cfg.max_s
        reward = -cfg.tick_cost
        if not (reached or at_rest or timed_out):
            return self._obs(), reward, False, False, {}
        error = self._settle()
        reward += -abs(error) / 0.005 + (1.0 if abs(error) <= cfg.tolerance else 0.0)
        return self._obs(), reward, not timed_out, timed_out, {"error_m": error}

    # ------------------------------------------------------------------ internals
    def _draw_params(self, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.config
        if cfg.randomization == "none":
            return dict(self.estimate)
        if cfg.randomization == "uniform":
            span = np.log(cfg.uniform_factor)
            return {k: float(v * np.exp(rng.uniform(-span, span))) for k, v in self.estimate.items()}
        return self.rehearser.fitted.sample_params(1, rng)[0][self.part]

    def _state(self) -> tuple[float, float]:
        return float(self.sign * self.data.qpos[self._qadr]), float(self.sign * self.data.qvel[self._vadr])

    def _obs(self) -> np.ndarray:
        q, qd = self.seen[0]
        q_seen = q + float(self.np_random.normal(0.0, self.noise)) / self.lever if self.noise else q
        return observation(self.target - q_seen, qd, self.lever, self.last_action,
                           self.ticks * self.config.control_s / self.config.max_s)

    def _settle(self) -> float:
        """The hand stops (a fingertip lets go, a grasp holds still); the part settles. Returns the
        final opening minus the target, in m of hand travel."""
        self.data.ctrl[self._act] = 0.0
        mujoco.mj_step(self.model, self.data, int(round(self.config.settle_s / self.model.opt.timestep)))
        return (self._state()[0] - self.target) * self.lever


def observation(shortfall: float, velocity: float, lever: float, last_action: float,
                time_fraction: float) -> np.ndarray:
    """What a skill policy sees: shortfall and speed (joint units, times the lever: m and m/s
    of hand travel), its last speed (fraction of the maximum) and the time used, scaled."""
    raw = np.array([shortfall * lever, velocity * lever, last_action, time_fraction])
    return np.clip(raw / OBS_SCALE, -10.0, 10.0).astype(np.float32)
