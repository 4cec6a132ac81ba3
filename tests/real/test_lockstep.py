"""The emulator in lockstep: one control period per command, simulation time, repeatable episodes.

Nothing here waits on the wall clock except where a test shows that it does not matter (the
agent "thinking") or where link loss needs it. Numbers measured here are printed (`pytest -s`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from puzzlebot.real import emulator_process
from puzzlebot.real.driver import Driver, DriverState
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig, GapConfig
from puzzlebot.real.interface import (
    Command,
    ControlMode,
    Fault,
    FaultKind,
    NotConnectedError,
    RobotState,
    StaleFrameError,
)
from puzzlebot.real.safety import SafetyConfig

PUZZLE = str(Path(__file__).parents[2] / "puzzlebot" / "assets" / "puzzles" / "bolt_drawer.yaml")
PERIOD = 0.01  # s: one control period at the default 100 Hz
LATENCY = 0.05  # s: five periods, no jitter, so the onset is exact in simulation time
QUIET = GapConfig(latency_mean=LATENCY, latency_jitter=0.0, wrench_force_noise=0.0, wrench_torque_noise=0.0)


def _lockstep(**kwargs: object) -> EmulatorBackend:
    config = {"puzzle": PUZZLE, "robot": "gripper", "seed": 0, "cameras": (), **kwargs}
    return EmulatorBackend(EmulatorConfig(realtime=False, lockstep=True, **config))


def _ee(state: RobotState, offset: tuple[float, float, float] = (0.0, 0.0, 0.0), grip: float = 0.0) -> Command:
    return Command(ControlMode.EE, np.concatenate([state.tcp_position + offset, state.tcp_quaternion]), grip=grip)


@pytest.fixture(scope="module")
def gripper() -> Iterator[EmulatorBackend]:
    """A floating gripper in lockstep, no cameras, a latency of exactly five periods."""
    with _lockstep(gap=QUIET) as backend:
        yield backend


def test_lockstep_needs_unpaced_physics() -> None:
    with pytest.raises(ValueError, match="EmulatorConfig.lockstep"):
        EmulatorConfig(puzzle=PUZZLE, lockstep=True)  # realtime defaults to True
    assert EmulatorConfig(puzzle=PUZZLE, realtime=False, lockstep=True).lockstep
    assert not EmulatorConfig(puzzle=PUZZLE).lockstep
    with pytest.raises(NotConnectedError, match="clock starts"):
        _lockstep().clock()


def test_one_command_one_state_one_period(gripper: EmulatorBackend) -> None:
    state = gripper.read_state()
    assert gripper.clock() == state.t
    for _ in range(20):
        gripper.send(_ee(state))
        new = gripper.read_state()
        assert new.seq == state.seq + 1
        assert new.t - state.t == pytest.approx(PERIOD, abs=1e-9)
        assert gripper.clock() == new.t
        assert gripper.read_new_states() == []  # nothing more: the world waits for the next command
        state = new
    # The agent thinks for longer than link_timeout: silence is normal, time stands still.
    time.sleep(2 * gripper.config.link_timeout)
    assert gripper.is_connected and gripper.faults() == ()
    assert gripper.read_new_states() == [] and gripper.clock() == state.t
    # Commands sent back to back each grant one period, applied in order.
    for _ in range(4):
        gripper.send(_ee(state))
    burst = []
    while len(burst) < 4:
        burst += gripper.read_new_states(block=True)
    assert [s.seq for s in burst] == [state.seq + i for i in range(1, 5)]
    np.testing.assert_allclose(np.diff([state.t] + [s.t for s in burst]), PERIOD, atol=1e-9)
    # A read with no command in flight still returns: waiting is time passing (one period, holding).
    assert gripper.read_state().t == pytest.approx(burst[-1].t + PERIOD, abs=1e-9)


def test_latency_counts_in_simulation_time(gripper: EmulatorBackend) -> None:
    start = gripper.read_state()
    t_sent, moved_at = start.t, None
    state = start
    for _ in range(15):
        gripper.send(_ee(start, (0.02, 0.0, 0.0)))  # the same goal every period
        state = gripper.read_state()
        if moved_at is None and np.linalg.norm(state.tcp_position - start.tcp_position) > 1e-4:
            moved_at = state.t
    assert moved_at is not None, "the gripper never moved"
    print(f"\nlockstep: first moving state {1e3 * (moved_at - t_sent):.1f} ms (sim) after sending, "
          f"latency {1e3 * LATENCY:.0f} ms")
    # Applied at LATENCY after its period began; the state at the end of the following period moves.
    assert LATENCY < moved_at - t_sent <= LATENCY + 2 * PERIOD + 1e-9
    for _ in range(50):  # back to where it was, for the tests after this one
        gripper.send(_ee(start))
        gripper.read_state()


def _episode(robot: str, burst: int) -> tuple[list, list]:
    """A fixed command sequence (a wiggle; the gripper also closes) with a camera; `burst` commands per read."""
    states, frames = [], []
    with _lockstep(robot=robot, seed=11, cameras=("front",), gap=GapConfig(camera_hz=25.0)) as backend:
        camera = backend.camera("front")
        camera.connect()
        start = backend.read_state()
        for i in range(0, 60, burst):
            for j in range(i, i + burst):
                if robot == "jaco":  # joint targets, through the drawn backlash
                    wiggle = 0.1 * np.sin(0.2 * j) * np.array([1.0, 0.0, 0.0, 0.0, 0.0, -1.0])
                    backend.send(Command(ControlMode.JOINT, start.joint_positions + wiggle))
                else:
                    backend.send(_ee(start, (0.0, 0.03 * np.sin(0.2 * j), -0.01 * (j > 30)), grip=float(j > 40)))
            new: list[RobotState] = []
            while len(new) < burst:
                new += backend.read_new_states(block=True)
            states += new
            try:
                frame = camera.read_latest(max_age=1.0)
            except StaleFrameError as err:  # a re-sent old frame (GapConfig.stale_frame_prob): the same ones
                frames.append((str(err), 0.0, None))
            else:
                frames.append((frame.seq, round(frame.t - start.t, 9), frame.image))
    # Timestamps are t0 (the wall clock at start) + simulation time: compared to the nanosecond.
    return [(s.seq, round(s.t - start.t, 9), s.joint_positions, s.tcp_position, s.tcp_quaternion, s.grip, s.wrench)
            for s in states], frames


def _assert_identical(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            assert np.array_equal(u, v), (u, v)


@pytest.mark.parametrize("robot", ["gripper", "jaco"])
def test_same_seed_and_commands_give_bit_identical_episodes(robot: str) -> None:
    states, frames = _episode(robot, burst=1)
    again_states, again_frames = _episode(robot, burst=1)
    _assert_identical(states, again_states)
    _assert_identical(frames, again_frames)
    # How commands meet the child's steps on the wall clock does not matter either.
    burst_states, _ = _episode(robot, burst=4)
    _assert_identical(states, burst_states)
    assert len({f[0] for f in frames if f[2] is not None}) > 5  # the camera did deliver new frames
    assert np.ptp([s[3][1] for s in states]) > 0.01  # and the hand did move
    assert np.ptp([np.linalg.norm(s[6]) for s in states]) > 0.0  # the wrench is measured (noise at least)


def test_camera_frames_follow_simulation_time() -> None:
    gap = GapConfig(camera_hz=20.0, frame_drop_prob=0.0, stale_frame_prob=0.0)  # a frame every 5 periods
    with _lockstep(cameras=("front",), gap=gap) as backend:
        camera = backend.camera("front")
        camera.connect()
        start = backend.read_state()
        first = camera.read_latest(max_age=0.0)
        assert first.seq == 1 and first.t == start.t
        for period in range(1, 41):
            backend.send(_ee(start))
            backend.read_state()
            frame = camera.read_latest(max_age=0.05)  # never older than one camera period, in sim time
            assert frame.seq == 1 + period // 5
            assert frame.t - start.t == pytest.approx(0.05 * (frame.seq - 1), abs=1e-9)
        time.sleep(0.3)  # wall time does not age a frame
        assert camera.read_latest(max_age=0.05).seq == 9
    stale = GapConfig(frame_drop_prob=0.0, stale_frame_prob=1.0)  # only ever re-sends its first frame
    with _lockstep(cameras=("front",), gap=stale) as backend:
        camera = backend.camera("front")
        camera.connect()
        for _ in range(12):
            backend.send(_ee(backend.read_state()))
        backend.read_state()
        with pytest.raises(StaleFrameError, match="old"):
            camera.read_latest(max_age=0.1)  # 0.12 s old in simulation time


class FaultLog:
    """A recorder that keeps only faults and watchdog holds."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.holds = 0

    def log_state(self, state: RobotState) -> None: ...

    def log_command(self, raw: Command, report: object) -> None: ...

    def log_sent(self, command: Command, origin: str) -> None:
        self.holds += origin == "watchdog"

    def log_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def log_event(self, text: str, **data: object) -> None: ...


