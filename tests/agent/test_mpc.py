"""The MPC brings a part to a target opening and leaves it there, against a world it only knows
through its posterior: a pushed drawer that coasts is let go early, where a fixed-speed push
that stops at the target carries it past; a grasped door is braked on the spot."""

from __future__ import annotations

from dataclasses import replace

import mujoco
import numpy as np
import pytest

from puzzlebot.agent.mpc import MPCConfig, MPCPace, OpeningMPC, TargetFollow
from puzzlebot.agent.rehearsal import RehearsalConfig, Rehearser
from tests.agent.test_fitted_model import door, drawer
from tests.agent.test_rehearsal import model_of, with_dynamics

CONTROL_S = 0.01  # the arm's control period


def true_world(rehearser: Rehearser, part: str, params: dict, pushing: bool, target: float) -> mujoco.MjModel:
    """The part with `params` (not the model's point estimate) and the hand as a speed servo
    that, when it pushes, can only push."""
    return rehearser.driving(rehearser.with_params({part: params}), part, 2.0 * target, pushing)


def run(rehearser: Rehearser, part: str, world: mujoco.MjModel, pace, seconds: float = 6.0) -> float:
    """Drive the world's part with `pace` (hand travel in, speed out); its opening once settled."""
    data = mujoco.MjData(world)
    joint = world.joint(f"{part}/joint")
    sign, lever, act = rehearser.opening_sign(part), rehearser.lever(part), rehearser.parts.index(part)
    revolute = joint.type[0] == mujoco.mjtJoint.mjJNT_HINGE
    substeps = int(round(CONTROL_S / world.opt.timestep))
    for _ in range(int(seconds / CONTROL_S)):
        q = sign * data.qpos[joint.qposadr[0]]
        travelled = 2 * lever * np.sin(q / 2) if revolute else q * lever  # the hand's chord from the start
        speed = pace(data.time, travelled)
        data.ctrl[act] = 0.0 if speed is None else sign * speed / lever
        mujoco.mj_step(world, data, substeps)
        if speed is None:
            break
    data.ctrl[:] = 0.0
    mujoco.mj_step(world, data, int(2.0 / world.opt.timestep))  # let it come to rest
    return float(sign * data.qpos[joint.qposadr[0]])


def slippery_drawer():
    # 0.3 N of friction on a 0.45 kg drawer: let go at 6 cm/s, it coasts on for most of a centimetre
    return with_dynamics(drawer(), 0.3, 0.2, 0.45)


def test_a_pushed_drawer_that_coasts_is_let_go_early_and_stops_at_the_target():
    part = slippery_drawer()
    rehearser = Rehearser(model_of(part), RehearsalConfig(samples=8, threads=1))
    target = 0.06
    params = part.dynamics.samples(1, np.random.default_rng(3))[0]  # a world inside the posterior
    world = true_world(rehearser, "drawer_0", params, pushing=True, target=target)
    with OpeningMPC(rehearser, "drawer_0", target, pushing=True, config=MPCConfig(seed=1)) as mpc:
        paced = run(rehearser, "drawer_0", world, MPCPace(mpc, 0.0, revolute=False))
        assert mpc.stats.replans >= 3 and mpc.stats.rollout_steps > 0
    fixed = run(rehearser, "drawer_0", world, TargetFollow(0.06, 0.0, target, 1.0, revolute=False))
    assert abs(paced - target) <= MPCConfig().tolerance  # within 3 mm
    assert fixed - target > 0.005  # the fixed push carried it past by more than 5 mm
    assert abs(paced - target) < 0.5 * abs(fixed - target)


def test_a_grasped_door_is_brought_to_its_target_angle():
    part = with_dynamics(door(), 0.05, 0.01, 0.007)
    rehearser = Rehearser(model_of(part), RehearsalConfig(samples=8, threads=1))
    target = 0.7
    params = part.dynamics.samples(1, np.random.default_rng(5))[0]
    world = true_world(rehearser, "door_1", params, pushing=False, target=target)
    with OpeningMPC(rehearser, "door_1", target, pushing=False) as mpc:
        pace = MPCPace(mpc, 0.0, revolute=True)
        reached = run(rehearser, "door_1", world, pace)
    assert pace.finished
    assert abs(reached - target) * rehearser.lever("door_1") < 0.004  # within 4 mm at the handle


def test_the_best_profile_is_the_one_the_rollouts_score_lowest():
    part = slippery_drawer()
    rehearser = Rehearser(model_of(part), RehearsalConfig(samples=8, threads=1))
    cfg = MPCConfig(candidates=2, samples=4)
    with OpeningMPC(rehearser, "drawer_0", 0.05, pushing=True, config=cfg) as mpc:
        profiles = np.array([[0.0] * 4, [0.05] * 4, [0.09] * 4, [0.02] * 4])
        costs = mpc.costs(profiles, 0.0, 0.0)
        assert costs[0] > costs[3] > costs[1]  # standing still is worst; a slow push falls short
        near = mpc.costs(profiles, 0.045, 0.08)  # 5 mm short and coasting at 8 cm/s: let go
        assert np.argmin(near) == 0


def test_pace_reads_a_hinge_opening_off_the_chord():
    part = with_dynamics(door(), 0.05, 0.01, 0.007)
    rehearser = Rehearser(model_of(part), RehearsalConfig(samples=8, threads=1))
    with OpeningMPC(rehearser, "door_1", 1.0, pushing=False) as mpc:
        pace = MPCPace(mpc, 0.2, revolute=True)
        lever = rehearser.lever("door_1")
        assert pace.opening(2 * lever * np.sin(0.25)) == pytest.approx(0.7)
        assert pace(0.0, 2 * lever * np.sin(0.45)) is None and pace.finished  # at 1.1 rad: past it


@pytest.mark.parametrize("field,value", [("candidates", 0), ("knots", 1), ("replan_s", 2.0), ("noise", -0.1),
                                         ("tolerance", 0.0)])
def test_impossible_configs_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        replace(MPCConfig(), **{field: value})


def test_more_samples_than_the_posterior_draws_is_refused():
    rehearser = Rehearser(model_of(slippery_drawer()), RehearsalConfig(samples=4, threads=1))
    with pytest.raises(ValueError, match="samples"):
        OpeningMPC(rehearser, "drawer_0", 0.05, pushing=True, config=MPCConfig(samples=8))
