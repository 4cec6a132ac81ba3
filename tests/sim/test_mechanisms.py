"""Every mechanism moves within its limits; every lock blocks physically and releases."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest

from puzzlebot.sim.build import puzzle_scene
from puzzlebot.sim.generator import GeneratorConfig, generate
from puzzlebot.sim.mechanisms import DEFAULTS
from puzzlebot.sim.spec import MECHANISMS, GoalSpec, JointSpec, PartSpec, PuzzleSpec, load_spec
from puzzlebot.sim.validate import validate

PUZZLES = sorted((Path(__file__).resolve().parents[2] / "puzzlebot" / "assets" / "puzzles").glob("*.yaml"))
POSITIONS = {"lid": (-0.05, 0.0)}


def _push(model, data, joint: str, effort: float, seconds: float = 1.0, qpos: dict | None = None) -> float:
    """Apply a constant generalized force to one joint from the initial state; return its final value."""
    mujoco.mj_resetData(model, data)
    for name, value in (qpos or {}).items():
        data.qpos[model.joint(f"{name}/joint").qposadr[0]] = value
    dof = model.joint(f"{joint}/joint").dofadr[0]
    for _ in range(int(seconds / model.opt.timestep)):
        data.qfrc_applied[:] = 0
        data.qfrc_applied[dof] = effort
        mujoco.mj_step(model, data)
    assert np.all(np.isfinite(data.qpos))
    return float(data.qpos[model.joint(f"{joint}/joint").qposadr[0]])


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_each_mechanism_moves_within_its_limits(mechanism):
    spec = PuzzleSpec("one", [PartSpec("p", mechanism, POSITIONS.get(mechanism, (0.0, 0.15)))],
                      [GoalSpec("p", min=DEFAULTS[mechanism][1].range[1] * 0.5)])
    validate(spec)
    model = puzzle_scene(spec).compile()
    data = mujoco.MjData(model)
    lo, hi = DEFAULTS[mechanism][1].range
    effort = 30.0 if MECHANISMS[mechanism] == "slide" else 3.0
    opened = _push(model, data, "p", effort)
    closed = _push(model, data, "p", -effort, qpos={"p": hi})
    span = hi - lo
    assert hi - 0.03 * span <= opened <= hi + 0.03 * span, f"{mechanism} opened to {opened}, limit {hi}"
    assert lo - 0.03 * span <= closed <= lo + 0.03 * span, f"{mechanism} closed to {closed}, limit {lo}"


def _locks(spec):
    return [(spec, part, lock) for part in spec.parts for lock in part.blocked_by]


LOCKS = [item for path in PUZZLES for item in _locks(load_spec(path))]
GENERATED = [generate(GeneratorConfig(depth, seed=seed)) for depth in (3, 5) for seed in (0, 1, 2)]
LOCKS += [item for spec in GENERATED for item in _locks(spec)]


@pytest.mark.parametrize("spec,part,lock", LOCKS, ids=[f"{s.name}:{lk.blocker}->{p.name}" for s, p, lk in LOCKS])
def test_lock_blocks_under_force_and_releases(spec, part, lock):
    """Push the blocked part hard with the blocker anywhere in its locked range: it stays put and
    the blocker is not shoved out; the same push opens it once the blocker is moved clear."""
    model = puzzle_scene(spec).compile()
    data = mujoco.MjData(model)
    jid = model.joint(f"{part.name}/joint").id
    lo, hi = model.jnt_range[jid]
    slide = model.jnt_type[jid] == mujoco.mjtJoint.mjJNT_SLIDE
    effort = 20.0 if slide else 1.5
    span = hi - lo
    allowed = max(0.08 * span, lock.play + 0.004) if slide else 0.08 * span
    blocker_range = model.jnt_range[model.joint(f"{lock.blocker}/joint").id]
    # Every other part starts fully open, so only this lock can stop the blocked part; parts
    # that the two parts under test themselves block stay shut (opening them first would be
    # impossible, and their keepers would sit in the way of these two parts' pins).
    held_shut = {p.name for p in spec.parts for lk in p.blocked_by if lk.blocker in (part.name, lock.blocker)}
    others = {p.name: float(model.jnt_range[model.joint(f"{p.name}/joint").id][1])
              for p in spec.parts if p.name not in (part.name, lock.blocker) and p.name not in held_shut}
    l_lo, l_hi = lock.locked_range
    for fraction in (0.0, 0.5, 0.95):
        where = max(l_lo + fraction * (l_hi - l_lo), blocker_range[0])
        locked = _push(model, data, part.name, effort, qpos={**others, lock.blocker: where})
        assert locked - lo <= allowed, f"blocker at {where:.3f}: blocked part moved to {locked:.4f} (range {lo}..{hi})"
        blocker_now = float(data.qpos[model.joint(f"{lock.blocker}/joint").qposadr[0]])
        assert l_lo - 0.05 * (l_hi - l_lo) <= blocker_now <= l_hi + 0.05 * (l_hi - l_lo), \
            f"the push drove the blocker from {where:.3f} to {blocker_now:.3f}, out of its locked range"
    free_value = 0.5 * (l_hi + blocker_range[1])
    released = _push(model, data, part.name, effort, qpos={**others, lock.blocker: free_value})
    assert released > lo + 0.6 * span, f"unlocked part only reached {released} (range {lo}..{hi})"


def test_spring_returns_a_pressed_button_and_holds_an_unsprung_one():
    """`stiffness` makes a spring-return part; without it, friction keeps it where it is left."""
    def final(stiffness: float) -> float:
        part = PartSpec("b", "button", (0.0, 0.15),
                        joint=JointSpec((0.0, 0.012), friction=0.2, damping=2.0, armature=0.15, stiffness=stiffness))
        spec = PuzzleSpec("spring", [part], [GoalSpec("b", min=0.01)])
        validate(spec)
        model = puzzle_scene(spec).compile()
        data = mujoco.MjData(model)
        data.qpos[model.joint("b/joint").qposadr[0]] = 0.012  # pressed in
        mujoco.mj_step(model, data, 1000)
        return float(data.qpos[model.joint("b/joint").qposadr[0]])

    assert final(stiffness=200.0) < 0.002  # 200 N/m * 12 mm = 2.4 N > 0.2 N friction: springs back
    assert final(stiffness=0.0) > 0.011