def test_driver_loop_runs_in_simulation_time() -> None:
    backend, log = _lockstep(), FaultLog()
    with Driver(backend, SafetyConfig(), recorder=log, clock=backend.clock) as driver:
        driver.activate()
        start = driver.read_state()
        wall = time.perf_counter()
        for i in range(300):  # 3 s of simulation time
            driver.send(_ee(start, (0.0, 0.02 * np.sin(0.02 * i), 0.0)))
            assert not driver.tick()
            state = driver.read_state()
            assert driver.state_is_fresh
            if i == 150:
                time.sleep(0.4)  # the agent thinks longer than the watchdog and the link timeout
        wall = time.perf_counter() - wall - 0.4
        print(f"\nlockstep driver loop: {state.t - start.t:.2f} s simulated in {wall:.2f} s wall "
              f"({(state.t - start.t) / wall:.1f}x real time)")
        assert state.t - start.t == pytest.approx(3.0, abs=1e-6)
        assert driver.state is DriverState.ACTIVE
        assert (driver.stale_states, driver.dropped_states, log.faults, log.holds) == (0, 0, [], 0)
        # The watchdog counts simulation time too: reading without commanding lets it expire.
        held = []
        for _ in range(40):
            driver.read_state()
            held.append(driver.tick())
        assert not any(held[:20]) and any(held)
        assert log.holds > 0 and {f.kind for f in log.faults} == {FaultKind.WATCHDOG}
        # A fault and its explicit clear: the clear's read of the arm is served with no command sent.
        backend.inject_fault(FaultKind.PROTECTIVE_STOP)
        for _ in range(2):  # the watchdog's last hold may still bring a state measured before it
            driver.read_state()
        assert driver.state is DriverState.FAULT
        driver.clear_faults()
        driver.activate()
        driver.send(_ee(start))
        assert driver.read_state().t == backend.clock() and driver.state_is_fresh


