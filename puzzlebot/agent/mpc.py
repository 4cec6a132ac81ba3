"""Bring a part to an opening and leave it there: predictive-sampling MPC in the fitted model.

The skill the solve loop needs once a part's joint and dynamics are fitted: move it on from
where it stands to a target opening, and stop there. A goal asks for a drawer open by at
least so much, a knocked-back bolt is put back where it was when it freed the door; a bolt
slid on to the end of its slot brought its rod flush with the button it had freed.

The hand's speed along the part's path is planned by predictive sampling (Howell et al.,
MuJoCo MPC, 2022): every `replan_s` of robot time, `candidates` speed profiles (spline knots
around the last best, plus the last best itself and a stop) are each rolled out from the
part's measured opening and speed under `samples` posterior draws of its dynamics, all in
one batched `mujoco.rollout` call on a persistent thread pool, and the profile with the
lowest mean cost is taken; its first speed is sent. The cost is the shortfall from the
target (squared, over the horizon and at its end), an overshoot weighted above it, and the
speed left at the end of the horizon.

The hand that pushes a part (a fingertip on a knob, a cap, a bolt's side) can only push: in
the rollouts its drive gives force in the opening direction only, so a part that coasts on
must be let go early, by how much its friction and mass say. A grasping hand brakes too.
The rollouts are the rehearsal's (`agent.rehearsal`): the hand as a velocity servo with a
force cap on the joint, and the hand's mass riding on it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import mujoco
import numpy as np
from mujoco import rollout

from puzzlebot.agent.rehearsal import STATE, Rehearser


@dataclass(frozen=True)
class MPCConfig:
    candidates: int = 24  # speed profiles sampled per replan (besides the last best and a stop)
    samples: int = 8  # posterior draws each profile is rolled out under (at most the rehearser's)
    horizon_s: float = 0.8  # s planned ahead
    knots: int = 4  # spline knots over the horizon (linear between them)
    replan_s: float = 0.1  # s of robot time between replans
    max_speed: float = 0.096  # m/s of hand travel at most (the probe's fast follow speed)
    noise: float = 0.5  # std of a knot's perturbation, as a fraction of max_speed
    overshoot_weight: float = 30.0  # an overshoot costs this many times a shortfall as large: a coasting
    # pushed drawer (tests/agent/test_mpc.py) stopped 1-2.5 mm short at 10 and at 100, within 1 mm at 30
    end_speed_weight: float = 1.0  # on the speed left at the horizon's end (times the horizon: metres)
    tolerance: float = 0.003  # m of hand travel: within this of the target and at rest, the skill is done
    rest_speed: float = 0.005  # m/s of hand travel under which the part counts as at rest
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("candidates", "samples", "horizon_s", "knots", "replan_s", "max_speed", "tolerance",
                     "rest_speed"):
            if not getattr(self, name) > 0:
                raise ValueError(f"MPCConfig.{name}: {getattr(self, name)!r} must be positive")
        if self.knots < 2:
            raise ValueError(f"MPCConfig.knots: {self.knots} must be at least 2 (a profile has a start and an end)")
        if self.replan_s > self.horizon_s:
            raise ValueError(f"MPCConfig.replan_s ({self.replan_s}) must not exceed horizon_s ({self.horizon_s})")
        for name in ("noise", "overshoot_weight", "end_speed_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"MPCConfig.{name}: {getattr(self, name)!r} must be >= 0")


def rollout_threads() -> int:
    """Threads of an MPC's rollout pool (a pool passed to `OpeningMPC` must have as many)."""
    return min(os.cpu_count() or 1, 4)


@dataclass
class MPCStats:
    """What the controller did: replans, compute, and the rollouts it ran."""

    replans: int = 0
    compute_s: float = 0.0
    rollout_steps: int = 0
    speeds: list[float] = field(default_factory=list)  # m/s sent at each replan


