"""The emulator's wrist force/torque sensor: zero in free space, the push of what the hand presses.

The emulators here run unpaced (`realtime=False`, no cameras), so time is the emulator's own
clock: tests wait on state timestamps, never on the wall. Numbers measured here are printed
(`pytest -s`) for the closing note.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mujoco
import numpy as np
import pytest

from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig, GapConfig
from puzzlebot.real.emulator_process import WristSensor
from puzzlebot.real.interface import Command, ControlMode, RobotState
from puzzlebot.real.recording import EpisodeWriter
from puzzlebot.real.replay import EpisodeReader, ReplayBackend, decode_capabilities
from puzzlebot.sim.frames import tool_quat
from puzzlebot.sim.robots.gripper import GripperController
from puzzlebot.sim.spec import load_spec
from puzzlebot.sim.world import PuzzleWorld, WorldConfig

PUZZLE = str(Path(__file__).parents[2] / "puzzlebot" / "assets" / "puzzles" / "bolt_drawer.yaml")
BASE_TOP = load_spec(PUZZLE).base.size[2]  # the base box stands on the table, centred at the origin
PRESS_XY = np.array([0.0, -0.1])  # on the base's top, clear of its markers and of the parts on its front
DOWN = tool_quat(np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0]))  # tool +z (approach) straight down
# Where the closed fingertips touch the top: they reach `press_reach` past the TCP along tool +z.
CONTACT_Z = BASE_TOP + GripperController.hand.press_reach
GAP = GapConfig()  # the sensor noise under test is the default


def _run(emu: EmulatorBackend, seconds: float) -> list[RobotState]:
    """The states measured over the next `seconds` of emulator time."""
    states = emu.read_new_states(block=True)
    start = states[-1].t
    while states[-1].t - start < seconds:
        states += emu.read_new_states(block=True)
    return [s for s in states if s.t > start]


def _go(emu: EmulatorBackend, z: float, settle: float = 0.5) -> None:
    """Move the closed gripper's TCP to `z` above the press point, pointing down; wait `settle` s."""
    target = np.concatenate([PRESS_XY, [z], DOWN])
    emu.send(Command(ControlMode.EE, target, grip=1.0, t=emu.read_state().t))
    _run(emu, settle)


def _forces(states: list[RobotState]) -> np.ndarray:
    return np.array([s.wrench[:3] for s in states])


@pytest.fixture(scope="module")
def gripper() -> Iterator[EmulatorBackend]:
    """A floating gripper hovering, closed and pointing down, 5 cm above the base's top."""
    with EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, robot="gripper", seed=4, gap=GAP, cameras=(),
                                        realtime=False)) as backend:
        _go(backend, CONTACT_Z + 0.15)  # up and over first: never sweep the hand across the base's edge
        _go(backend, CONTACT_Z + 0.05)
        yield backend


def test_capabilities_declare_the_sensor() -> None:
    for robot in ("jaco", "gripper"):
        assert EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, robot=robot)).capabilities.has_wrench


@pytest.mark.parametrize("robot", ["gripper", "jaco"])
def test_sensor_equals_mujocos_external_wrench_on_the_hand(robot: str) -> None:
    """In-process, every step: the sensed wrench is MuJoCo's own `cfrc_ext` summed over the hand.

    With no equality constraint on the hand (the gripper's weld switched off, so it falls tilted
    onto the base and topples; the Jaco has none and is driven down into it), `cfrc_ext` holds
    contact forces only: sign, world frame and the lever to the TCP are all checked against it.
    """
    world = PuzzleWorld(load_spec(PUZZLE), WorldConfig(robot=robot, cameras=()))
    model, data, arm = world.model, world.data, world.arm
    world.reset()
    sensor = WristSensor(model, data, arm, robot)
    flange = model.body(WristSensor.FLANGE[robot]).id
    hand = {flange}
    for body in range(flange + 1, model.nbody):  # depth-first numbering: parents come first
        if model.body_parentid[body] in hand:
            hand.add(body)
    tilted = tool_quat(np.array([0.3, 0.2, -1.0]), np.array([1.0, 0.0, 0.0]))
    if robot == "gripper":
        data.eq_active[model.equality("gripper/weld").id] = 0
        free = model.joint("gripper/free").qposadr[0]
        data.qpos[free:free + 7] = np.concatenate([PRESS_XY, [CONTACT_Z + 0.06], tilted])
    worst, peak = 0.0, np.zeros(6)
    for step in range(1500):
        if robot == "jaco":  # down at 5 mm/s from 2 cm above the top, on through it
            arm.set_tcp_target(np.array([*PRESS_XY, BASE_TOP + 0.06 - 5e-3 * step * model.opt.timestep]), tilted)
        world.step()
        sensor.accumulate()
        wrench = sensor.take()  # one step's window: no averaging
        mujoco.mj_rnePostConstraint(model, data)
        tcp = arm.tcp_pose()[0]
        expected = np.zeros(6)
        for body in hand:  # cfrc_ext: (torque about the root's subtree COM, force), world frame
            com = data.subtree_com[model.body_rootid[body]]
            torque, force = data.cfrc_ext[body][:3], data.cfrc_ext[body][3:]
            expected += np.concatenate([force, torque + np.cross(com - tcp, force)])
        worst = max(worst, float(np.abs(wrench - expected).max()))
        peak = np.maximum(peak, np.abs(wrench))
    print(f"\n{robot}: peak |wrench| {peak.round(2)}, worst difference to cfrc_ext {worst:.1e}")
    assert peak[2] > 5.0 and peak[3:].max() > 0.1  # it did touch, with a lever
    assert worst < 1e-9 * max(1.0, peak.max())


