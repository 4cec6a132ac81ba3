"""The driver layer's fault tests, run against the reality emulator and every vendor mock.

Each test goes through the real `Driver` (safety layer + state machine) on a real backend:
the emulator in its own process, or a vendor backend wired to a mock of its SDK.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from test_arms import make_rig

from puzzlebot.real.calibration import CalibrationError, RobotCalibration
from puzzlebot.real.driver import Driver, DriverError, DriverState
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig
from puzzlebot.real.interface import Command, ControlMode, FaultKind, NotConnectedError, StaleFrameError
from puzzlebot.real.safety import SafetyConfig, SafetyLayer

pytestmark = pytest.mark.fault
PUZZLE = Path(__file__).resolve().parents[2] / "puzzlebot" / "assets" / "puzzles" / "bolt_drawer.yaml"
BACKENDS = ("emulator", "ur5e", "xarm6", "so101")
STEP = 0.03  # rad: the jump cap used here


class Setup:
    """A connected, active driver on one backend, with per-backend fault injection."""

    def __init__(self, name: str, calibration: RobotCalibration | None = None, address: str = "test://arm"):
        self.name = name
        if name == "emulator":
            self.backend = EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, control_hz=100.0, cameras=("front",)))
            self.rig = None
        else:
            self.rig = make_rig(name)
            self.backend = self.rig.backend
        self.driver = Driver(self.backend, SafetyConfig(max_joint_step=STEP), calibration=calibration, address=address)
        self.driver.connect()
        # A workspace box 15 cm around wherever this arm's TCP starts.
        q = self.driver.read_state().joint_positions
        tcp = self.backend.forward_kinematics(q)
        config = SafetyConfig(max_joint_step=STEP, watchdog_s=0.2, workspace_low=tuple(tcp - 0.15),
                              workspace_high=tuple(tcp + 0.15))
        self.driver.safety = SafetyLayer(self.backend.capabilities, config, self.backend.forward_kinematics)
        self.driver.safety.resync(q, time.monotonic())
        self.start = q.copy()

    def measured(self) -> np.ndarray:
        return self.driver.read_state().joint_positions

    def inject_stop(self) -> None:
        if self.rig is None:
            self.backend.inject_fault(FaultKind.PROTECTIVE_STOP)
        else:
            self.rig.halt_injection()

    def unplug(self) -> None:
        if self.rig is None:
            self.backend.inject_fault(FaultKind.DISCONNECTED)
            time.sleep(0.4)  # the link counts as lost after its timeout
        else:
            self.rig.drop_link()

    def replug(self) -> None:
        if self.rig is not None:
            self.rig.restore_link()

    def read_until_fault(self, seconds: float = 2.0) -> None:
        deadline = time.monotonic() + seconds
        while self.driver.state is DriverState.ACTIVE and time.monotonic() < deadline:
            try:
                self.driver.read_state()
            except NotConnectedError:
                return
            time.sleep(0.01)

    def close(self) -> None:
        self.driver.close()


@pytest.fixture(params=BACKENDS)
def setup(request: pytest.FixtureRequest):
    s = Setup(request.param)
    s.driver.activate()
    yield s
    s.close()


def joint(target: np.ndarray) -> Command:
    return Command(ControlMode.JOINT, np.asarray(target, dtype=float))


def test_nan_and_inf_actions_are_rejected(setup):
    for bad in (np.nan, np.inf):
        target = setup.start.copy()
        target[0] = bad
        report = setup.driver.send(joint(target))
        assert report.rejected and report.sent is None
        assert "finite" in report.reason.lower() or "nan" in report.reason.lower()


def test_wrong_shape_is_rejected(setup):
    report = setup.driver.send(joint(np.zeros(setup.backend.capabilities.dof + 1)))
    assert report.rejected and "shape" in report.reason


def test_limit_clip_and_jump_cap(setup):
    caps = setup.backend.capabilities
    target = setup.start.copy()
    finite = np.flatnonzero(np.isfinite(caps.joint_upper) & (caps.joint_upper < 2 * np.pi - 1e-6))
    j = int(finite[0]) if len(finite) else 0
    target[j] = caps.joint_upper[j] + 1.0  # beyond the hard limit
    # A workspace box the size of a room, so only the limit and the jump cap act here.
    roomy = SafetyConfig(max_joint_step=STEP, workspace_low=(-5.0, -5.0, -5.0), workspace_high=(5.0, 5.0, 5.0))
    setup.driver.safety = SafetyLayer(caps, roomy, setup.backend.forward_kinematics)
    setup.driver.safety.resync(setup.start, time.monotonic())
    report = setup.driver.send(joint(target))
    assert not report.rejected, report.reason
    assert any("limit" in change for change in report.changes), report.changes
    assert np.all(np.abs(report.sent.target - setup.start) <= STEP + 1e-9)  # the jump cap


def test_workspace_reject(setup):
    target = setup.start.copy()
    target[1] += 1.2  # the shoulder: the TCP swings far outside a 15 cm box
    report = setup.driver.send(joint(target))
    assert report.rejected and "workspace" in report.reason


def test_watchdog_holds_on_silence(setup):
    setup.driver.send(joint(setup.start))
    time.sleep(0.3)
    assert setup.driver.tick()


def test_protective_stop_needs_explicit_clear(setup):
    setup.inject_stop()
    setup.read_until_fault()
    assert setup.driver.state is DriverState.FAULT
    with pytest.raises(DriverError):
        setup.driver.send(joint(setup.start))
    time.sleep(0.1)
    setup.read_until_fault(0.2)
    assert setup.driver.state is DriverState.FAULT  # never cleared by time passing
    setup.driver.clear_faults()
    assert setup.driver.state is DriverState.IDLE


def test_disconnect_faults_stops_and_resyncs_without_a_jump(setup):
    setup.unplug()
    setup.read_until_fault()
    assert setup.driver.state is DriverState.FAULT
    assert setup.driver.fault.kind in (FaultKind.DISCONNECTED, FaultKind.COMMS)
    setup.replug()
    setup.driver.clear_faults()  # reconnects, clears, resyncs to the measured joints
    setup.driver.activate()
    measured = setup.measured()
    far = measured.copy()
    far[-1] += 0.5  # the wrist roll: far in joint space, the TCP stays inside the box
    report = setup.driver.send(joint(far))
    assert report.sent is not None
    assert np.all(np.abs(report.sent.target - measured) <= STEP + 0.01)  # no jump from where the arm is


@pytest.mark.parametrize("name", BACKENDS)
def test_calibration_mismatch_blocks_enabling(name):
    other = Setup(name)
    caps = other.backend.capabilities
    other.close()
    wrong = RobotCalibration(robot=caps.name, address="test://arm", fingerprint="0" * 16)
    s = Setup(name, calibration=wrong)
    try:
        with pytest.raises(CalibrationError):
            s.driver.activate()
        assert s.driver.state is DriverState.IDLE
    finally:
        s.close()


def test_emulator_stale_frames_are_flagged_never_reused():
    s = Setup("emulator")
    try:
        camera = s.backend.camera("front")
        camera.connect()
        deadline = time.monotonic() + 5
        frame = None
        while frame is None and time.monotonic() < deadline:
            try:
                frame = camera.read_latest(max_age=0.5)
            except StaleFrameError:
                time.sleep(0.05)
        assert frame is not None
        with pytest.raises(StaleFrameError):
            camera.read_latest(max_age=1e-6)  # nothing is that fresh: flagged, not handed out
        states = [s.driver.read_state() for _ in range(5)]
        assert all(b.seq > a.seq and b.t > a.t for a, b in zip(states, states[1:], strict=False))
    finally:
        s.close()


def test_readings_skipped_by_a_slow_reader_are_not_counted_as_lost():
    """The emulator measures at 100 Hz; a reader that reads every 50 ms skips readings, loses none."""
    s = Setup("emulator")
    try:
        first = s.driver.read_state()
        for _ in range(4):
            time.sleep(0.05)
            newest = s.driver.read_state()
        assert newest.seq - first.seq >= 10  # readings were skipped...
        assert s.driver.dropped_states == 0  # ...and none of them was lost
    finally:
        s.close()


@pytest.mark.parametrize("name", ["emulator", "so101"])
def test_lost_and_repeated_states_are_flagged_never_passed_off_as_fresh(name):
    """Dropped packets show as seq gaps (emulator); a bus timeout repeats the last reading (SO-101)."""
    s = Setup(name)
    try:
        s.driver.read_state()
        assert s.driver.stale_states == 0 and s.driver.dropped_states == 0
        if name == "emulator":
            s.backend.inject_fault(FaultKind.COMMS, count=10)  # the next 10 packets never arrive
            time.sleep(0.2)
            s.driver.read_state()
            assert s.driver.dropped_states >= 10
        else:
            s.rig.mock.rx_timeouts = 1  # the next sync read times out: the backend repeats its last state
            s.driver.read_state()
            assert s.driver.stale_states == 1 and not s.driver.state_is_fresh
    finally:
        s.close()
