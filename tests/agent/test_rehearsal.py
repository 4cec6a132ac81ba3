"""Rehearsal in the fitted model: a push that the physics allows gets there in about the time the
speed says, one the part's friction forbids does not, and a hinge's lever arm decides which."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from puzzlebot.agent.fitted_model import FittedModel, FittedPart
from puzzlebot.agent.rehearsal import RehearsalConfig, Rehearser
from tests.agent.test_fitted_model import BASE_POS, BASE_QUAT, door, drawer, joint_fit, panel

CONFIG = RehearsalConfig(samples=8, horizon_s=3.0, threads=1)


def model_of(*parts: FittedPart) -> FittedModel:
    return FittedModel(parts=list(parts), base_position=BASE_POS, base_quaternion=BASE_QUAT, lock_graph={})


def with_dynamics(part: FittedPart, friction: float, damping: float, inertia: float) -> FittedPart:
    return replace(part, dynamics=joint_fit({"friction": friction, "damping": damping, "inertia": inertia},
                                            [0.05, 0.05, 0.05]))


def test_a_free_drawer_is_rehearsed_to_its_target_at_the_hand_speed():
    rehearser = Rehearser(model_of(with_dynamics(drawer(), 2.0, 5.0, 0.45), panel()), CONFIG)
    out = rehearser.rehearse("drawer_0", 0.0, 0.09)
    assert out.p_reach == 1.0
    # 9 cm at 6 cm/s is 1.5 s; the hand takes a moment to come up to speed
    assert 1.5 <= out.time_s < 1.5 * 1.3
    assert np.all(out.final >= 0.09)  # and it goes on past the target: the range was opened up to it
    assert out.surprise(True) == pytest.approx(0.0) and out.surprise(False) == pytest.approx(np.log(2 * 8))


def test_a_drawer_stiffer_than_the_hand_pushes_does_not_move():
    stiff = with_dynamics(drawer(), 20.0, 5.0, 0.45)  # 20 N of dry friction against a 12 N hand
    out = Rehearser(model_of(stiff), CONFIG).rehearse("drawer_0", 0.0, 0.09)
    assert out.p_reach == 0.0 and out.time_s == float("inf")
    assert np.all(np.abs(out.final) < 1e-3)


def test_a_hinge_turns_only_if_the_lever_arm_makes_the_force_enough():
    # 0.5 N·m of friction: 12 N at the door's handle (about 11 cm out) is 1.3 N·m, at 3 cm 0.36 N·m
    free = with_dynamics(door(), 0.5, 0.05, 0.007)
    out = Rehearser(model_of(free), CONFIG).rehearse("door_1", 0.0, 1.0)
    assert out.p_reach == 1.0
    near_axis = replace(free, handle=free.articulation.origin + np.array([0.0, 0.03, 0.0]))
    assert Rehearser(model_of(near_axis), CONFIG).rehearse("door_1", 0.0, 1.0).p_reach == 0.0


def test_an_uncertain_part_is_rehearsed_across_its_posterior():
    # friction around the hand's force, widely uncertain: some draws move, some do not
    unsure = replace(drawer(), dynamics=joint_fit({"friction": 12.0, "damping": 1.0, "inertia": 0.45},
                                                  [0.5, 0.05, 0.05]))
    out = Rehearser(model_of(unsure), replace(CONFIG, samples=32)).rehearse("drawer_0", 0.0, 0.05)
    assert 0.1 < out.p_reach < 0.9


def test_what_cannot_be_rehearsed_is_refused_by_name():
    rehearser = Rehearser(model_of(drawer(), panel()), CONFIG)
    with pytest.raises(ValueError, match="marker_7"):
        rehearser.rehearse("marker_7", 0.0, 0.05)
    with pytest.raises(ValueError, match="target opening"):
        rehearser.rehearse("drawer_0", 0.05, 0.02)
    with pytest.raises(ValueError, match="samples"):
        RehearsalConfig(samples=0)


def test_throughput_is_measured_against_raw_rollout_on_the_same_inputs():
    report = Rehearser(model_of(drawer()), CONFIG).throughput("drawer_0", 0.0, 0.05, repeats=2)
    assert report["batch"] == 8 and report["nstep"] == 1500
    assert report["rehearsal_steps_per_s"] > 0 and report["raw_rollout_steps_per_s"] > 0
    assert report["ratio"] == pytest.approx(report["rehearsal_steps_per_s"] / report["raw_rollout_steps_per_s"])
