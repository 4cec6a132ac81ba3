"""Real-arm backends (UR5e, xArm 6, SO-101) against mocks of their vendor SDKs (tests/mocks/).

Each backend: capabilities before connect, streaming moves the mock, every injected vendor failure
maps to the right FaultKind and vendor code, latched faults clear only through the vendor's own
recovery, a lost link raises NotConnectedError and reports DISCONNECTED, a missing SDK names its
install extra, and forward kinematics matches hand-checked poses.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from mocks.scservo import (
    ERRBIT_OVERELE,
    ERRBIT_OVERHEAT,
    ERRBIT_OVERLOAD,
    ERRBIT_VOLTAGE,
    GOAL_POSITION,
    SENSOR,
    TORQUE_ENABLE,
    FeetechBus,
)
from mocks.ur_rtde import URController
from mocks.xarm import XArmController

from puzzlebot.real.arms import ARMS, SO101Backend, SO101Config, URBackend, URConfig, XArmBackend, XArmConfig, make_arm
from puzzlebot.real.arms.common import VendorArm, quat_wxyz, rot_z
from puzzlebot.real.arms.so101 import RAD_PER_TICK, SO101_GRIPPER_FRAME, SO101_URDF_JOINTS, so101_flange
from puzzlebot.real.calibration import CalibrationError, RobotCalibration
from puzzlebot.real.interface import Command, ControlMode, FaultKind, NotConnectedError
from puzzlebot.sim.robots.base import Mount

ORIGIN = Mount(pos=(0.0, 0.0, 0.0), yaw=0.0)
NAMES = ("ur5e", "xarm6", "so101")


# ---------------------------------------------------------------------------- rigs
@dataclass
class Rig:
    """A backend wired to its mock, plus how to poke the mock the same way for every vendor."""

    name: str
    backend: VendorArm
    mock: Any

    def true_q(self) -> np.ndarray:
        """The mock's own joint positions, rad (vendor zero)."""
        if isinstance(self.mock, FeetechBus):
            ticks = [self.mock.servos[i].position for i in (1, 2, 3, 4, 5)]
            return (np.array(ticks) - 2048) * RAD_PER_TICK
        return self.mock.q.copy()

    def drop_link(self) -> None:
        self.mock.unplug() if isinstance(self.mock, FeetechBus) else self.mock.drop_link()

    def restore_link(self) -> None:
        self.mock.replug() if isinstance(self.mock, FeetechBus) else self.mock.restore_link()

    def halt_injection(self) -> None:
        """A latching stop in each vendor's own terms: protective stop, collision error, servo overload."""
        if isinstance(self.mock, URController):
            self.mock.protective_stop()
        elif isinstance(self.mock, XArmController):
            self.mock.inject_error(31)
        else:
            self.mock.inject_error(2, ERRBIT_OVERLOAD)


def make_rig(name: str, **overrides: Any) -> Rig:
    if name == "ur5e":
        mock = URController()
        return Rig(name, URBackend(URConfig(ip="10.0.0.2", mount=ORIGIN, **overrides), mock.sdk), mock)
    if name == "xarm6":
        mock = XArmController()
        return Rig(name, XArmBackend(XArmConfig(ip="10.0.0.3", mount=ORIGIN, **overrides), mock.sdk), mock)
    mock = FeetechBus()
    return Rig(name, SO101Backend(SO101Config(port="/dev/ttyACM0", mount=ORIGIN, **overrides), mock.sdk), mock)


@pytest.fixture(params=NAMES)
def rig(request: pytest.FixtureRequest) -> Rig:
    return make_rig(request.param)


def drive(rig: Rig, target: np.ndarray, steps: int = 80, grip: float = 0.0):
    state = None
    for _ in range(steps):
        rig.backend.send(Command(ControlMode.JOINT, np.asarray(target, dtype=float), grip=grip))
        state = rig.backend.read_state()
    return state