def test_noise_fields_are_validated() -> None:
    for name in ("wrench_force_noise", "wrench_torque_noise"):
        for bad in (-0.1, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=name):
                GapConfig(**{name: bad})


def test_free_space_reads_only_noise(gripper: EmulatorBackend) -> None:
    states = _run(gripper, 1.0)  # 100 states: the noise's std is then known to within ~7 %
    forces, torques = _forces(states), np.array([s.wrench[3:] for s in states])
    norm = np.linalg.norm(forces, axis=1).mean()
    print(f"\nfree space, {len(states)} states: mean |F| {norm:.3f} N, F std {forces.std(axis=0).round(3)} N, "
          f"tau std {torques.std(axis=0).round(4)} N·m, mean F {forces.mean(axis=0).round(3)} N")
    assert norm < 1.5
    assert np.linalg.norm(forces.mean(axis=0)) < 0.2  # tared: no weight, no weld pull, only zero-mean noise
    np.testing.assert_allclose(forces.std(axis=0), GAP.wrench_force_noise, rtol=0.35)
    np.testing.assert_allclose(torques.std(axis=0), GAP.wrench_torque_noise, rtol=0.35)


def test_pressing_down_pushes_the_hand_up_harder_when_deeper(gripper: EmulatorBackend) -> None:
    measured = {}
    for depth in (0.01, 0.02):  # commanded below first contact
        _go(gripper, CONTACT_Z - depth)
        states = _run(gripper, 0.2)
        force = _forces(states).mean(axis=0)
        torque = np.mean([s.wrench[3:] for s in states], axis=0)
        measured[depth] = force[2]
        print(f"\ncommanded {depth * 100:.0f} cm below contact: TCP z {states[-1].tcp_position[2] - CONTACT_Z:+.4f} m "
              f"from contact, F {force.round(2)} N, tau {torque.round(3)} N·m")
        assert 20.0 < force[2] < 2000.0  # up, on the hand; far above the noise, short of a solver blow-up
        assert np.linalg.norm(force[:2]) < 0.05 * force[2]  # a flat top pushes straight up
        # Fingertips straddle the TCP's vertical: the push passes (nearly) through it.
        assert np.linalg.norm(torque) < 0.02 * force[2]
    assert measured[0.02] > 1.5 * measured[0.01]
    _go(gripper, CONTACT_Z + 0.05)  # lift off: back in free space, the reading falls to the noise
    assert np.linalg.norm(_forces(_run(gripper, 0.1)).mean(axis=0)) < 0.3


def test_wrench_round_trips_through_a_recorded_episode(gripper: EmulatorBackend, tmp_path: Path) -> None:
    _go(gripper, CONTACT_Z - 0.005, settle=0.3)  # in contact: a wrench worth recording
    states = _run(gripper, 0.1)
    for s in states:
        assert s.wrench is not None and s.wrench.shape == (6,) and np.all(np.isfinite(s.wrench))
    with EpisodeWriter(tmp_path / "run", {"robot": "gripper"}, gripper.capabilities) as writer:
        for s in states:
            writer.log_state(s)
        writer.log_state(RobotState(0, 0.0, np.zeros(0), np.zeros(0), np.zeros(3), np.array([1.0, 0, 0, 0]), 0.0))
    reader = EpisodeReader(tmp_path / "run")
    assert reader.capabilities.has_wrench
    assert len(reader.states) == len(states) + 1
    for logged, read in zip(states, reader.states[:-1], strict=True):
        assert read.wrench is not None and read.wrench.tobytes() == logged.wrench.tobytes()  # bit-exact
    assert reader.states[-1].wrench is None  # a state without the sensor stays without
    replay = ReplayBackend(reader)
    replay.connect()
    np.testing.assert_array_equal(replay.read_state().wrench, states[0].wrench)
    _go(gripper, CONTACT_Z + 0.05)


def test_logs_from_before_the_sensor_still_read() -> None:
    caps = {"name": "old", "joint_names": [], "joint_lower": [], "joint_upper": [], "max_joint_velocity": [],
            "max_joint_acceleration": [], "control_modes": ["ee"], "control_hz": 100.0, "has_gripper": True}
    assert not decode_capabilities(caps).has_wrench


def test_jaco_in_free_space_reads_only_noise() -> None:
    with EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, robot="jaco", seed=5, cameras=(), realtime=False)) as jaco:
        states = _run(jaco, 0.3)
    forces = _forces(states)
    assert forces.shape == (len(states), 3) and np.all(np.isfinite(forces))
    assert np.linalg.norm(forces, axis=1).mean() < 1.5  # gravity-compensated arm, hand touching nothing
