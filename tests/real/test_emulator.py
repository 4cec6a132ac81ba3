"""The reality emulator against its own config: timing, noise, frames, faults and the drawn gap.

Everything runs in real time against a child process (no GPU, no display): an emulator is
shared per module where tests leave it as they found it, and started afresh where a test ends
its life. Numbers measured here are printed (`pytest -s`) for the closing note.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig, GapConfig
from puzzlebot.real.interface import Command, ControlMode, FaultKind, NotConnectedError, StaleFrameError

PUZZLE = str(Path(__file__).parents[2] / "puzzlebot" / "assets" / "puzzles" / "bolt_drawer.yaml")
NOISE_Q = 0.002  # rad: large enough to measure over 100 states, small against test motions
LATENCY, JITTER = 0.08, 0.005  # s: far above the 10 ms state period, so it is clearly measurable


def _settle(emu: EmulatorBackend, seconds: float = 0.4) -> None:
    emu.stop()
    time.sleep(seconds)


def _collect(emu: EmulatorBackend, seconds: float) -> list:
    """Every state measured during `seconds` (read_new_states misses none)."""
    states, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        states += emu.read_new_states(block=True)
    return states


def _wait_at_rest(emu: EmulatorBackend, timeout: float = 3.0) -> None:
    """Until 10 states in a row show every joint slower than 1 mrad/s (noise-free emulator)."""
    end, still = time.monotonic() + timeout, 0
    while still < 10:
        assert time.monotonic() < end, "the arm did not come to rest"
        still = still + 1 if np.abs(emu.read_state().joint_velocities).max() < 1e-3 else 0


def _mean_q(emu: EmulatorBackend, n: int = 5) -> np.ndarray:
    return np.mean([emu.read_state().joint_positions for _ in range(n)], axis=0)


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorBackend]:
    """A noisy Jaco with one camera that drops many frames; tests put the arm back where it was."""
    gap = GapConfig(joint_position_noise=NOISE_Q, joint_velocity_noise=0.01, frame_drop_prob=0.3,
                    stale_frame_prob=0.0, image_noise_std=3.0, camera_hz=20.0)
    backend = EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, seed=1, gap=gap, cameras=("front",)))
    with backend:
        yield backend


@pytest.fixture(scope="module")
def quiet() -> Iterator[EmulatorBackend]:
    """No noise and no backlash (onsets are sharp), a long latency, and a camera that only re-sends."""
    gap = GapConfig(joint_position_noise=0.0, joint_velocity_noise=0.0, backlash=(0.0, 0.0), latency_mean=LATENCY,
                    latency_jitter=JITTER, frame_drop_prob=0.0, stale_frame_prob=1.0, image_noise_std=0.0,
                    camera_hz=20.0)
    backend = EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, seed=2, gap=gap, cameras=("front",)))
    with backend:
        yield backend


def test_capabilities_are_known_before_connect() -> None:
    backend = EmulatorBackend(EmulatorConfig(puzzle=PUZZLE))
    caps = backend.capabilities
    assert caps.joint_names == tuple(f"jaco/joint_{i}" for i in range(1, 7))
    assert caps.joint_lower[1] == pytest.approx(0.820305) and caps.joint_upper[2] == pytest.approx(5.951573)
    assert caps.joint_upper[0] == pytest.approx(2 * np.pi)  # endless joint: the declared span
    assert caps.max_joint_velocity[0] == pytest.approx(np.deg2rad(36.0))
    assert ControlMode.JOINT in caps.control_modes and ControlMode.EE in caps.control_modes
    assert not backend.is_connected
    with pytest.raises(NotConnectedError):
        backend.read_state()
    with pytest.raises(NotConnectedError):
        backend.send(Command(ControlMode.JOINT, np.zeros(6)))
    with pytest.raises(RuntimeError, match="no episode"):
        backend.episode_gap()
    backend.disconnect()  # harmless when never connected


def test_states_have_increasing_seq_and_monotonic_timestamps(emu: EmulatorBackend) -> None:
    states = [emu.read_state() for _ in range(30)]
    seqs, ts = np.array([s.seq for s in states]), np.array([s.t for s in states])
    assert np.all(np.diff(seqs) > 0) and np.all(np.diff(ts) > 0)
    now = time.monotonic()
    assert ts[-1] <= now and now - ts[-1] < 0.25  # the same clock as ours, and fresh
    rate = (seqs[-1] - seqs[0]) / (ts[-1] - ts[0])  # by seq: a busy reader may skip states
    print(f"\nstate rate {rate:.1f} Hz (control_hz 100)")
    assert rate == pytest.approx(100.0, rel=0.1)
    state = states[-1]
    assert state.joint_positions.shape == (6,) and state.tcp_quaternion.shape == (4,)
    assert state.proprio().shape == (3 + 4 + 1 + 12,)
    # The local kinematic copy agrees with the world's measured TCP (up to the joint noise).
    np.testing.assert_allclose(emu.forward_kinematics(state.joint_positions), state.tcp_position, atol=0.005)


def test_joint_command_moves_measured_joints_towards_target(emu: EmulatorBackend) -> None:
    q0 = _mean_q(emu)
    target = q0 + np.array([0.15, 0.0, 0.0, 0.0, 0.0, -0.15])  # base and wrist turns: clear of the puzzle
    emu.send(Command(ControlMode.JOINT, target, t=time.monotonic()))
    time.sleep(1.2)
    error = np.abs(_mean_q(emu) - target)
    print(f"\njoint error 1.2 s after a 0.15 rad step: {np.round(error, 4)} rad")
    assert error.max() < 0.015  # backlash, friction deadzone (frictionloss / kp) and noise remain
    emu.send(Command(ControlMode.JOINT, q0, t=time.monotonic()))
    time.sleep(1.2)


def test_ee_command_moves_tcp(emu: EmulatorBackend) -> None:
    state = emu.read_state()
    goal = state.tcp_position + np.array([0.0, 0.0, 0.03])
    for _ in range(100):  # held over control ticks, the IK converges
        emu.send(Command(ControlMode.EE, np.concatenate([goal, state.tcp_quaternion]), t=time.monotonic()))
        time.sleep(0.01)
    time.sleep(0.3)
    moved = emu.read_state().tcp_position
    print(f"\nEE: TCP error after 1.3 s {np.linalg.norm(moved - goal) * 1000:.1f} mm for a 30 mm move")
    assert np.linalg.norm(moved - goal) < 0.01
    _settle(emu)


def test_joint_noise_matches_config(emu: EmulatorBackend) -> None:
    _settle(emu)
    emu.read_new_states()  # only states measured from now on
    states = _collect(emu, 1.0)
    q = np.array([s.joint_positions for s in states])
    std = q.std(axis=0, ddof=1)
    print(f"\njoint noise over {len(q)} states at rest: std {np.round(std, 5)} rad, mean {std.mean():.5f} "
          f"(config {NOISE_Q})")
    assert len(q) >= 90
    assert std.mean() == pytest.approx(NOISE_Q, rel=0.3)
    assert np.all(np.abs(std - NOISE_Q) < 0.3 * NOISE_Q)


def test_camera_frames_are_fresh_and_report_drops(emu: EmulatorBackend) -> None:
    cam = emu.camera("front")
    cam.connect()
    k = cam.intrinsics.matrix
    assert cam.intrinsics.width == 160 and cam.intrinsics.height == 120
    assert k[0, 0] == pytest.approx(60.0 / np.tan(np.deg2rad(22.5))) and k[0, 2] == 80.0
    frames, stale = {}, 0
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        try:
            frame = cam.read_latest(max_age=0.3)
        except StaleFrameError:  # several drops in a row (p = 0.3 each): rare, and never a reused frame
            stale += 1
        else:
            frames[frame.seq] = frame
            assert time.monotonic() - frame.t <= 0.3
        time.sleep(0.01)
    seqs = sorted(frames)
    gaps = int(np.sum(np.diff(seqs) - 1))
    print(f"\ncamera: {len(seqs)} frames seen, {gaps} missing by seq, server counted {cam.dropped_frames} "
          f"dropped (p=0.3), {stale} reads refused as stale")
    assert gaps > 0 and cam.dropped_frames > 0  # (a slow reader may also miss frames: gaps >= drops is not assured)
    image = frames[seqs[-1]].image
    assert image.shape == (120, 160, 3) and image.dtype == np.uint8 and image.std() > 5
    # At rest the scene is still: two frames differ by the image noise alone (std 3 each).
    diff = frames[seqs[-1]].image.astype(float) - frames[seqs[-2]].image.astype(float)
    print(f"camera: frame difference std {diff.std():.2f} (expected ~{3.0 * np.sqrt(2):.2f})")
    assert diff.std() == pytest.approx(3.0 * np.sqrt(2), rel=0.3)
    cam.disconnect()
    with pytest.raises(NotConnectedError):
        cam.read_latest(max_age=1.0)
    assert emu.is_connected  # the arm keeps its link


def test_latency_matches_config(quiet: EmulatorBackend) -> None:
    """Send steps and find when the measured joint starts moving.

    Torque-saturated, the joint starts with constant acceleration, so sqrt(displacement) grows
    linearly in time: extrapolating it to zero from the first two samples gives the onset.
    """
    delays, raw = [], []
    _wait_at_rest(quiet)
    for i in range(5):
        before = quiet.read_state()
        step = 0.2 if i % 2 == 0 else -0.2
        target = before.joint_positions + np.array([step, 0, 0, 0, 0, 0])
        t_send = time.monotonic()
        quiet.send(Command(ControlMode.JOINT, target, t=t_send))
        moving = []
        while len(moving) < 2:
            state = quiet.read_state()
            d = abs(state.joint_positions[0] - before.joint_positions[0])
            if d > 1e-4:
                moving.append((state.t, d))
            assert state.t - t_send < 0.5, "the joint never moved"
        (t1, d1), (t2, d2) = moving
        onset = t1 - np.sqrt(d1) * (t2 - t1) / (np.sqrt(d2) - np.sqrt(d1))
        delays.append(onset - t_send)
        raw.append(t1 - t_send)
        _wait_at_rest(quiet)
    delays_ms, raw_ms = np.array(delays) * 1e3, np.array(raw) * 1e3
    print(f"\nlatency: onsets {np.round(delays_ms, 1)} ms, mean {delays_ms.mean():.1f} ms; first moving state "
          f"after {np.round(raw_ms, 1)} ms (config {LATENCY * 1e3:.0f} +- {JITTER * 1e3:.0f} ms)")
    assert np.mean(delays) == pytest.approx(LATENCY, abs=3 * JITTER / np.sqrt(5) + 0.004)
    assert np.all(np.array(delays) > LATENCY - 4 * JITTER - 0.003)  # a command never acts early
    assert np.all(np.array(raw) > LATENCY - 4 * JITTER)


def test_stale_frames_raise(quiet: EmulatorBackend) -> None:
    cam = quiet.camera("front")
    cam.connect()
    time.sleep(0.2)
    # The camera only ever re-sends its first frame, with its old seq and timestamp.
    with pytest.raises(StaleFrameError, match="old"):
        cam.read_latest(max_age=0.1)
    frame = cam.read_latest(max_age=1e6)
    assert frame.seq == 1 and time.monotonic() - frame.t > 0.2


@pytest.mark.fault
def test_protective_stop_holds_until_cleared(emu: EmulatorBackend) -> None:
    q0 = _mean_q(emu)
    emu.inject_fault(FaultKind.PROTECTIVE_STOP)
    time.sleep(0.1)
    assert FaultKind.PROTECTIVE_STOP in {f.kind for f in emu.faults()}
    assert FaultKind.PROTECTIVE_STOP in {f.kind for f in emu.read_state().faults}
    target = q0 + np.array([0.15, 0, 0, 0, 0, 0])
    emu.send(Command(ControlMode.JOINT, target, t=time.monotonic()))
    time.sleep(0.5)
    assert abs(_mean_q(emu)[0] - q0[0]) < 0.01, "the arm moved during a protective stop"
    assert FaultKind.PROTECTIVE_STOP in {f.kind for f in emu.faults()}  # never cleared by itself
    emu.clear_faults()
    assert emu.faults() == ()
    # states measured before the clear keep their faults (on a loaded machine one can arrive
    # between the last read and the clear): drop them, then every fresh state is clean
    emu.read_new_states()
    assert all(not s.faults for s in emu.read_new_states(block=True))
    emu.send(Command(ControlMode.JOINT, target, t=time.monotonic()))
    time.sleep(0.8)
    assert abs(_mean_q(emu)[0] - q0[0]) > 0.1
    emu.send(Command(ControlMode.JOINT, q0, t=time.monotonic()))
    time.sleep(1.0)


@pytest.mark.fault
def test_stop_discards_queued_commands(emu: EmulatorBackend) -> None:
    q0 = _mean_q(emu)
    emu.send(Command(ControlMode.JOINT, q0 + np.array([0.15, 0, 0, 0, 0, 0]), t=time.monotonic()))
    emu.stop()  # before the command's latency elapsed
    time.sleep(0.5)
    assert abs(_mean_q(emu)[0] - q0[0]) < 0.01


@pytest.mark.fault
def test_sensor_invalid_yields_one_nan_state(emu: EmulatorBackend) -> None:
    emu.read_new_states()
    emu.inject_fault(FaultKind.SENSOR_INVALID)
    states = _collect(emu, 0.3)
    bad = [s for s in states if not np.all(np.isfinite(s.joint_positions))]
    assert len(bad) == 1
    assert FaultKind.SENSOR_INVALID in {f.kind for f in bad[0].faults}
    assert np.all(np.isfinite(states[-1].joint_positions))
    assert FaultKind.SENSOR_INVALID in {f.kind for f in emu.faults()}  # latched until cleared
    emu.clear_faults()
    assert emu.faults() == ()


@pytest.mark.fault
def test_comms_drops_state_packets(emu: EmulatorBackend) -> None:
    last = emu.read_new_states(block=True)[-1]
    emu.inject_fault(FaultKind.COMMS, count=5)
    states = [last, *_collect(emu, 0.3)]
    gaps = np.diff([s.seq for s in states])
    assert gaps.max() == 6 and np.sum(gaps - 1) == 5
    assert FaultKind.COMMS in {f.kind for f in emu.faults()}
    assert emu.is_connected  # 50 ms of silence is below the link timeout
    emu.clear_faults()
    assert emu.faults() == ()


@pytest.mark.fault
def test_injected_disconnect_is_reported_and_reconnects() -> None:
    config = EmulatorConfig(puzzle=PUZZLE, seed=4, cameras=())
    with EmulatorBackend(config) as backend:
        backend.read_state()
        backend.inject_fault(FaultKind.DISCONNECTED)
        time.sleep(config.link_timeout + 0.1)
        assert FaultKind.DISCONNECTED in {f.kind for f in backend.faults()}
        assert not backend.is_connected
        with pytest.raises(NotConnectedError, match="no state"):
            backend.read_state()
        with pytest.raises(NotConnectedError):
            backend.send(Command(ControlMode.JOINT, np.zeros(6)))
        backend.stop()  # must work from any state
        backend.connect()  # the world kept running: the link re-opens
        assert backend.is_connected and FaultKind.DISCONNECTED not in {f.kind for f in backend.faults()}
        assert np.all(np.isfinite(backend.read_state().joint_positions))
    assert backend.episode_gap()["seed"] == 4


@pytest.mark.fault
def test_dead_child_reports_disconnected() -> None:
    backend = EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, seed=5, cameras=()))
    backend.connect()
    backend._link.process.kill()  # a crash, seen from outside
    backend._link.process.join(2.0)
    assert FaultKind.DISCONNECTED in {f.kind for f in backend.faults()}
    with pytest.raises(NotConnectedError, match="died"):
        backend.read_state()
    backend.disconnect()
    with pytest.raises(RuntimeError, match="without reporting"):
        backend.episode_gap()


def test_episode_gap_is_readable_only_after_the_episode_and_seeded() -> None:
    def run(seed: int) -> dict:
        backend = EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, seed=seed, cameras=()))
        with backend:
            backend.read_state()
            with pytest.raises(RuntimeError, match="only after the episode"):
                backend.episode_gap()
        return backend.episode_gap()

    first, again, other = run(7), run(7), run(8)
    assert first["drawn"] == again["drawn"]
    assert first["drawn"] != other["drawn"]
    drawn, cfg = first["drawn"], GapConfig()
    assert set(drawn["joint_friction"]) == {"drawer", "bolt"}
    assert all(cfg.joint_friction[0] <= f <= cfg.joint_friction[1] for f in drawn["joint_friction"].values())
    assert all(cfg.axis_tilt_deg[0] <= a["deg"] <= cfg.axis_tilt_deg[1] for a in drawn["axis_tilt"].values())
    assert len(drawn["backlash"]) == 6
    assert first["config"]["latency_mean"] == cfg.latency_mean


def test_no_process_is_left_after_disconnect() -> None:
    backend = EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, seed=6, cameras=()))
    backend.connect()
    process = backend._link.process
    pid = process.pid
    backend.disconnect()
    backend.disconnect()  # idempotent
    assert not process.is_alive() and process.exitcode == 0
    assert process not in mp.active_children()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # joined: not even a zombie remains
    assert not backend.is_connected


def test_floating_gripper_in_ee_mode() -> None:
    with EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, robot="gripper", seed=3, cameras=())) as backend:
        assert backend.capabilities.control_modes == (ControlMode.EE,)
        state = backend.read_state()
        assert state.joint_positions.shape == (0,) and state.proprio().shape == (8,)
        np.testing.assert_allclose(backend.forward_kinematics(np.zeros(0)), state.tcp_position, atol=1e-6)
        goal = state.tcp_position + np.array([0.03, 0.0, 0.0])
        backend.send(Command(ControlMode.EE, np.concatenate([goal, state.tcp_quaternion]), grip=1.0,
                             t=time.monotonic()))
        with pytest.raises(ValueError, match="ee"):
            backend.send(Command(ControlMode.JOINT, np.zeros(0)))
        time.sleep(0.6)
        state = backend.read_state()
        assert np.linalg.norm(state.tcp_position - goal) < 0.005
        assert state.grip > 0.5


def test_clock_is_the_wall_when_paced_and_the_emulators_own_when_not(emu: EmulatorBackend) -> None:
    before = time.monotonic()
    assert before <= emu.clock() <= time.monotonic()  # realtime: the wall clock states are stamped in
    unpaced = EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, seed=9, cameras=(), realtime=False))
    with pytest.raises(NotConnectedError, match="clock starts"):
        unpaced.clock()
    with unpaced:
        state = unpaced.read_state()
        assert unpaced.clock() >= state.t  # free-running: the newest state's time, never behind a read one
        newest = unpaced.read_new_states(block=True)[-1]
        assert unpaced.clock() >= newest.t
    final = unpaced.clock()
    assert final >= newest.t and unpaced.clock() == final  # frozen once the world is gone
