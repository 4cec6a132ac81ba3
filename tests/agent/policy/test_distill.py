"""The MPC distilled into a small policy on the policy's own states stops a coasting pushed
drawer at its target as the MPC does, on posterior draws it never saw, without planning."""

from __future__ import annotations

import time

import numpy as np
import pytest

from puzzlebot.agent.policy.distill import DistillConfig, DistillReport, distil_mpc, learn_from_moves
from puzzlebot.agent.policy.skill_env import SkillEnv, SkillEnvConfig
from puzzlebot.agent.policy.skill_policy import VisitedMove, evaluate
from puzzlebot.agent.rehearsal import RehearsalConfig, Rehearser
from tests.agent.test_fitted_model import drawer
from tests.agent.test_rehearsal import model_of, with_dynamics


def test_the_distilled_policy_brings_the_drawer_to_its_target_without_planning():
    rehearser = Rehearser(model_of(with_dynamics(drawer(), 0.3, 0.2, 0.45)), RehearsalConfig(samples=8, threads=1))
    policy, report = distil_mpc(rehearser, "drawer_0", pushing=True,
                                config=DistillConfig(rounds=2, episodes=4, query_every=3, epochs=150))
    assert report.labels > 50 and len(report.rounds) == 2 and report.rounds[-1]["labels"] == report.labels
    env = SkillEnv(rehearser, "drawer_0", pushing=True, config=SkillEnvConfig(randomization="posterior"))
    errors = np.abs(evaluate(policy, env, episodes=20, seed=5000))
    assert np.median(errors) <= 0.003 and np.mean(errors <= 0.005) >= 0.8
    obs = env.reset(seed=0)[0]
    tic = time.perf_counter()
    for _ in range(100):
        policy.speed(obs)
    per_step = (time.perf_counter() - tic) / 100
    assert per_step < 0.1 * report.teacher_s / report.labels  # a tenth of a teacher's label, at most


def test_a_student_carried_to_a_new_drawer_learns_it_and_keeps_the_old_one():
    """Learning across puzzles: the second drawer's student starts from the first's weights and
    replays its labels, and still brings the first drawer to its target."""
    config = DistillConfig(rounds=2, episodes=4, query_every=3, epochs=150)
    first = Rehearser(model_of(with_dynamics(drawer(), 0.3, 0.2, 0.45)), RehearsalConfig(samples=8, threads=1))
    second = Rehearser(model_of(with_dynamics(drawer(), 1.0, 0.5, 0.8)), RehearsalConfig(samples=8, threads=1))
    policy, report = distil_mpc(first, "drawer_0", pushing=True, config=config)
    carried, again = distil_mpc(second, "drawer_0", pushing=True, config=config, previous=(policy, report))
    assert again.replayed == report.labels and again.labels > report.labels
    assert len(again.actions) == again.labels and np.all(np.abs(again.actions) <= 1.0)
    for rehearser in (first, second):
        env = SkillEnv(rehearser, "drawer_0", pushing=True, config=SkillEnvConfig(randomization="posterior"))
        errors = np.abs(evaluate(carried, env, episodes=12, seed=7000))
        assert np.median(errors) <= 0.004 and np.mean(errors <= 0.005) >= 0.75
    with pytest.raises(ValueError, match="does not fit"):
        distil_mpc(second, "drawer_0", pushing=True, config=DistillConfig(rounds=1, episodes=1, hidden=(8,)),
                   previous=(policy, report))


@pytest.mark.parametrize("field", ["rounds", "episodes", "query_every", "epochs"])
def test_impossible_distill_configs_name_the_field(field):
    with pytest.raises(ValueError, match=field):
        DistillConfig(**{field: 0})


def _played(policy, rehearser: Rehearser, episodes: int, seed: int) -> tuple[np.ndarray, list[VisitedMove]]:
    """The policy's moves on one drawer (its point estimate standing in for the arm): final errors
    (m) and what it saw, with the opening and velocity at each step."""
    env = SkillEnv(rehearser, "drawer_0", pushing=True, config=SkillEnvConfig(randomization="none"))
    errors, moves = [], []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        seen, openings, velocities = [], [], []
        while True:
            q, qd = env._state()
            seen.append(obs)
            openings.append(q)
            velocities.append(qd)
            speed = policy.speed(obs)
            obs, _, terminated, truncated, info = env.step([2.0 * speed / policy.spec["max_speed"] - 1.0])
            if terminated or truncated:
                errors.append(info["error_m"])
                break
        moves.append(VisitedMove("drawer_0", True, env.target, np.array(seen), np.array(openings),
                                 np.array(velocities)))
    return np.array(errors), moves


@pytest.mark.slow
def test_a_policy_learns_a_slicker_drawer_from_its_own_moves_and_replay_keeps_the_first():
    """On-the-job DAgger: a student distilled on one drawer overshoots a slicker one by ~18 mm; its
    own six moves there, labelled by the teacher in that drawer's model, teach it the new drawer,
    and the replay of its earlier labels keeps the first drawer (without it, both are missed by
    about 2 cm: six moves are too few to learn from alone)."""
    config = DistillConfig(rounds=2, episodes=4, query_every=3, epochs=150)
    first = Rehearser(model_of(with_dynamics(drawer(), 0.3, 0.2, 0.45)), RehearsalConfig(samples=8, threads=1))
    slick = Rehearser(model_of(with_dynamics(drawer(), 0.1, 0.05, 0.7)), RehearsalConfig(samples=8, threads=1))
    policy, report = distil_mpc(first, "drawer_0", pushing=True, config=config)
    overshoot, moves = _played(policy, slick, 6, seed=100)
    assert np.median(overshoot) > 0.01  # it coasts past the target
    learned, after = learn_from_moves(policy, report, slick, moves, config)
    assert after.replayed == report.labels and after.labels > report.labels
    for rehearser in (slick, first):
        errors, _ = _played(learned, rehearser, 8, seed=300)
        assert np.median(np.abs(errors)) <= 0.005
    forgetful, _ = learn_from_moves(policy, DistillReport(), slick, moves, config)
    errors, _ = _played(forgetful, first, 8, seed=300)
    assert np.median(np.abs(errors)) > 0.01
    with pytest.raises(ValueError, match="no state"):
        learn_from_moves(policy, report, slick, [], config)