def kinds(faults) -> dict[FaultKind, list]:
    out: dict[FaultKind, list] = {}
    for fault in faults:
        out.setdefault(fault.kind, []).append(fault.vendor_code)
    return out


# ---------------------------------------------------------------------------- contract
def test_capabilities_known_before_connect(rig: Rig) -> None:
    caps = rig.backend.capabilities
    assert caps.dof == len(caps.joint_names) == (5 if rig.name == "so101" else 6)
    for array in (caps.joint_lower, caps.joint_upper, caps.max_joint_velocity, caps.max_joint_acceleration):
        assert array.shape == (caps.dof,) and np.all(np.isfinite(array))
    assert np.all(caps.joint_lower < caps.joint_upper)
    assert np.all(caps.max_joint_velocity > 0) and np.all(caps.max_joint_acceleration > 0)
    assert caps.control_modes == (ControlMode.JOINT,) and caps.control_hz > 0
    assert not rig.backend.is_connected
    assert rig.mock.calls == []  # nothing touched the vendor SDK yet
    with pytest.raises(NotConnectedError):
        rig.backend.read_state()
    with pytest.raises(NotConnectedError):
        rig.backend.send(Command(ControlMode.JOINT, np.zeros(caps.dof)))
    rig.backend.stop()  # a no-op, never an error
    assert rig.backend.faults() == ()


def test_connect_read_send_moves_the_mock(rig: Rig) -> None:
    backend = rig.backend
    backend.connect()
    assert backend.is_connected
    first = backend.read_state()
    np.testing.assert_allclose(first.joint_positions, rig.true_q(), atol=1e-9)
    target = first.joint_positions.copy()
    target[0] += 0.2
    target[1] -= 0.1
    state = drive(rig, target)
    np.testing.assert_allclose(rig.true_q(), target, atol=RAD_PER_TICK)
    np.testing.assert_allclose(state.joint_positions, target, atol=RAD_PER_TICK)
    assert state.seq > first.seq and state.t >= first.t
    np.testing.assert_allclose(state.tcp_position, backend.forward_kinematics(state.joint_positions))
    assert np.isclose(np.linalg.norm(state.tcp_quaternion), 1.0)
    assert state.faults == ()
    backend.disconnect()
    assert not backend.is_connected


def test_seq_strictly_increasing_and_monotonic_time(rig: Rig) -> None:
    rig.backend.connect()
    states = [rig.backend.read_state() for _ in range(5)]
    assert [s.seq for s in states] == sorted({s.seq for s in states})
    assert all(b.t >= a.t for a, b in zip(states, states[1:], strict=False))


def test_wrong_commands_are_refused(rig: Rig) -> None:
    rig.backend.connect()
    with pytest.raises(ValueError, match="shape"):
        rig.backend.send(Command(ControlMode.JOINT, np.zeros(3)))
    with pytest.raises(ValueError, match="only 'joint'"):
        rig.backend.send(Command(ControlMode.EE, np.zeros(7)))


def test_registry_builds_every_arm() -> None:
    assert set(ARMS) == set(NAMES)
    assert isinstance(make_arm("ur5e", URConfig(ip="1.2.3.4")), URBackend)
    so101 = make_arm("so101", address="/dev/ttyUSB3", control_hz=50.0)  # what puzzlebot-deploy passes
    assert so101.address == "/dev/ttyUSB3" and so101.capabilities.control_hz == 50.0
    assert make_arm("xarm6", address="10.0.0.9").address == "10.0.0.9"
    with pytest.raises(TypeError):
        make_arm("so101", URConfig(ip="1.2.3.4"))
    with pytest.raises(ValueError, match="required"):
        URBackend(URConfig())


@pytest.mark.parametrize("name, module, extra", [("ur5e", "rtde_control", "ur"), ("xarm6", "xarm.wrapper", "xarm"),
                                                 ("so101", "scservo_sdk", "so101")])