def test_faults_still_work_in_lockstep(gripper: EmulatorBackend) -> None:
    last = gripper.read_state()
    gripper.inject_fault(FaultKind.COMMS, count=3)
    gripper.send(_ee(last))
    state = gripper.read_state()  # the command's state was lost: the read waits the next ones out
    assert state.seq == last.seq + 4 and state.t == pytest.approx(last.t + 4 * PERIOD, abs=1e-9)
    assert FaultKind.COMMS in {f.kind for f in gripper.faults()}
    gripper.clear_faults()
    gripper.inject_fault(FaultKind.PROTECTIVE_STOP)
    gripper.send(_ee(state, (0.03, 0.0, 0.0)))  # ignored by the arm, but time still passes
    assert gripper.read_state().seq == state.seq + 1
    assert FaultKind.PROTECTIVE_STOP in {f.kind for f in gripper.faults()}
    gripper.clear_faults()
    assert gripper.faults() == ()


@pytest.mark.fault
def test_injected_disconnect_is_detected_and_reconnects(monkeypatch) -> None:
    monkeypatch.setattr(emulator_process, "LOCKSTEP_TIMEOUT", 2.0)  # the default is for loaded machines
    with _lockstep() as backend:
        state = backend.read_state()
        backend.inject_fault(FaultKind.DISCONNECTED)
        time.sleep(0.5)  # silence alone is not a lost link in lockstep
        assert backend.faults() == () and backend.is_connected
        backend.send(_ee(state))  # never reaches the world
        begun = time.monotonic()
        with pytest.raises(NotConnectedError, match="no state"):
            backend.read_state()
        waited = time.monotonic() - begun
        assert backend._link is not None and 2.0 == backend._link.lockstep_timeout <= waited < 3.5
        assert FaultKind.DISCONNECTED in {f.kind for f in backend.faults()} and not backend.is_connected
        backend.connect()  # the link re-opens; the world waited meanwhile
        assert backend.is_connected
        state = backend.read_state()
        backend.send(_ee(state))
        new = backend.read_state()
        assert new.seq == state.seq + 1 and new.t == pytest.approx(state.t + PERIOD, abs=1e-9)


