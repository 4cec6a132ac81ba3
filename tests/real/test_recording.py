"""Episode logs: every record round-trips bit-exactly, replay re-sends exactly, a kill -9 loses nothing."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from puzzlebot.real.interface import (
    Capabilities,
    Command,
    ControlMode,
    Fault,
    FaultKind,
    Frame,
    RobotState,
)
from puzzlebot.real.recording import FRAME_HEADER, EpisodeWriter
from puzzlebot.real.replay import CorruptLogError, EndOfLog, EpisodeReader, ReplayBackend, commands_equal, replay
from puzzlebot.real.safety import SafetyReport

REPO = Path(__file__).resolve().parents[2]

CAPS = Capabilities(
    name="rec3", joint_names=("j1", "j2", "j3"),
    joint_lower=np.array([-2.0, -1.5, -math.pi]), joint_upper=np.array([2.0, 1.5, math.pi]),
    max_joint_velocity=np.full(3, 1.1), max_joint_acceleration=np.full(3, 9.7),
    control_modes=(ControlMode.JOINT, ControlMode.EE), control_hz=30.0)

#: Floats that a lossy encoding (fixed digits, float32, dropping the sign of zero) would change.
AWKWARD = [0.1 + 0.2, 1 / 3, -0.0, 5e-324, 1e-310, 1.7976931348623157e308, math.pi, float(np.nextafter(1.0, 2.0))]


def bits_equal(a: object, b: object) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def make_state(i: int, faults: tuple[Fault, ...] = ()) -> RobotState:
    q = np.array([AWKWARD[i % 8], -AWKWARD[(i + 3) % 8] / 7, i / 3])
    return RobotState(seq=i, t=1000.0 + i / 30, joint_positions=q, joint_velocities=q / 11,
                      tcp_position=np.array([0.1 * i, 1 / 7, -0.0]), tcp_quaternion=np.array([1.0, 0.0, 0.0, 1e-17]),
                      grip=i / 9, faults=faults)


def states_equal(a: RobotState, b: RobotState) -> bool:
    return (a.seq == b.seq and a.t.hex() == b.t.hex() and a.grip.hex() == b.grip.hex() and a.faults == b.faults
            and all(bits_equal(getattr(a, k), getattr(b, k))
                    for k in ("joint_positions", "joint_velocities", "tcp_position", "tcp_quaternion")))


def image(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth RGB image (JPEG keeps it close), different per frame."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 3 + i * 5) % 256, (y * 4) % 256, np.full_like(x, 40 + i)], axis=-1).astype(np.uint8)


def abandon(writer: EpisodeWriter) -> None:
    """Drop a writer as a crash would: its files are closed, no gap, no videos, no "end"."""
    writer._log.close()
    for store in writer._stores.values():
        store._file.close()


def test_every_record_type_round_trips_exactly(tmp_path: Path) -> None:
    config = {"robot": "emulator", "seed": 7, "gains": [0.1 + 0.2, -0.0], "nested": {"dt": 1 / 30}}
    w = EpisodeWriter(tmp_path, config, CAPS)
    fault = Fault(FaultKind.PROTECTIVE_STOP, "C204A3: protective stop", 1000.5, vendor_code="C204A3")
    states = [make_state(i, (fault,) if i == 2 else ()) for i in range(5)]
    for s in states:
        w.log_state(s)
    raw = Command(ControlMode.JOINT, np.array(AWKWARD[:3]), grip=1 / 3, t=1000.01)
    sent = Command(ControlMode.JOINT, np.array([0.05, -0.0, 1e-310]), grip=1 / 3, t=1000.0125)
    w.log_command(raw, SafetyReport(sent, False, "", ("j1 step capped to 0.05 rad",)))
    nan_raw = Command(ControlMode.JOINT, np.array([np.nan, np.inf, -np.inf]), t=1000.02)
    w.log_command(nan_raw, SafetyReport(None, True, "non-finite target"))
    w.log_command(Command(ControlMode.EE, np.zeros((2, 2))), SafetyReport(None, True, "wrong target shape"))
    f32 = Command(ControlMode.EE, np.array([0.1, 0.2, 0.3, 1, 0, 0, 0], dtype=np.float32), np.float32(0.7), 1000.03)
    w.record_command(f32, f32)
    hold = Command(ControlMode.JOINT, np.array([1 / 3, 2 / 3, 0.0]), t=1000.04)
    w.log_sent(hold, "watchdog")
    w.log_fault(fault)
    w.log_fault(Fault(FaultKind.VENDOR, "servo overload", 1000.6, vendor_code=21))
    w.log_event("estop", by="operator", t_pressed=1000.7)
    index = w.log_frame(Frame("wrist", 3, 1000.8, image(0)))
    gap = {"friction_scale": np.float64(0.1 + 0.2), "axis_tilt_deg": np.array([1 / 3, -0.0]), "latency_ms": 12}
    w.close(gap=gap)
    w.close()  # idempotent

    r = EpisodeReader(tmp_path)
    assert r.ends_cleanly and not r.truncated and r.schema == 1
    assert r.config == config and r.config["gains"][1].hex() == (-0.0).hex()
    caps = r.capabilities
    assert (caps.name, caps.joint_names, caps.control_modes, caps.control_hz, caps.has_gripper) == (
        CAPS.name, CAPS.joint_names, CAPS.control_modes, CAPS.control_hz, CAPS.has_gripper)
    assert all(bits_equal(getattr(caps, k), getattr(CAPS, k)) for k in
               ("joint_lower", "joint_upper", "max_joint_velocity", "max_joint_acceleration"))
    assert len(r.states) == 5 and all(states_equal(a, b) for a, b in zip(r.states, states, strict=True))
    c0, c1, c2, c3, c4 = r.commands
    assert commands_equal(c0.raw, raw) and commands_equal(c0.sent, sent) and c0.rejected is None
    assert c0.changes == ["j1 step capped to 0.05 rad"] and c0.report["rejected"] is False
    assert c1.sent is None and c1.rejected == "non-finite target" and commands_equal(c1.raw, nan_raw)
    assert c2.sent is None and c2.raw.target.shape == (2, 2)
    assert commands_equal(c3.sent, f32) and c3.sent.target.dtype == np.float32  # dtype survives
    assert c4.raw is None and c4.origin == "watchdog" and commands_equal(c4.sent, hold)
    assert r.faults == [fault, Fault(FaultKind.VENDOR, "servo overload", 1000.6, vendor_code=21)]
    assert [(e.text, e.data) for e in r.events] == [("estop", {"by": "operator", "t_pressed": 1000.7})]
    assert index == 0 and len(r.frames["wrist"]) == 1 and r.frames["wrist"][0].seq == 3
    assert r.gap == {"friction_scale": 0.1 + 0.2, "axis_tilt_deg": [1 / 3, -0.0], "latency_ms": 12}
    assert r.end["counts"]["state"] == 5 and r.end["counts"]["command"] == 5 and r.end["videos"] == {"wrist": 1}
    assert [k for k, _ in r.timeline][:6] == ["state"] * 5 + ["command"]


def test_frames_round_trip_and_video_has_every_frame(tmp_path: Path) -> None:
    n = 12
    with EpisodeWriter(tmp_path, {}, CAPS) as w:
        for i in range(n):
            w.log_frame(Frame("front", 100 + i, 5.0 + i / 25, image(i)))
            w.log_frame(Frame("side-2", i, 5.0 + i / 25, image(i, 24, 32)))
    r = EpisodeReader(tmp_path)
    frames = r.frames["front"]
    assert len(frames) == n and len(r.frames["side-2"]) == n
    for i, frame in enumerate(frames):
        assert (frame.camera, frame.seq, frame.t) == ("front", 100 + i, 5.0 + i / 25)
        diff = np.abs(frame.image.astype(int) - image(i).astype(int))
        assert frame.image.shape == (48, 64, 3) and diff.mean() < 3 and diff.max() < 40  # JPEG tolerance
    assert frames.latest_before(5.0 + 3.5 / 25).seq == 103 and frames.latest_before(0.0) is None
    for camera, size in (("front", (64, 48)), ("side-2", (32, 24))):
        cap = cv2.VideoCapture(str(r.video_path(camera)))
        count = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            assert (bgr.shape[1], bgr.shape[0]) == size
            count += 1
        cap.release()
        assert count == n
    assert r.end["videos"] == {"front": n, "side-2": n}
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary behind


@pytest.mark.fault
def test_replay_reproduces_the_sent_commands_exactly(tmp_path: Path) -> None:
    arm_received: list[Command] = []  # what the (pretend) arm was sent while recording
    with EpisodeWriter(tmp_path, {"replay": True}, CAPS) as w:
        for i in range(40):
            w.log_state(make_state(i))
            raw = Command(ControlMode.JOINT, np.array([AWKWARD[i % 8], i / 7, -i / 13]) / 3, grip=i / 17, t=i / 30)
            if i % 9 == 4:  # rejected: nothing reaches the arm
                w.record_command(raw, None, rejected="workspace")
                continue
            # A stand-in safety step whose arithmetic leaves full-precision floats (the worst case for a log).
            target = np.clip(raw.target * 0.7 + 1e-9, CAPS.joint_lower, CAPS.joint_upper)
            dtype = np.float32 if i % 5 == 0 else np.float64
            sent = Command(ControlMode.JOINT, target.astype(dtype), min(raw.grip, 0.8), raw.t + 1 / 3e3)
            arm_received.append(sent)
            w.record_command(raw, sent, changes=["scaled"])
    reader = EpisodeReader(tmp_path)
    backend = replay(reader)
    replayed = backend.sent_commands()
    assert len(replayed) == len(arm_received) == 36
    assert all(commands_equal(a, b) for a, b in zip(replayed, arm_received, strict=True))
    assert all(np.array_equal(a.target, b.target) for a, b in zip(replayed, arm_received, strict=True))
    assert backend.remaining == 0
    with pytest.raises(EndOfLog):
        backend.read_state()

    # The backend alone: states in order or by time, faults as logged, FK only where logged.
    fresh = ReplayBackend(reader)
    fresh.connect()
    assert fresh.read_state().seq == 0 and fresh.read_state().seq == 1
    assert fresh.state_at(1000.0 + 10.5 / 30).seq == 10 and fresh.read_state().seq == 11
    q = reader.states[5].joint_positions
    assert bits_equal(fresh.forward_kinematics(q), reader.states[5].tcp_position)
    with pytest.raises(NotImplementedError, match="no kinematic model"):
        fresh.forward_kinematics(q + 1e-3)


@pytest.mark.fault
def test_driver_log_replays_to_exactly_what_the_arm_received(tmp_path: Path) -> None:
    """Through the real Driver and SafetyLayer: the log's safe commands are exactly what the arm got."""
    from fake_backend import FakeArm

    from puzzlebot.real.driver import Driver
    from puzzlebot.real.safety import SafetyConfig

    t = [100.0]
    arm = FakeArm()
    safety = SafetyConfig(max_joint_step=0.05, workspace_low=(-1.0, -1.0, -1.0), workspace_high=(1.0, 1.0, 1.0))
    with EpisodeWriter(tmp_path, {}, arm.capabilities) as w:
        with Driver(arm, safety, recorder=w, clock=lambda: t[0]) as driver:
            driver.activate()
            for i in range(20):
                t[0] += 0.04
                driver.read_state()
                target = [np.nan, 0, 0] if i == 7 else [i / 3, -i / 7, 0.1 + 0.2]  # a NaN and jumps to cap
                driver.send(Command(ControlMode.JOINT, np.array(target, dtype=float), grip=i / 11))
    reader = EpisodeReader(tmp_path)
    assert any(c.rejected for c in reader.commands) and any(c.changes for c in reader.commands)
    replayed = replay(reader).sent_commands()
    assert len(arm.sent) == len(replayed) == 19
    assert all(commands_equal(a, b) for a, b in zip(replayed, arm.sent, strict=True))


CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from puzzlebot.real.interface import Capabilities, Command, ControlMode, Frame, RobotState
    from puzzlebot.real.recording import EpisodeWriter

    caps = Capabilities("kill9", ("a", "b"), np.full(2, -1.0), np.full(2, 1.0), np.ones(2), np.ones(2))
    w = EpisodeWriter(sys.argv[1], {"run": "kill9"}, caps, fsync_every=10_000)  # kill -9 safety is the flush
    img = np.zeros((24, 32, 3), np.uint8)
    for i in range(200_000):
        q = np.array([i / 7, -i / 3])
        w.log_state(RobotState(i, i / 30, q, q, q, np.ones(4), i / 9))
        print("state", i, flush=True)
        w.record_command(Command(ControlMode.JOINT, q, t=i / 30), Command(ControlMode.JOINT, q / 3, t=i / 30))
        print("command", i, flush=True)
        img[:] = i % 256
        w.log_frame(Frame("cam", i, i / 30, img))
        print("frame", i, flush=True)
""")


@pytest.mark.fault
def test_kill_9_mid_episode_loses_nothing_written_before_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    reported: dict[str, int] = {"state": -1, "command": -1, "frame": -1}
    try:
        for _ in range(90):  # 30 rounds of state, command, frame, each reported after its flush
            line = child.stdout.readline()
            assert line, f"child died early: {child.stderr.read()}"
            kind, i = line.split()
            reported[kind] = int(i)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    r = EpisodeReader(tmp_path)  # must not raise, whatever the kill cut
    assert not r.ends_cleanly and r.config == {"run": "kill9"}
    assert len(r.states) > reported["state"] and len(r.commands) > reported["command"]
    assert [s.seq for s in r.states] == list(range(len(r.states)))
    for s in r.states[: reported["state"] + 1]:
        assert bits_equal(s.joint_positions, np.array([s.seq / 7, -s.seq / 3]))
    for c in r.commands[: reported["command"] + 1]:
        assert bits_equal(c.sent.target, c.raw.target / 3)
    frames = r.frames["cam"]
    assert len(frames) > reported["frame"]
    for i in (0, reported["frame"]):
        assert frames[i].seq == i and abs(int(frames[i].image.mean()) - i % 256) <= 2


@pytest.mark.fault
def test_truncated_last_line_is_skipped_and_damage_elsewhere_is_not(tmp_path: Path) -> None:
    w = EpisodeWriter(tmp_path, {}, CAPS)
    for i in range(10):
        w.log_state(make_state(i))
    abandon(w)
    log = tmp_path / "episode.jsonl"
    data = log.read_bytes()
    log.write_bytes(data[:-40])  # the kill landed inside the last state's line
    r = EpisodeReader(tmp_path)
    assert r.truncated and not r.ends_cleanly and [s.seq for s in r.states] == list(range(9))

    log.write_bytes(data[:-1])  # only the newline is missing: the record is whole and kept
    r = EpisodeReader(tmp_path)
    assert not r.truncated and len(r.states) == 10

    lines = data.split(b"\n")
    lines[4] = lines[4][:30]  # damage in the middle is not a crash artifact
    log.write_bytes(b"\n".join(lines))
    with pytest.raises(CorruptLogError, match=":5 "):
        EpisodeReader(tmp_path)


@pytest.mark.fault
def test_truncated_or_garbled_last_frame_is_skipped(tmp_path: Path) -> None:
    w = EpisodeWriter(tmp_path, {}, CAPS)
    for i in range(5):
        w.log_frame(Frame("cam", i, float(i), image(i)))
    abandon(w)
    store = tmp_path / "frames_cam.bin"
    data = store.read_bytes()

    store.write_bytes(data[:-100])  # killed mid-payload of frame 4
    frames = EpisodeReader(tmp_path).frames["cam"]
    assert len(frames) == 4 and [f.seq for f in frames] == [0, 1, 2, 3]

    store.write_bytes(data + b"\x07" * (FRAME_HEADER.size - 3))  # a header cut short after the last frame
    assert len(EpisodeReader(tmp_path).frames["cam"]) == 5

    store.write_bytes(data[:-200] + b"\0" * 200)  # full length on disk, zeros inside (power cut): CRC fails
    frames = EpisodeReader(tmp_path).frames["cam"]
    assert len(frames) == 4 and frames[3].image.shape == (48, 64, 3)


def test_writer_refuses_reuse_bad_names_and_unrecordable_data(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot record object"):
        EpisodeWriter(tmp_path, {"model": object()}, CAPS)
    w = EpisodeWriter(tmp_path, {}, CAPS)  # the refused config left nothing behind
    with pytest.raises(FileExistsError):
        EpisodeWriter(tmp_path, {}, CAPS)  # one episode per folder: never append to another run
    with pytest.raises(ValueError, match="camera name"):
        w.log_frame(Frame("../evil", 0, 0.0, image(0)))
    with pytest.raises(TypeError, match="cannot record object"):
        w.log_event("bad", payload=object())  # refused before anything is written: no half line
    w.log_event("after")
    with pytest.raises(RuntimeError, match="boom"):
        with w:
            raise RuntimeError("boom")
    r = EpisodeReader(tmp_path)
    assert r.ends_cleanly and [e.text for e in r.events] == ["after", "exception"]
    assert r.events[1].data == {"type": "RuntimeError", "message": "boom"}
    with pytest.raises(RuntimeError, match="closed"):
        w.log_event("late")