def test_missing_sdk_names_the_extra(name: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import of `module` fails as if not installed
    config_cls, backend_cls = ARMS[name]
    address = {"ur5e": {"ip": "1.2.3.4"}, "xarm6": {"ip": "1.2.3.4"}, "so101": {"port": "/dev/null"}}[name]
    backend = backend_cls(config_cls(**address))  # constructing never imports the SDK
    with pytest.raises(ImportError, match=rf"pip install 'puzzlebot\[{extra}\]'"):
        backend.connect()


# ---------------------------------------------------------------------------- vendor specifics
def test_ur_streams_servoj_with_configured_gains() -> None:
    rig = make_rig("ur5e", servo_gain=500.0, servo_lookahead_time=0.05, control_hz=250.0)
    rig.backend.connect()
    rig.backend.send(Command(ControlMode.JOINT, rig.true_q()))
    name, q, speed, acc, dt, lookahead, gain = next(c for c in rig.mock.calls if c[0] == "servoJ")
    assert (dt, lookahead, gain) == (1 / 250.0, 0.05, 500.0) and len(q) == 6
    rig.backend.stop()
    assert rig.mock.called("servoStop") == 1
    rig.backend.stop()  # not servoing any more: stopJ
    assert rig.mock.called("stopJ") == 1


def test_xarm_servo_mode_radians_and_rearm_after_stop() -> None:
    rig = make_rig("xarm6")
    rig.backend.connect()
    assert ("set_mode", 1) in rig.mock.calls and ("set_state", 0) in rig.mock.calls
    rig.backend.send(Command(ControlMode.JOINT, rig.true_q(), grip=1.0))
    call = next(c for c in rig.mock.calls if c[0] == "set_servo_angle_j")
    assert call[2] is True  # is_radian
    assert rig.mock.gripper_pulse == 0.0  # grip 1 = closed = pulse 0
    rig.backend.stop()
    assert rig.mock.calls[-1] == ("set_state", 4) and rig.mock.state == 4
    start = len(rig.mock.calls)
    target = rig.true_q() + 0.05
    state = drive(rig, target, steps=20, grip=1.0)
    assert [c[0] for c in rig.mock.calls[start:start + 3]] == ["set_mode", "set_state", "set_servo_angle_j"]
    np.testing.assert_allclose(state.joint_positions, target, atol=1e-9)
    assert state.grip == 1.0


def test_so101_ticks_conversion_and_gripper() -> None:
    rig = make_rig("so101")
    backend = rig.backend
    backend.connect()
    q = np.array([0.3, -0.2, 0.1, 0.0, -1.0])
    backend.send(Command(ControlMode.JOINT, q, grip=1.0))
    writes = [c for c in rig.mock.calls if c[0] == "GroupSyncWrite.txPacket"][-1]
    assert writes[1] == GOAL_POSITION
    expected = 2048 + np.rint(q / (2 * math.pi) * 4096).astype(int)
    for sid, ticks in zip((1, 2, 3, 4, 5), expected, strict=True):
        lo, hi = writes[2][sid]
        assert lo | (hi << 8) == ticks
    assert writes[2][6] == [2048 & 0xFF, 2048 >> 8]  # grip 1 = closed = 0 rad
    np.testing.assert_allclose(backend.to_angles(backend.to_ticks(np.append(q, 0.5))), np.append(q, 0.5),
                               atol=RAD_PER_TICK)
    with pytest.raises(ValueError, match="outside one encoder turn"):
        backend.to_ticks(np.array([4.0, 0, 0, 0, 0, 0]))
    # connect configured the gains with torque off and EEPROM unlocked, then torque on
    assert rig.mock.called("write1ByteTxRx", 3, 21, 16) == 1 and rig.mock.called("write1ByteTxRx", 3, 22, 32) == 1
    assert all(rig.mock.servos[i].torque for i in range(1, 7))
    state = drive(rig, q, steps=30, grip=0.0)
    np.testing.assert_allclose(state.joint_positions, q, atol=RAD_PER_TICK)
    assert state.grip == pytest.approx(0.0, abs=1e-3)
    assert np.all(np.abs(state.joint_velocities) < 1e-9)  # settled


# ---------------------------------------------------------------------------- fault mapping
FAULT_CASES: list[tuple[str, str, Callable[[Any], None], FaultKind, object]] = [
    ("ur5e", "protective stop", lambda m: m.protective_stop(), FaultKind.PROTECTIVE_STOP, 3),
    ("ur5e", "safeguard stop", lambda m: m.safeguard_stop(), FaultKind.PROTECTIVE_STOP, 5),
    ("ur5e", "robot e-stop", lambda m: m.press_estop(), FaultKind.EMERGENCY_STOP, 7),
    ("ur5e", "system e-stop", lambda m: m.enter_safety_mode(6), FaultKind.EMERGENCY_STOP, 6),
    ("ur5e", "recovery mode", lambda m: m.enter_safety_mode(4), FaultKind.JOINT_LIMIT, 4),
    ("ur5e", "violation", lambda m: m.enter_safety_mode(8), FaultKind.VENDOR, 8),
    ("ur5e", "safety fault", lambda m: m.enter_safety_mode(9), FaultKind.VENDOR, 9),
    ("xarm6", "e-stop button", lambda m: m.press_estop(), FaultKind.EMERGENCY_STOP, 1),
    ("xarm6", "e-stop IO", lambda m: m.inject_error(2), FaultKind.EMERGENCY_STOP, 2),
    ("xarm6", "self-collision", lambda m: m.inject_error(22), FaultKind.PROTECTIVE_STOP, 22),
    ("xarm6", "collision current", lambda m: m.inject_error(31), FaultKind.PROTECTIVE_STOP, 31),
    ("xarm6", "safety boundary", lambda m: m.inject_error(35), FaultKind.PROTECTIVE_STOP, 35),
    ("xarm6", "joint angle limit", lambda m: m.inject_error(23), FaultKind.JOINT_LIMIT, 23),
    ("xarm6", "speed limit", lambda m: m.inject_error(24), FaultKind.JOINT_LIMIT, 24),
    ("xarm6", "servo 3 error", lambda m: m.inject_error(13), FaultKind.VENDOR, 13),
    ("xarm6", "unknown error", lambda m: m.inject_error(99), FaultKind.VENDOR, 99),
    ("so101", "overload", lambda m: m.inject_error(3, ERRBIT_OVERLOAD), FaultKind.VENDOR, 0x20),
    ("so101", "overheat", lambda m: m.inject_error(1, ERRBIT_OVERHEAT), FaultKind.VENDOR, 0x04),
    ("so101", "overcurrent", lambda m: m.inject_error(2, ERRBIT_OVERELE), FaultKind.VENDOR, 0x08),
    ("so101", "voltage", lambda m: m.inject_error(5, ERRBIT_VOLTAGE), FaultKind.VENDOR, 0x01),
    ("so101", "encoder", lambda m: m.inject_error(4, SENSOR), FaultKind.SENSOR_INVALID, 0x02),
    ("so101", "angle limit", lambda m: m.inject_error(6, 0x10), FaultKind.JOINT_LIMIT, 0x10),
]


@pytest.mark.fault
@pytest.mark.parametrize("name, what, inject, kind, code", FAULT_CASES, ids=[f"{c[0]}-{c[1]}" for c in FAULT_CASES])
def test_vendor_failure_maps_to_fault_kind(name: str, what: str, inject: Callable[[Any], None], kind: FaultKind,
                                           code: object) -> None:
    rig = make_rig(name)
    rig.backend.connect()
    assert rig.backend.faults() == ()
    inject(rig.mock)
    state = rig.backend.read_state()
    assert code in kinds(state.faults).get(kind, []), state.faults
    assert code in kinds(rig.backend.faults()).get(kind, [])


@pytest.mark.fault
def test_so101_rx_timeout_is_comms_then_disconnected() -> None:
    rig = make_rig("so101")
    backend = rig.backend
    backend.connect()
    good = backend.read_state()
    rig.mock.rx_timeouts = 1
    glitch = backend.read_state()
    assert (glitch.seq, glitch.t) == (good.seq, good.t)  # the previous measurement, visibly old
    assert kinds(glitch.faults) == {FaultKind.COMMS: [-6]}  # COMM_RX_TIMEOUT
    fresh = backend.read_state()
    assert fresh.seq == good.seq + 1 and fresh.faults == ()
    rig.mock.rx_timeouts = 100
    backend.read_state()
    backend.read_state()
    with pytest.raises(NotConnectedError):
        backend.read_state()  # the third failed read in a row (max_comm_failures = 3)
    assert not backend.is_connected
    assert kinds(backend.faults()) == {FaultKind.DISCONNECTED: [-6]}


@pytest.mark.fault
def test_xarm_cache_full_warning_is_comms_and_rejected_commands_are_reported() -> None:
    rig = make_rig("xarm6")
    rig.backend.connect()
    rig.mock.warn_code = 11
    assert kinds(rig.backend.read_state().faults) == {FaultKind.COMMS: ["warn 11"]}
    rig.mock.warn_code = 0
    assert rig.backend.read_state().faults == ()
    rig.backend.send(Command(ControlMode.JOINT, np.full(6, 9.0)))  # past the SDK's joint range check
    assert kinds(rig.backend.faults()) == {FaultKind.COMMS: ["api -8"]}


@pytest.mark.fault
def test_ur_refused_servoj_is_reported_not_raised() -> None:
    rig = make_rig("ur5e")
    rig.backend.connect()
    rig.mock.protective_stop()
    rig.backend.send(Command(ControlMode.JOINT, rig.true_q() + 0.1))
    found = kinds(rig.backend.faults())
    assert found[FaultKind.COMMS] == ["servoJ=False"] and found[FaultKind.PROTECTIVE_STOP] == [3]


# ---------------------------------------------------------------------------- recovery
RECOVERY_CALLS = {
    "ur5e": [("unlockProtectiveStop",), ("closeSafetyPopup",), ("reuploadScript",)],
    "xarm6": [("clean_error",), ("clean_warn",), ("motion_enable", True), ("set_mode", 1), ("set_state", 0)],
    "so101": [("write1ByteTxRx", sid, TORQUE_ENABLE, 1) for sid in range(1, 7)],
}


@pytest.mark.fault
def test_clear_faults_runs_the_vendor_recovery_and_only_then_clears(rig: Rig) -> None:
    backend = rig.backend
    backend.connect()
    start = backend.read_state().joint_positions
    rig.halt_injection()
    target = start.copy()
    target[1] += 0.2
    for _ in range(5):  # the arm does not follow while faulted, and the fault stays reported
        latched = drive(rig, target, steps=5)
        assert any(f.kind in (FaultKind.PROTECTIVE_STOP, FaultKind.VENDOR) for f in latched.faults)
    assert abs(rig.true_q()[1] - start[1]) < 1e-6
    before = len(rig.mock.calls)
    backend.clear_faults()
    made = rig.mock.calls[before:]
    for call in RECOVERY_CALLS[rig.name]:
        assert call in made, (call, made)
    assert backend.faults() == ()
    state = drive(rig, target)
    np.testing.assert_allclose(state.joint_positions, target, atol=RAD_PER_TICK)
    assert state.faults == ()


@pytest.mark.fault
def test_ur_fault_that_resets_itself_still_needs_clear() -> None:
    rig = make_rig("ur5e")
    rig.backend.connect()
    rig.mock.safeguard_stop()
    rig.backend.read_state()
    rig.mock.safeguard_reset()  # the controller is NORMAL again (script still stopped)
    assert FaultKind.PROTECTIVE_STOP in kinds(rig.backend.read_state().faults)
    assert FaultKind.PROTECTIVE_STOP in kinds(rig.backend.faults())
    rig.backend.clear_faults()
    assert rig.backend.faults() == () and rig.mock.called("reuploadScript") == 1


@pytest.mark.fault
def test_ur_unlock_refused_too_soon_keeps_the_fault() -> None:
    rig = make_rig("ur5e")
    rig.backend.connect()
    rig.mock.protective_stop()
    rig.mock.unlock_refusals = 1
    with pytest.raises(RuntimeError, match="until 5s after"):
        rig.backend.clear_faults()
    assert FaultKind.PROTECTIVE_STOP in kinds(rig.backend.faults())
    rig.backend.clear_faults()  # five seconds later
    assert rig.backend.faults() == ()


@pytest.mark.fault
def test_ur_violation_restarts_safety_then_powers_on() -> None:
    rig = make_rig("ur5e")
    rig.backend.connect()
    rig.mock.enter_safety_mode(8)
    rig.backend.clear_faults()
    assert [rig.mock.called(m) for m in ("restartSafety", "powerOn", "brakeRelease", "reuploadScript")] == [1, 1, 1, 1]
    assert rig.backend.faults() == ()


@pytest.mark.fault
@pytest.mark.parametrize("name", ["ur5e", "xarm6"])
def test_estop_stays_until_released_then_cleared(name: str) -> None:
    rig = make_rig(name)
    rig.backend.connect()
    rig.mock.press_estop()
    rig.backend.read_state()
    rig.backend.clear_faults()  # button still pressed: the vendor keeps reporting it
    assert FaultKind.EMERGENCY_STOP in kinds(rig.backend.faults())
    rig.mock.release_estop()
    assert FaultKind.EMERGENCY_STOP in kinds(rig.backend.faults())  # latched until cleared
    rig.backend.clear_faults()
    assert rig.backend.faults() == ()
    if name == "ur5e":  # released e-stop leaves the arm off: power on, brakes, script
        assert rig.mock.called("powerOn") == 1 and rig.mock.called("brakeRelease") == 1
    target = rig.true_q() + 0.1
    np.testing.assert_allclose(drive(rig, target).joint_positions, target, atol=1e-9)


@pytest.mark.fault
def test_so101_persistent_error_survives_clear_and_torque_returns_without_jump() -> None:
    rig = make_rig("so101")
    backend = rig.backend
    backend.connect()
    rig.mock.inject_error(5, ERRBIT_VOLTAGE, persistent=True)
    backend.clear_faults()
    assert kinds(backend.faults()) == {FaultKind.VENDOR: [0x01]}
    rig.mock.servos[5].persistent = 0
    backend.clear_faults()
    assert backend.faults() == ()
    # overload: torque drops, the limp joint sags; re-enabling must hold the sagged position
    rig.mock.inject_error(3, ERRBIT_OVERLOAD)
    assert not rig.mock.servos[3].torque
    rig.mock.servos[3].set_position(1900)
    backend.clear_faults()
    assert rig.mock.servos[3].torque and rig.mock.servos[3].goal == 1900
    backend.read_state()
    assert rig.mock.servos[3].position == 1900


# ---------------------------------------------------------------------------- link loss
@pytest.mark.fault
def test_lost_link_raises_not_connected_and_reports_disconnected(rig: Rig) -> None:
    backend = rig.backend
    backend.connect()
    backend.read_state()
    rig.drop_link()
    with pytest.raises(NotConnectedError):
        backend.read_state()
    assert not backend.is_connected
    assert FaultKind.DISCONNECTED in kinds(backend.faults())
    with pytest.raises(NotConnectedError):
        backend.send(Command(ControlMode.JOINT, rig.true_q()))
    backend.stop()  # never raises
    with pytest.raises(NotConnectedError):
        backend.clear_faults()
    rig.restore_link()
    backend.connect()
    state = backend.read_state()
    np.testing.assert_allclose(state.joint_positions, rig.true_q(), atol=1e-9)
    assert FaultKind.DISCONNECTED in kinds(backend.faults())  # latched until cleared explicitly
    backend.clear_faults()
    assert backend.faults() == ()
    backend.disconnect()
    assert backend.faults() == ()  # a deliberate disconnect is not a fault
    with pytest.raises(NotConnectedError):
        backend.read_state()


@pytest.mark.fault
def test_link_lost_during_send_is_detected(rig: Rig) -> None:
    rig.backend.connect()
    rig.drop_link()
    with pytest.raises(NotConnectedError):
        rig.backend.send(Command(ControlMode.JOINT, rig.true_q()))
    assert FaultKind.DISCONNECTED in kinds(rig.backend.faults())


# ---------------------------------------------------------------------------- calibration
def test_calibration_offsets_and_tcp(rig: Rig, tmp_path) -> None:
    caps, address = rig.backend.capabilities, rig.backend.address
    offsets = tuple(0.01 * (i + 1) for i in range(caps.dof))
    path = tmp_path / "cal.yaml"
    RobotCalibration.for_backend(caps, address, joint_offsets=offsets, tcp_offset=(0.0, 0.0, 0.1)).save(path)
    calibrated = make_rig(rig.name, calibration_path=str(path))
    backend = calibrated.backend
    backend.connect()
    state = backend.read_state()
    np.testing.assert_allclose(state.joint_positions, calibrated.true_q() + offsets, atol=1e-9)
    target = state.joint_positions + 0.05
    drive(calibrated, target)
    np.testing.assert_allclose(calibrated.true_q(), target - offsets, atol=RAD_PER_TICK)
    flange = rig.backend.tcp_pose_matrix(target)  # the uncalibrated twin: flange TCP
    np.testing.assert_allclose(backend.forward_kinematics(target), flange[:3, 3] + 0.1 * flange[:3, 2])


@pytest.mark.fault
def test_calibration_mismatch_refuses_before_enabling(rig: Rig, tmp_path) -> None:
    path = tmp_path / "other.yaml"
    other = replace(rig.backend.capabilities, name="some-other-arm")
    RobotCalibration.for_backend(other, rig.backend.address).save(path)
    backend = make_rig(rig.name, calibration_path=str(path)).backend
    with pytest.raises(CalibrationError, match="some-other-arm"):
        backend.connect()
    assert not backend.is_connected


# ---------------------------------------------------------------------------- kinematics
def test_ur5e_fk_hand_checked_poses() -> None:
    backend = make_rig("ur5e").backend
    # zero pose: arm stretched along -x: x = a2 + a3, y = -(d4 + d6), z = d1 - d5 (UR's DH table)
    np.testing.assert_allclose(backend.forward_kinematics(np.zeros(6)), [-0.8172, -0.2329, 0.0628], atol=1e-9)
    # upright: shoulder and wrist 1 at -90 deg: z = d1 + |a2| + |a3| + d5
    upright = np.array([0.0, -math.pi / 2, 0.0, -math.pi / 2, 0.0, 0.0])
    np.testing.assert_allclose(backend.forward_kinematics(upright), [0.0, -0.2329, 1.0794], atol=1e-9)
    # the base joint turns everything about z
    turned = backend.forward_kinematics(np.array([math.pi / 2, 0, 0, 0, 0, 0]))
    np.testing.assert_allclose(turned, [0.2329, -0.8172, 0.0628], atol=1e-9)


def test_xarm6_fk_matches_the_documented_home_pose() -> None:
    backend = make_rig("xarm6").backend
    # UFACTORY: at all-zero joints the TCP (no tool offset) is at [207, 0, 112] mm, rpy [180, 0, 0] deg
    pose = backend.tcp_pose_matrix(np.zeros(6))
    np.testing.assert_allclose(pose[:3, 3], [0.207, 0.0, 0.112], atol=1e-9)
    np.testing.assert_allclose(np.abs(quat_wxyz(pose[:3, :3])), [0.0, 1.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(backend.forward_kinematics(np.array([math.pi / 2, 0, 0, 0, 0, 0])),
                               [0.0, 0.207, 0.112], atol=1e-9)


def test_so101_fk_matches_an_independent_urdf_chain() -> None:
    from scipy.spatial.transform import Rotation

    def origin(xyz, rpy):
        out = np.eye(4)
        out[:3, :3] = Rotation.from_euler("xyz", rpy).as_matrix()  # URDF rpy: fixed axes x, y, z
        out[:3, 3] = xyz
        return out

    def reference(q):
        pose = np.eye(4)
        for (xyz, rpy), angle in zip(SO101_URDF_JOINTS, q, strict=True):
            spin = np.eye(4)
            spin[:3, :3] = Rotation.from_rotvec([0.0, 0.0, angle]).as_matrix()
            pose = pose @ origin(xyz, rpy) @ spin
        return pose @ origin(*SO101_GRIPPER_FRAME)

    rng = np.random.default_rng(0)
    backend = make_rig("so101").backend
    caps = backend.capabilities
    for q in [np.zeros(5), *rng.uniform(caps.joint_lower, caps.joint_upper, size=(5, 5))]:
        np.testing.assert_allclose(so101_flange(q), reference(q), atol=1e-12)
    # shoulder_pan turns the arm about a vertical axis through its joint origin: height and radius
    # stay (to 1e-5 m: the URDF's rpy is rounded to 3.14159, tilting that axis by 3e-6 rad)
    axis = np.array(SO101_URDF_JOINTS[0][0][:2])
    home = backend.forward_kinematics(np.zeros(5))
    panned = backend.forward_kinematics(np.array([0.7, 0, 0, 0, 0]))
    assert panned[2] == pytest.approx(home[2], abs=1e-5)
    assert np.linalg.norm(panned[:2] - axis) == pytest.approx(np.linalg.norm(home[:2] - axis), abs=1e-5)
    # the reach is bounded by the sum of the link offsets
    reach = sum(np.linalg.norm(xyz) for xyz, _ in SO101_URDF_JOINTS) + np.linalg.norm(SO101_GRIPPER_FRAME[0])
    assert np.linalg.norm(home) < reach


def test_mount_places_the_base_in_the_world() -> None:
    local = make_rig("xarm6").backend.forward_kinematics(np.zeros(6))
    mount = Mount(pos=(-0.55, 0.1, 0.02), yaw=math.pi / 2)
    world = XArmBackend(XArmConfig(ip="1.2.3.4", mount=mount)).forward_kinematics(np.zeros(6))
    np.testing.assert_allclose(world, rot_z(math.pi / 2)[:3, :3] @ local + mount.pos, atol=1e-12)


# ---------------------------------------------------------------------------- behind the driver
@pytest.mark.fault
def test_driver_latches_vendor_faults_and_recovers_through_the_backend(rig: Rig) -> None:
    from puzzlebot.real.driver import Driver, DriverState
    from puzzlebot.real.safety import SafetyConfig

    safety = SafetyConfig(workspace_low=(-2.0, -2.0, -2.0), workspace_high=(2.0, 2.0, 2.0))
    with Driver(rig.backend, safety=safety) as driver:
        driver.activate()
        driver.send(Command(ControlMode.JOINT, driver.read_state().joint_positions))
        rig.halt_injection()
        driver.read_state()
        assert driver.state is DriverState.FAULT
        driver.clear_faults()
        assert driver.state is DriverState.IDLE
        rig.drop_link()
        with pytest.raises(NotConnectedError):
            driver.read_state()
        assert driver.state is DriverState.FAULT and driver.fault.kind is FaultKind.DISCONNECTED
        rig.restore_link()
        driver.clear_faults()  # reconnects, clears, resyncs
        assert driver.state is DriverState.IDLE and rig.backend.is_connected
    assert not rig.backend.is_connected
