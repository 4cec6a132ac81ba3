"""MJCF puzzles brought by users: loaded, validated with named fields, physical, goal-checked."""

from __future__ import annotations

from pathlib import Path

import mujoco
import pytest
import yaml

from puzzlebot.sim.build import Placement
from puzzlebot.sim.external import ExternalPuzzleSpec, load_external, load_puzzle
from puzzlebot.sim.oracle import Oracle
from puzzlebot.sim.spec import PuzzleSpec, SpecError
from puzzlebot.sim.world import PuzzleWorld, WorldConfig

CABINET = Path(__file__).resolve().parents[2] / "puzzlebot" / "assets" / "puzzles" / "external" / "cabinet.yaml"


def _door_after_push(world: PuzzleWorld, latch: float) -> float:
    world.reset()
    model, data = world.model, world.data
    data.qpos[model.joint(world.joint_name("latch_slide")).qposadr[0]] = latch
    dof = model.joint(world.joint_name("door_hinge")).dofadr[0]
    for _ in range(750):
        data.qfrc_applied[:] = 0
        data.qfrc_applied[dof] = 1.0
        world.step()
    return world.part_position("door_hinge")


def test_cabinet_loads_and_its_latch_blocks_the_door_physically():
    puzzle = load_puzzle(CABINET)
    assert isinstance(puzzle, ExternalPuzzleSpec)
    assert set(puzzle.joints) == {"door_hinge", "latch_slide"}
    # Stand the cabinet back so its 28 cm door swings clear of the gripper's home pose.
    world = PuzzleWorld(puzzle, WorldConfig(robot="gripper", placement=Placement(pos=(0.2, 0.0))))
    assert _door_after_push(world, latch=0.0) < 0.1
    assert not world.goal_reached()
    assert _door_after_push(world, latch=0.06) > 1.0
    assert world.goal_reached()


def test_shipped_yaml_still_loads_as_puzzle_spec():
    assert isinstance(load_puzzle(CABINET.parents[1] / "bolt_drawer.yaml"), PuzzleSpec)


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (lambda d: d.update(mjcf="missing.xml"), "puzzle.mjcf", "not found"),
        (lambda d: d["goal"][0].update(joint="lid_hinge"), "puzzle.goal[0].joint", "no hinge/slide joint 'lid_hinge'"),
        (lambda d: d["goal"][0].update(min=5.0), "puzzle.goal[0]", "unreachable goal"),
        (lambda d: d.update(colour="red"), "puzzle.colour", "unknown field"),
        (lambda d: d["goal"][0].update(min="x"), "puzzle.goal[0].min", "expected a number"),
        (lambda d: d["goal"][0].update(joint=["door_hinge"]), "puzzle.goal[0].joint", "expected a joint name"),
    ],
)
def test_bad_mjcf_puzzles_name_the_field(tmp_path, edit, field, reason):
    data = yaml.safe_load(CABINET.read_text())
    data["mjcf"] = str(CABINET.parent / data["mjcf"])
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        load_external(path)
    assert info.value.field_path == field and reason in info.value.reason


def test_broken_mjcf_reports_mujocos_reason(tmp_path):
    (tmp_path / "broken.xml").write_text("<mujoco><worldbody><body><geom type='sphere'/></body></mujoco>")
    (tmp_path / "p.yaml").write_text("name: p\nmjcf: broken.xml\ngoal: [{joint: j, min: 0}]\n")
    with pytest.raises(SpecError, match="MuJoCo cannot load broken.xml"):
        load_external(tmp_path / "p.yaml")


def test_oracle_refuses_mjcf_puzzles_with_a_reason():
    with pytest.raises(TypeError, match="declares none"):
        Oracle(load_external(CABINET))


def test_exported_scene_has_prefixed_joints():
    world = PuzzleWorld(load_external(CABINET))
    assert world.model.joint("ext/door_hinge").type[0] == mujoco.mjtJoint.mjJNT_HINGE


def test_mjcf_puzzle_runs_in_the_gymnasium_env():
    from puzzlebot.sim.env import EnvConfig, LockboxEnv

    env = LockboxEnv(EnvConfig(puzzle=CABINET, cameras=(), privileged=True, placement=Placement(pos=(0.2, 0.0))))
    obs, _ = env.reset(seed=0)
    assert obs["privileged"].shape == (2,)
    obs, reward, terminated, _, info = env.step(env.action_space.sample())
    assert not terminated and 0.0 <= info["reward_terms"]["progress"] < 1.0
    env.close()


def test_domain_randomization_covers_mjcf_puzzles():
    from puzzlebot.sim.env import EnvConfig, LockboxEnv
    from puzzlebot.sim.randomization import DomainRandomization

    env = DomainRandomization(LockboxEnv(EnvConfig(puzzle=CABINET, cameras=(), placement=Placement(pos=(0.2, 0.0)))))
    env.reset(seed=1)
    hinge = env.unwrapped.model.joint("ext/door_hinge")
    first = float(hinge.frictionloss[0])
    env.reset(seed=2)
    assert float(hinge.frictionloss[0]) != first
    carcass = env.unwrapped.model.geom("ext/carcass_box")
    assert not (carcass.rgba[:3] == [0.45, 0.5, 0.58]).all()
    env.close()