class OpeningMPC:
    """Predictive sampling of the hand's speed that takes one part to `target` (see the module)."""

    def __init__(self, rehearser: Rehearser, part: str, target: float, pushing: bool,
                 config: MPCConfig = MPCConfig(), pool: rollout.Rollout | None = None):
        if part not in rehearser.parts:
            raise ValueError(f"cannot plan for {part!r}: it has no fitted joint; parts with one: {rehearser.parts}")
        if config.samples > len(rehearser.models):
            raise ValueError(f"MPCConfig.samples ({config.samples}) exceeds the rehearser's posterior draws "
                             f"({len(rehearser.models)}): raise RehearsalConfig.samples")
        self.part, self.target, self.pushing, self.config = part, float(target), pushing, config
        self.lever = rehearser.lever(part)
        self.sign = rehearser.opening_sign(part)
        base = rehearser.base
        self.base = base
        joint = base.joint(f"{part}/joint")
        self._qadr, self._vadr = int(joint.qposadr[0]), int(joint.dofadr[0])
        self._actuator = rehearser.parts.index(part)
        self._draws = [rehearser.driving(m, part, target, pushing) for m in rehearser.models[:config.samples]]
        self._models = [m for _ in range(config.candidates + 2) for m in self._draws]
        self._nstep = max(1, int(round(config.horizon_s / base.opt.timestep)))
        self._knot_t = np.linspace(0.0, config.horizon_s, config.knots)
        self._step_t = (np.arange(self._nstep) + 1) * base.opt.timestep
        self._best = np.full(config.knots, config.max_speed)  # m/s of hand travel at each knot
        self._rng = np.random.default_rng(config.seed)
        self._owns_pool = pool is None  # a caller's pool outlives this controller
        self._pool = rollout.Rollout(nthread=rollout_threads()) if pool is None else pool
        self._datas = [mujoco.MjData(base) for _ in range(rollout_threads())]
        self._last_plan_t: float | None = None
        self.stats = MPCStats()

    def close(self) -> None:
        """Release the rollout thread pool, if this controller made it."""
        if self._owns_pool:
            self._pool.close()

    def __enter__(self) -> OpeningMPC:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def done(self, opening: float, velocity: float) -> bool:
        """Whether the part is at rest within the tolerance of the target, or at rest past it."""
        at_rest = abs(velocity) * self.lever < self.config.rest_speed
        return at_rest and (self.target - opening) * self.lever <= self.config.tolerance

    def speed(self, t: float, opening: float, velocity: float) -> float:
        """Hand speed (m/s along the part's opening path, >= 0) to send at robot time `t`, given
        the part's opening (joint units from rest, positive opening) and its opening rate."""
        if opening >= self.target:  # a hand that pushed it there has nothing left to do
            return 0.0
        if self._last_plan_t is None or t - self._last_plan_t >= self.config.replan_s - 1e-9:
            if self._last_plan_t is not None:  # warm start: the last best, moved on by the time passed
                self._best = np.interp(self._knot_t + (t - self._last_plan_t), self._knot_t, self._best)
            self._last_plan_t = t
            self.plan(opening, velocity)
        # the plan as it was scored: its spline at the time since it was made
        return float(np.interp(t - self._last_plan_t, self._knot_t, self._best))

    def plan(self, opening: float, velocity: float) -> float:
        """One replan from this state; the best profile's first speed (m/s of hand travel)."""
        cfg = self.config
        tic = time.perf_counter()
        noise = self._rng.normal(0.0, cfg.noise * cfg.max_speed, size=(cfg.candidates, cfg.knots))
        profiles = np.vstack([self._best, np.zeros(cfg.knots), self._best + noise])
        profiles = np.clip(profiles, 0.0, cfg.max_speed)
        costs = self.costs(profiles, opening, velocity)
        self._best = profiles[int(np.argmin(costs))]
        self.stats.replans += 1
        self.stats.compute_s += time.perf_counter() - tic
        self.stats.rollout_steps += len(self._models) * self._nstep
        self.stats.speeds.append(float(self._best[0]))
        return float(self._best[0])

    def costs(self, profiles: np.ndarray, opening: float, velocity: float) -> np.ndarray:
        """Mean cost over the posterior draws of each speed profile ((n, knots) m/s)."""
        cfg, n, s = self.config, len(profiles), len(self._draws)
        if n != cfg.candidates + 2:
            raise ValueError(f"costs: {n} profiles, expected {cfg.candidates + 2}")
        data = self._datas[0]
        mujoco.mj_resetData(self.base, data)
        data.qpos[self._qadr] = self.sign * opening
        data.qvel[self._vadr] = self.sign * velocity
        initial = np.zeros((1, mujoco.mj_stateSize(self.base, STATE)))
        mujoco.mj_getState(self.base, data, initial[0], STATE)
        speeds = np.stack([np.interp(self._step_t, self._knot_t, p) for p in profiles])  # (n, nstep)
        control = np.zeros((n * s, self._nstep, self.base.nu))
        control[:, :, self._actuator] = np.repeat(speeds, s, axis=0) * self.sign / self.lever
        state, _ = self._pool.rollout(self._models, self._datas, initial, control, nstep=self._nstep)
        q = state[:, :, 1 + self._qadr] * self.sign
        qd = state[:, :, 1 + self.base.nq + self._vadr] * self.sign
        short = np.maximum(self.target - q, 0.0) * self.lever  # m of hand travel
        over = np.maximum(q - self.target, 0.0) * self.lever
        running = np.mean(short ** 2 + cfg.overshoot_weight * over ** 2, axis=1)
        end = short[:, -1] ** 2 + cfg.overshoot_weight * over[:, -1] ** 2
        end_speed = (qd[:, -1] * self.lever * cfg.horizon_s) ** 2
        per_rollout = running + end + cfg.end_speed_weight * end_speed
        return per_rollout.reshape(n, s).mean(axis=1)

    def throughput(self, opening: float, velocity: float, repeats: int = 5) -> dict[str, float]:
        """Rollout steps per second of a replan's scoring (`costs`) against the raw batched
        `mujoco.rollout` call it makes, on the same models and inputs; best of `repeats` each."""
        cfg = self.config
        profiles = np.full((cfg.candidates + 2, cfg.knots), 0.5 * cfg.max_speed)
        data = self._datas[0]
        mujoco.mj_resetData(self.base, data)
        initial = np.zeros((1, mujoco.mj_stateSize(self.base, STATE)))
        mujoco.mj_getState(self.base, data, initial[0], STATE)
        control = np.zeros((len(self._models), self._nstep, self.base.nu))
        raw, ours = [], []
        for _ in range(repeats):
            tic = time.perf_counter()
            self._pool.rollout(self._models, self._datas, initial, control, nstep=self._nstep)
            raw.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            self.costs(profiles, opening, velocity)
            ours.append(time.perf_counter() - tic)
        steps = len(self._models) * self._nstep
        return {"mpc_steps_per_s": steps / min(ours), "raw_rollout_steps_per_s": steps / min(raw),
                "ratio": min(raw) / min(ours), "replan_s": min(ours), "batch": len(self._models), "nstep": self._nstep}


