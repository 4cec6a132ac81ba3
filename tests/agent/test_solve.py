"""The solve loop: goal-directed planning on lock beliefs, and an end-to-end solve on the emulator."""

from pathlib import Path

import numpy as np
import pytest

from puzzlebot.agent.affordances import TaskGoal, marker_sheet, task_goals
from puzzlebot.agent.locks import OPEN, ActiveExplorer, Attempt, LockBeliefs
from puzzlebot.agent.session import SessionConfig, run_solve
from puzzlebot.agent.solve import SolveConfig, _next_move
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig
from puzzlebot.sim.generator import GeneratorConfig, generate


def test_task_goal_is_an_opening_from_the_start():
    spec = generate(GeneratorConfig(depth=2, seed=1))
    (goal,) = task_goals(spec)
    assert goal.part == spec.goal[0].part and goal.min_opening == pytest.approx(spec.goal[0].min)
    assert not goal.holds(0.0) and goal.holds(goal.min_opening + 1e-6)
    assert TaskGoal("drawer", 0.05, 0.08).holds(0.06) and not TaskGoal("drawer", 0.05, 0.08).holds(0.09)


def test_a_failed_goal_open_is_replanned_through_a_blocker_then_probed_when_stuck():
    beliefs = LockBeliefs(["door", "bolt"], slip=0.05)
    config, chooser, rng = SolveConfig(), ActiveExplorer(), np.random.default_rng(0)
    failed: dict = {}
    probe, why = _next_move("door", beliefs, frozenset(), failed, config, chooser, rng)
    assert (probe.part, probe.direction) == ("door", OPEN)  # no evidence yet: just open it
    beliefs.update(Attempt("door", frozenset(), False, OPEN))
    probe, why = _next_move("door", beliefs, frozenset(), failed, config, chooser, rng)
    assert (probe.part, probe.direction) == ("bolt", OPEN) and "open bolt -> open door" in why
    # the plan's first move failing twice in one state is a stuck plan: ask the beliefs instead
    failed[("bolt", frozenset())] = config.replan_failures
    probe, why = _next_move("door", beliefs, frozenset(), failed, config, chooser, rng)
    assert why.startswith("the plan is stuck")


@pytest.mark.slow
def test_a_depth_two_lockbox_is_solved_on_the_emulator_from_camera_images(tmp_path: Path):
    spec = generate(GeneratorConfig(depth=2, seed=1))
    emulator = EmulatorBackend(EmulatorConfig(puzzle=spec, robot="gripper", seed=1, cameras=("closeup", "top"),
                                              image_size=(480, 640), realtime=False, lockstep=True))
    result = run_solve(emulator, marker_sheet(spec), task_goals(spec), tmp_path,
                       SessionConfig(record_episode=False), SolveConfig(max_attempts=10, max_robot_s=240.0))
    assert result.solved  # the emulator's own joints meet the goal
    assert result.outcome.believed_solved and len(result.outcome.attempts) <= 10
    goal = spec.goal[0]
    assert result.final_positions[goal.part] >= goal.min
    # the agent's own estimate of the goal part's opening agrees with the world's joint
    assert result.outcome.openings[goal.part] == pytest.approx(result.final_positions[goal.part], abs=0.15)
    assert (tmp_path / "solve.json").exists() and (tmp_path / "fitted_model.xml").exists()
