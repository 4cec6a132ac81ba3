"""Rehearsal: a move tried in the fitted model, under posterior samples, before the arm makes it.

The skill as rehearsed is the prober's follow: the hand drives the handle along the part's
joint at the follow speed and gives way at the push force. In joint space that is a velocity
servo with a force cap (for a hinge: angular speed = speed / lever arm, torque cap = force x
lever arm, the lever arm being the handle's distance from the fitted axis), with the hand's
mass riding on the joint. Every posterior
draw of the parts' dynamics (`FittedModel.sample_params`: friction, damping, inertia) is one
model in a batched `mujoco.rollout` on threads, so a rehearsal says how likely the move is to
take the part to its target within the horizon, across what the model is unsure of, and how
long it takes. A move whose rehearsal says it cannot get there is not worth the arm's time
in that form; a real outcome far from the rehearsed one is a surprise the loop logs.

What the fitted model cannot say: whether a lock holds the part (that is the lock beliefs'
job, `agent.locks`), and where a part's range ends beyond what was seen. The rehearsed part's
range is therefore opened up to the target (plus a margin): a part that stopped short of the
goal is rehearsed as if it went on, and the arm finds out.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

import mujoco
import numpy as np
from mujoco import rollout

from puzzlebot.agent.fitted_model import FittedModel

STATE = mujoco.mjtState.mjSTATE_FULLPHYSICS
RANGE_MARGIN = 0.2  # beyond the target, as a fraction of it: the rehearsed part's range past what was seen


@dataclass(frozen=True)
class RehearsalConfig:
    samples: int = 16  # posterior draws rehearsed per move
    horizon_s: float = 4.0  # s of rehearsed motion per move
    speed: float = 0.06  # m/s the hand drives a handle at (`ProbeConfig.follow_speed`)
    push_force: float = 12.0  # N the hand gives way at (`ProbeConfig.tug_force`)
    servo_gain: float = 400.0  # N·s/m: how stiffly the hand holds its speed at the handle
    hand_mass: float = 0.9  # kg the hand adds to a part it drives (the gripper: palm, wrist, fingers)
    min_lever: float = 0.02  # m: a hinge's lever arm is at least this (a handle fitted on its axis)
    threads: int = 0  # rollout threads; 0: one per CPU
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("samples", "horizon_s", "speed", "push_force", "servo_gain", "hand_mass", "min_lever"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RehearsalConfig.{name}: {getattr(self, name)!r} must be positive")
        if self.threads < 0:
            raise ValueError(f"RehearsalConfig.threads: {self.threads} must be >= 0")


@dataclass(frozen=True)
class Rehearsal:
    """What rehearsing one move predicts."""

    part: str
    start: float  # joint coordinate it starts from (m or rad, 0 at rest)
    target: float  # opening it must reach (same units, counted from rest along the opening)
    p_reach: float  # fraction of posterior draws in which the skill gets there within the horizon
    time_s: float  # median time to get there over the draws that did (inf if none)
    final: np.ndarray  # (samples,) opening at the end of the horizon, per draw

    def surprise(self, reached: bool) -> float:
        """-log of the rehearsed probability of what the arm saw (nats; clipped at 1/(2 samples))."""
        floor = 0.5 / len(self.final)
        p = float(np.clip(self.p_reach if reached else 1.0 - self.p_reach, floor, 1.0))
        return -float(np.log(p))


class Rehearser:
    """Batched rollouts of the follow skill in one fitted model (rebuild it after a refit)."""

    def __init__(self, model: FittedModel, config: RehearsalConfig = RehearsalConfig()):
        self.config = config
        self.fitted = model
        spec = model.to_spec()
        self._levers: dict[str, float] = {}
        for part in model.parts:
            if part.articulation.kind == "fixed":
                continue
            lever = 1.0 if part.articulation.kind == "prismatic" else self._lever(part)
            self._levers[part.name] = lever
            # the hand moves with the handle: its mass rides on the joint (without it a 50 g
            # button under a capped servo chatters instead of moving)
            spec.joint(f"{part.name}/joint").armature = config.hand_mass * lever ** 2
            act = spec.add_actuator(name=f"{part.name}/drive", target=f"{part.name}/joint",
                                    trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_velocity(kv=config.servo_gain * lever ** 2)
            act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
            act.forcerange = [-config.push_force * lever, config.push_force * lever]
        self.base = spec.compile()
        self.parts = list(self._levers)
        rng = np.random.default_rng(config.seed)
        draws = model.sample_params(config.samples, rng) if self.parts else [{}] * config.samples
        self.models = [self.with_params(draw) for draw in draws]
        threads = config.threads or os.cpu_count() or 1
        self.datas = [mujoco.MjData(self.base) for _ in range(threads)]
        self.nstep = int(round(config.horizon_s / self.base.opt.timestep))

    def rehearse(self, part: str, start: float, target: float) -> Rehearsal:
        """Drive `part` from opening `start` towards opening `target` under every draw."""
        models, initial, control, qadr, sign = self._inputs(part, start, target)
        state, _ = rollout.rollout(models, self.datas, initial, control, nstep=self.nstep)
        return self._summarise(part, start, target, state[:, :, 1 + qadr] * sign)

    def _inputs(self, part: str, start: float, target: float):
        if part not in self._levers:
            raise ValueError(f"cannot rehearse {part!r}: it has no fitted joint (it never moved); "
                             f"parts that can be rehearsed: {self.parts}")
        if target <= start:
            raise ValueError(f"rehearse {part!r}: target opening {target} must exceed the start {start}")
        joint = self.base.joint(f"{part}/joint")
        qadr, sign = joint.qposadr[0], self.opening_sign(part)
        models = [self._opened_up(m, joint.id, sign, target) for m in self.models]
        data = self.datas[0]
        mujoco.mj_resetData(self.base, data)
        data.qpos[qadr] = sign * start
        initial = np.zeros((1, mujoco.mj_stateSize(self.base, STATE)))
        mujoco.mj_getState(self.base, data, initial[0], STATE)
        control = np.zeros((1, 1, self.base.nu))
        control[0, 0, self.parts.index(part)] = sign * self.config.speed / self._levers[part]
        return models, initial, control, qadr, sign

    def lever(self, part: str) -> float:
        """Metres of hand travel per unit of the part's joint (1 for a slide; the handle's
        distance from the axis for a hinge)."""
        return self._levers[part]

    def opening_sign(self, part: str) -> float:
        """+1 if the part opens towards positive joint values (as seen so far), else -1."""
        lo, hi = self.fitted.part(part).articulation.observed_range
        return 1.0 if hi >= -lo else -1.0

    def opened_up(self, model: mujoco.MjModel, part: str, target: float) -> mujoco.MjModel:
        """`model` with `part`'s range reaching past `target` in its opening direction (in place)."""
        return self._opened_up(model, self.base.joint(f"{part}/joint").id, self.opening_sign(part), target)

    def driving(self, model: mujoco.MjModel, part: str, reach: float, pushing: bool) -> mujoco.MjModel:
        """A copy of `model` set up to drive `part` towards `reach`: its range opened up past it
        and, for a hand that pushes (a fingertip), a drive that gives force in the opening
        direction only (a fingertip cannot pull a part back)."""
        m = self.opened_up(copy.copy(model), part, reach)
        if pushing:
            act = self.parts.index(part)
            cap = float(np.max(np.abs(m.actuator_forcerange[act])))
            m.actuator_forcerange[act] = (0.0, cap) if self.opening_sign(part) > 0 else (-cap, 0.0)
        return m

    def _summarise(self, part: str, start: float, target: float, opening: np.ndarray) -> Rehearsal:
        reached = opening >= target - 1e-6
        got_there = reached.any(axis=1)
        steps = np.argmax(reached, axis=1)
        dt = self.base.opt.timestep
        time_s = float(np.median((steps[got_there] + 1) * dt)) if got_there.any() else float("inf")
        return Rehearsal(part, start, target, float(got_there.mean()), time_s, opening[:, -1].copy())

    def throughput(self, part: str, start: float, target: float, repeats: int = 5) -> dict[str, float]:
        """Steps per second of `rehearse` against raw `mujoco.rollout` on the same models and inputs
        (the rehearsal's own overhead: building inputs, summarising); best of `repeats` each."""
        models, initial, control, _, _ = self._inputs(part, start, target)
        raw, ours = [], []
        for _ in range(repeats):
            tic = time.perf_counter()
            rollout.rollout(models, self.datas, initial, control, nstep=self.nstep)
            raw.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            self.rehearse(part, start, target)
            ours.append(time.perf_counter() - tic)
        steps = len(models) * self.nstep
        return {"rehearsal_steps_per_s": steps / min(ours), "raw_rollout_steps_per_s": steps / min(raw),
                "ratio": min(raw) / min(ours), "batch": len(models), "nstep": self.nstep}

    # ------------------------------------------------------------------ internals

    def _lever(self, part) -> float:
        art = part.articulation
        if part.handle is None:
            return self.config.min_lever
        arm = part.handle - art.origin
        return max(float(np.linalg.norm(arm - (arm @ art.axis) * art.axis)), self.config.min_lever)

    def with_params(self, draw: dict[str, dict[str, float]]) -> mujoco.MjModel:
        """A copy of the base model with one draw of the parts' dynamics (part -> friction,
        damping, inertia)."""
        model = copy.copy(self.base)
        for name, values in draw.items():
            joint = model.joint(f"{name}/joint")
            dof, body = joint.dofadr[0], joint.bodyid[0]
            model.dof_frictionloss[dof] = values["friction"]
            model.dof_damping[dof] = values["damping"]
            if joint.type[0] == mujoco.mjtJoint.mjJNT_SLIDE:
                model.body_mass[body] = values["inertia"]
            else:
                model.body_inertia[body] = values["inertia"]
        return model

    def _opened_up(self, model: mujoco.MjModel, joint: int, sign: float, target: float) -> mujoco.MjModel:
        """`model` with the joint's range reaching past `target` in the opening direction (in place:
        every draw shares the change)."""
        lo, hi = model.jnt_range[joint]
        reach = target * (1.0 + RANGE_MARGIN)
        model.jnt_range[joint] = (lo, max(hi, reach)) if sign > 0 else (min(lo, -reach), hi)
        return model
