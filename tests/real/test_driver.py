"""The driver's state machine against an in-memory arm: faults latch, stops happen, no jumps."""

from __future__ import annotations

import numpy as np
import pytest
from fake_backend import CAPS, FakeArm

from puzzlebot.real.calibration import CalibrationError, RobotCalibration
from puzzlebot.real.driver import Driver, DriverError, DriverState
from puzzlebot.real.interface import Command, ControlMode, NotConnectedError
from puzzlebot.real.safety import SafetyConfig

pytestmark = pytest.mark.fault


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float = 0.04) -> float:
        self.t += dt
        return self.t


SAFETY = SafetyConfig(max_joint_step=0.05, workspace_low=(-1.0, -1.0, -1.0), workspace_high=(1.0, 1.0, 1.0))


def joint(*q: float) -> Command:
    return Command(ControlMode.JOINT, np.array(q, dtype=float))


def make(start=(0.0, 0.0, 0.0), **kwargs) -> tuple[Driver, FakeArm, Clock]:
    arm, clock = FakeArm(start), Clock()
    return Driver(arm, SAFETY, clock=clock, **kwargs), arm, clock


def test_context_manager_always_stops_and_disconnects():
    driver, arm, clock = make()
    with pytest.raises(ZeroDivisionError):
        with driver:
            driver.activate()
            clock.advance()
            driver.send(joint(0.01, 0, 0))
            raise ZeroDivisionError("the agent crashed mid-episode")
    assert arm.stops >= 1 and not arm.connected and driver.state is DriverState.DISCONNECTED


def test_commands_refused_unless_active():
    driver, arm, clock = make()
    with pytest.raises(NotConnectedError):
        driver.read_state()
    with driver:
        with pytest.raises(DriverError, match="need ACTIVE"):
            driver.send(joint(0, 0, 0))
        driver.activate()
        clock.advance()
        report = driver.send(joint(0.02, 0, 0))
        assert report.sent is not None and 0.0 < report.sent.target[0] <= 0.02
        np.testing.assert_array_equal(arm.q, report.sent.target)  # what was sent is what the arm got


def test_protective_stop_latches_until_explicit_clear_and_resyncs():
    driver, arm, clock = make()
    with driver:
        driver.activate()
        arm.protective_stop()
        driver.read_state()
        assert driver.state is DriverState.FAULT and arm.stops >= 1
        clock.advance()
        with pytest.raises(DriverError, match="protective_stop"):
            driver.send(joint(0.01, 0, 0))
        # Nothing clears it but an explicit call: time passing and more reads do not.
        for _ in range(5):
            clock.advance()
            driver.read_state()
        assert driver.state is DriverState.FAULT
        arm.q = np.array([0.5, 0.0, 0.0])  # the arm was moved by hand while stopped
        driver.clear_faults()
        assert arm.cleared == 1 and driver.state is DriverState.IDLE
        driver.activate()
        clock.advance()
        report = driver.send(joint(-1.0, 0, 0))  # far from where the arm now is
        # The first step starts from the measured 0.5 (where the arm really is), capped: no jump.
        assert 0.5 - SAFETY.max_joint_step <= report.sent.target[0] < 0.5


def test_disconnect_faults_stops_and_resyncs_without_a_jump():
    driver, arm, clock = make()
    with driver:
        driver.activate()
        clock.advance()
        driver.send(joint(0.05, 0, 0))
        arm.unplug()
        with pytest.raises(NotConnectedError):
            driver.read_state()
        assert driver.state is DriverState.FAULT
        arm.q = np.array([-0.3, 0.2, 0.0])  # it drifted while unplugged
        driver.clear_faults()  # reconnects, clears, resyncs
        assert arm.connected
        driver.activate()
        clock.advance()
        report = driver.send(joint(0.05, 0, 0))
        step = np.abs(report.sent.target - np.array([-0.3, 0.2, 0.0]))
        assert np.all(step <= SAFETY.max_joint_step + 1e-12)


def test_nan_reading_faults():
    driver, arm, clock = make()
    with driver:
        driver.activate()
        arm.nan_next = True
        driver.read_state()
        assert driver.state is DriverState.FAULT and driver.fault.kind.value == "sensor_invalid"


def test_estop_needs_explicit_clear():
    driver, arm, clock = make()
    with driver:
        driver.activate()
        driver.estop()
        assert driver.state is DriverState.ESTOPPED and arm.stops >= 1
        with pytest.raises(DriverError):
            driver.send(joint(0, 0, 0))
        driver.clear_faults()
        assert driver.state is DriverState.IDLE


def test_watchdog_holds_the_arm_on_silence():
    driver, arm, clock = make()
    with driver:
        driver.activate()
        clock.advance()
        last = driver.send(joint(0.04, 0, 0)).sent
        assert not driver.tick()
        clock.advance(SAFETY.watchdog_s + 0.05)
        assert driver.tick()
        np.testing.assert_allclose(arm.sent[-1].target, last.target)  # held where it was last sent


def test_calibration_mismatch_refuses_to_enable(tmp_path):
    good = RobotCalibration.for_backend(CAPS, address="sim://fake")
    good.save(tmp_path / "cal.yaml")
    driver, arm, _ = make(calibration=RobotCalibration.load(tmp_path / "cal.yaml"), address="sim://fake")
    with driver:
        driver.activate()
        assert driver.state is DriverState.ACTIVE
    wrong = RobotCalibration(robot="fake3", address="sim://fake", fingerprint="0" * 16)
    driver, arm, _ = make(calibration=wrong, address="sim://fake")
    with driver:
        with pytest.raises(CalibrationError, match="fingerprint"):
            driver.activate()
        assert driver.state is DriverState.IDLE and not arm.sent
    other = RobotCalibration.for_backend(CAPS, address="sim://other-arm")
    driver, _, _ = make(calibration=other, address="sim://fake")
    with driver, pytest.raises(CalibrationError, match="address"):
        driver.activate()


def test_calibration_file_errors(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        RobotCalibration.load(tmp_path / "missing.yaml")
    (tmp_path / "old.yaml").write_text("schema_version: 0\nrobot: x\n")
    with pytest.raises(CalibrationError, match="schema_version"):
        RobotCalibration.load(tmp_path / "old.yaml")