@pytest.mark.fault
def test_dead_child_is_a_lost_link() -> None:
    backend = _lockstep()
    backend.connect()
    state = backend.read_state()
    assert backend._link is not None
    backend._link.process.kill()  # a crash, seen from outside
    backend._link.process.join(2.0)
    assert FaultKind.DISCONNECTED in {f.kind for f in backend.faults()}
    with pytest.raises(NotConnectedError, match="died"):
        backend.read_state()
    assert backend.clock() == state.t  # the clock stops with the world
    backend.disconnect()
    assert backend.clock() == state.t


@pytest.mark.fault
def test_a_child_dying_during_a_read_ends_the_wait() -> None:
    backend = _lockstep()
    backend.connect()
    try:
        backend.read_state()
        assert backend._link is not None
        backend._link.process.kill()
        begun = time.monotonic()
        with pytest.raises(NotConnectedError, match="died"):
            backend.read_state()  # grants a period nobody serves
        assert time.monotonic() - begun < 1.0  # not the lockstep timeout: a dead child is seen at once
    finally:
        backend.disconnect()


@pytest.mark.fault
def test_a_slow_child_that_keeps_stepping_is_not_a_lost_link(monkeypatch) -> None:
    """A period that takes longer than the lockstep timeout on the wall clock (an overloaded
    machine: here the child is stopped 0.6 s at a time) is slow, not lost, while the child shows
    signs of life between the stops; four model-building sessions were lost to this."""
    import os
    import signal
    import threading

    monkeypatch.setattr(emulator_process, "LOCKSTEP_TIMEOUT", 2.0)  # a period slower than this, in a test's time

    # one 1 s period (500 physics steps) per command: long enough to be stopped many times over
    with _lockstep(control_hz=1.0, link_timeout=1.5) as backend:
        state = backend.read_state()
        pid = backend._link.process.pid
        done = threading.Event()

        def throttle() -> None:
            while not done.is_set():
                os.kill(pid, signal.SIGSTOP)  # 0.6 s at a time: at 0.3 s a period once ended within
                time.sleep(0.6)  # the timeout, the throttle's waking slowed by a loaded machine
                os.kill(pid, signal.SIGCONT)
                time.sleep(0.001)

        thread = threading.Thread(target=throttle, daemon=True)
        begun = time.monotonic()
        thread.start()
        try:
            backend.send(_ee(state))
            new = backend.read_state()
        finally:
            done.set()
            thread.join()
            os.kill(pid, signal.SIGCONT)
        waited = time.monotonic() - begun
        assert waited > backend._link.lockstep_timeout  # the period really was that slow
        assert new.seq == state.seq + 1 and backend.is_connected


@pytest.mark.fault
def test_a_silent_child_still_waiting_for_a_cpu_is_not_lost_until_the_busy_limit(monkeypatch) -> None:
    """With three heavy jobs on two cores a child went over 5 s without a step and live sessions
    were lost. A silent child the OS says is runnable (here: said so for a child that in truth
    serves no grant) is given `LOCKSTEP_BUSY_LIMIT`, not `LOCKSTEP_TIMEOUT`."""
    monkeypatch.setattr(emulator_process, "LOCKSTEP_TIMEOUT", 1.0)
    monkeypatch.setattr(emulator_process, "LOCKSTEP_BUSY_LIMIT", 3.0)
    monkeypatch.setattr(emulator_process, "child_cpu", lambda pid: ("R", 0))  # runnable, starved of CPU
    with _lockstep() as backend:
        state = backend.read_state()
        backend.inject_fault(FaultKind.DISCONNECTED)  # grants are never served from here on
        backend.send(_ee(state))
        begun = time.monotonic()
        with pytest.raises(NotConnectedError, match="while the child is busy"):
            backend.read_state()
        assert 3.0 <= time.monotonic() - begun < 4.5  # the busy limit, not the 1 s timeout


def test_the_os_reports_a_live_process_cpu_and_none_for_a_gone_one() -> None:
    import os
    import subprocess

    state, ticks = emulator_process.child_cpu(os.getpid())
    assert state == "R" and ticks > 0  # this process, reading its own stat, is running
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert emulator_process.child_cpu(gone.pid) is None
