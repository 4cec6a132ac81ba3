"""Joint dynamics identification against the true puzzle's parameters (read only by the test)."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest

from puzzlebot.agent.sysid import JointInteraction, fit_joint
from puzzlebot.sim.spec import load_spec
from puzzlebot.sim.world import PuzzleWorld, WorldConfig

PUZZLES = Path(__file__).resolve().parents[2] / "puzzlebot" / "assets" / "puzzles"
OBS_HZ = 30.0


def push_profile(level: float, timestep: float) -> np.ndarray:
    """Push, coast, pull back, coast: steps excite inertia, coasting shows friction and damping."""
    pattern = [(level, 0.4), (0.0, 0.4), (-level, 0.4), (0.0, 0.4), (1.6 * level, 0.2), (0.0, 0.4)]
    return np.concatenate([np.full(int(round(d / timestep)), f) for f, d in pattern])


def logged_interaction(puzzle: str, part: str, level: float, start: float, free: dict[str, float],
                       noise: float, rng: np.random.Generator) -> tuple[JointInteraction, dict[str, float]]:
    """Drive the TRUE world's joint with a known effort; observe it at 30 Hz with noise."""
    world = PuzzleWorld(load_spec(PUZZLES / f"{puzzle}.yaml"), WorldConfig(robot="gripper"))
    model, data = world.model, world.data
    for name, q in {**free, part: start}.items():
        data.qpos[model.joint(f"{name}/joint").qposadr[0]] = q
    mujoco.mj_forward(model, data)
    joint = model.joint(f"{part}/joint")
    dof, adr = joint.dofadr[0], joint.qposadr[0]
    effort = push_profile(level, model.opt.timestep)
    every = int(round(1.0 / (OBS_HZ * model.opt.timestep)))
    times, positions = [], []
    for i, f in enumerate(effort):
        if i % every == 0:
            times.append(i * model.opt.timestep)
            positions.append(data.qpos[adr] - start + rng.normal(0, noise))
        data.qfrc_applied[:] = 0
        data.qfrc_applied[dof] = f
        mujoco.mj_step(model, data)
    body = model.body(int(model.jnt_bodyid[joint.id]))
    kind = "prismatic" if joint.type[0] == mujoco.mjtJoint.mjJNT_SLIDE else "revolute"
    inertia = body.mass[0] if kind == "prismatic" else None
    truth = {"friction": float(model.dof_frictionloss[dof]), "damping": float(model.dof_damping[dof]),
             "inertia": float(model.dof_armature[dof] + inertia) if inertia is not None else float("nan")}
    lo, hi = joint.range
    return JointInteraction(kind, model.opt.timestep, effort, np.array(times), np.array(positions),
                            limits=(lo - start, hi - start)), truth


def test_drawer_friction_damping_and_inertia_recovered():
    interaction, truth = logged_interaction("bolt_drawer", "drawer", level=3.0, start=0.03, free={"bolt": 0.04},
                                            noise=0.001, rng=np.random.default_rng(0))
    assert np.ptp(interaction.positions) > 0.02  # it really moved
    fit = fit_joint(interaction, noise_std=0.001)
    for name in ("friction", "damping"):
        error = abs(fit.values[name] - truth[name]) / truth[name]
        assert error < 0.15, f"{name}: fitted {fit.values[name]:.3f}, true {truth[name]:.3f}"
    assert abs(fit.values["inertia"] - truth["inertia"]) / truth["inertia"] < 0.25
    assert fit.rms_error < 0.002
    # The posterior is honest: the truth lies within 3 sigma (log space) for friction and damping.
    for i, name in enumerate(("friction", "damping")):
        z = abs(np.log(truth[name]) - fit.log_mean[i]) / np.sqrt(fit.log_covariance[i, i])
        assert z < 3.0, f"{name}: truth {z:.1f} sigma from the fit"


def test_warm_start_refits_cheaply():
    interaction, _ = logged_interaction("bolt_drawer", "drawer", level=3.0, start=0.03, free={"bolt": 0.04},
                                        noise=0.001, rng=np.random.default_rng(1))
    cold = fit_joint(interaction)
    warm = fit_joint(interaction, initial=cold.values)
    assert warm.evaluations < cold.evaluations
    np.testing.assert_allclose(list(warm.values.values()), list(cold.values.values()), rtol=0.02)


def test_posterior_samples_spread_like_the_covariance():
    interaction, _ = logged_interaction("bolt_drawer", "drawer", level=3.0, start=0.03, free={"bolt": 0.04},
                                        noise=0.001, rng=np.random.default_rng(2))
    fit = fit_joint(interaction, noise_std=0.001)
    draws = fit.samples(400, np.random.default_rng(0))
    logs = np.log([[d["friction"], d["damping"], d["inertia"]] for d in draws])
    np.testing.assert_allclose(logs.std(axis=0), np.sqrt(np.diag(fit.log_covariance)), rtol=0.2)
    assert pytest.approx(fit.relative_std()["friction"]) == np.sqrt(fit.log_covariance[0, 0])