class MPCPace:
    """The MPC as a probe's follow speed: the hand's travel along the part's path in, a speed
    out, None once the part is at rest at the target (`Prober.probe(pace=...)`).

    The part's opening is read off the hand's travel from where the follow began: a slide's
    travel is its opening; a hinge's chord of `c` is a turn of 2 asin(c / 2r), `r` the radius the
    hand goes round on (`part_state.hinge_radius`; the fitted lever arm if not given).
    Its speed is the slope of the last `VELOCITY_TICKS` readings.
    """

    VELOCITY_TICKS = 5

    def __init__(self, mpc: OpeningMPC, start: float, revolute: bool, radius: float | None = None):
        self.mpc, self.start, self.revolute = mpc, float(start), revolute
        self.radius = mpc.lever if radius is None else float(radius)  # the hand's circle about a hinge
        self.finished = False  # the part came to rest at the target
        self._history: list[tuple[float, float]] = []

    def opening(self, travelled: float) -> float:
        if not self.revolute:
            return self.start + travelled / self.mpc.lever
        return self.start + 2.0 * float(np.arcsin(min(1.0, travelled / (2.0 * self.radius))))

    def __call__(self, t: float, travelled: float) -> float | None:
        q = self.opening(travelled)
        self._history = (self._history + [(t, q)])[-self.VELOCITY_TICKS:]
        times, qs = np.array(self._history).T
        velocity = float(np.polyfit(times, qs, 1)[0]) if len(self._history) >= 2 and np.ptp(times) > 0 else 0.0
        # there, or at rest close enough: stop at once (the arm's command runs ahead of the hand
        # by its tracking lag; a command held where it is would carry the part on by that much)
        if q >= self.mpc.target or (len(self._history) >= self.VELOCITY_TICKS and self.mpc.done(q, velocity)):
            self.finished = True
            return None
        return self.mpc.speed(t, q, velocity)


class TargetFollow:
    """The model-free way to a target (the MPC's ablation): follow at a fixed speed and stop
    pushing once the hand's travel says the part is there. A part that coasts goes on."""

    def __init__(self, speed: float, start: float, target: float, lever: float, revolute: bool):
        self.speed, self.start, self.target, self.lever, self.revolute = speed, start, target, lever, revolute
        self.finished = False

    def __call__(self, t: float, travelled: float) -> float | None:
        q = self.start + (2.0 * float(np.arcsin(min(1.0, travelled / (2.0 * self.lever)))) if self.revolute
                          else travelled / self.lever)
        if q >= self.target:
            self.finished = True
            return None
        return self.speed
