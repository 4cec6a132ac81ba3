"""The ground-truth oracle solves lockboxes in simulation with both robots, no scripted attachment.

Success is read off the simulated world (the goal predicate, the goal parts' joint values,
and that they stay there once the hand has left), never off the oracle's own report alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from puzzlebot.sim.generator import GeneratorConfig, generate
from puzzlebot.sim.oracle import Oracle, OracleResult
from puzzlebot.sim.robots.base import HandGeometry
from puzzlebot.sim.skills import SkillExecutor
from puzzlebot.sim.spec import PuzzleSpec, load_spec
from puzzlebot.sim.world import PuzzleWorld, WorldConfig

BOLT_DRAWER = Path(__file__).resolve().parents[2] / "puzzlebot" / "assets" / "puzzles" / "bolt_drawer.yaml"
HOLD_S = 1.0  # s the solved state must survive with the robot idle


def _solve(spec: PuzzleSpec, robot: str) -> tuple[Oracle, OracleResult]:
    oracle = Oracle(spec, WorldConfig(robot=robot))
    return oracle, oracle.solve()


def _assert_solved(oracle: Oracle, result: OracleResult) -> None:
    world = oracle.world
    assert result.solved, f"{oracle.spec.name}: {result.reason}; executed {result.executed}"
    assert world.goal_reached()
    for goal in oracle.spec.goal:
        assert goal.holds(world.part_position(goal.part)), (goal, world.part_state())
    assert np.all(np.isfinite(world.data.qpos))
    oracle.executor.wait(HOLD_S)  # nothing falls back shut once the hand is away
    assert world.goal_reached(), world.part_state()


@pytest.mark.parametrize("robot", ["gripper", "jaco"])
def test_solves_bolt_drawer(robot: str) -> None:
    spec = load_spec(BOLT_DRAWER)
    oracle, result = _solve(spec, robot)
    _assert_solved(oracle, result)
    assert [move.part for move in result.plan] == ["bolt", "drawer"]
    (lock,) = spec.part("drawer").blocked_by
    assert oracle.world.part_position("bolt") > lock.locked_range[1]  # slid clear of the drawer
    assert oracle.world.part_position("drawer") >= 0.08  # the goal: pulled out at least 8 cm
    assert result.sim_time_s < 30.0


SHIPPED = sorted(BOLT_DRAWER.parent.glob("*.yaml"))


@pytest.mark.parametrize("robot", ["gripper", "jaco"])
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_solves_every_shipped_puzzle(path: Path, robot: str) -> None:
    spec = load_spec(path)
    oracle, result = _solve(spec, robot)
    _assert_solved(oracle, result)


@pytest.mark.parametrize("depth, seed", [(d, s) for d in range(1, 6) for s in (0, 1)])
def test_gripper_solves_generated(depth: int, seed: int) -> None:
    spec = generate(GeneratorConfig(depth=depth, seed=seed))
    oracle, result = _solve(spec, "gripper")
    _assert_solved(oracle, result)
    assert len(result.plan) == depth


# One of each goal mechanism (seed 0: drawer, 1: lid, 2: door) with bolts, a button and a knob.
JACO_CASES = [(1, 1), (2, 0), (3, 2), (4, 0)]


@pytest.mark.parametrize("depth, seed", JACO_CASES)
def test_jaco_solves_generated(depth: int, seed: int) -> None:
    spec = generate(GeneratorConfig(depth=depth, seed=seed))
    oracle, result = _solve(spec, "jaco")
    _assert_solved(oracle, result)


@pytest.mark.slow
@pytest.mark.parametrize("depth, seed", [(d, s) for d in range(1, 6) for s in range(7)
                                         if (d, s) not in JACO_CASES])
def test_jaco_solves_generated_sweep(depth: int, seed: int) -> None:
    spec = generate(GeneratorConfig(depth=depth, seed=seed))
    oracle, result = _solve(spec, "jaco")
    _assert_solved(oracle, result)


@pytest.mark.parametrize("robot", ["gripper", "jaco"])
def test_skills_take_hand_geometry_from_the_controller(robot: str) -> None:
    world = PuzzleWorld(load_spec(BOLT_DRAWER), WorldConfig(robot=robot))
    hand = SkillExecutor(world).hand
    assert isinstance(hand, HandGeometry) and hand is world.arm.hand
    assert hand.side_pushes and 0.0 <= hand.preshape <= 1.0 and hand.max_speed > 0


def test_gripper_hand_keeps_its_measured_constants() -> None:
    world = PuzzleWorld(load_spec(BOLT_DRAWER), WorldConfig(robot="gripper"))
    hand = world.arm.hand
    assert hand.press_reach == pytest.approx(0.015)  # fingertips past the TCP
    assert hand.side_pushes[0].point[1] == pytest.approx(0.012)  # closed fingers' half width
    assert hand.preshape == 0.0 and hand.grasp_offset == 0.0
