"""Reading an episode log back, and a backend that plays it: the other half of `recording`.

`EpisodeReader` reads whatever a run left in its folder, finished or killed mid-write.
`ReplayBackend` serves the logged states through the `RobotBackend` interface and keeps what
it is sent, so a log can be driven again and compared: the logged safe commands, sent through
it, come out bit-exactly (`commands_equal`), because the log stores floats with ``repr`` and
each target's dtype.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from puzzlebot.real.interface import (
    Capabilities,
    Command,
    ControlMode,
    Fault,
    FaultKind,
    Frame,
    NotConnectedError,
    RobotBackend,
    RobotState,
)
from puzzlebot.real.recording import (
    EPISODE_FILE,
    SCHEMA_VERSION,
    CorruptLogError,
    read_frame_image,
    scan_frames,
)

# --------------------------------------------------------------------------- decoding


def decode_command(d: Mapping[str, Any]) -> Command:
    return Command(ControlMode(d["mode"]), np.asarray(d["target"], dtype=np.dtype(d["dtype"])),
                   float(d["grip"]), float(d["t"]))


def decode_fault(d: Mapping[str, Any]) -> Fault:
    return Fault(FaultKind(d["kind"]), d["message"], float(d["t"]), d.get("vendor_code"))


def decode_state(d: Mapping[str, Any]) -> RobotState:
    """A state record back; no ``wrench`` key (an arm without the sensor, an older log) gives None."""
    wrench = d.get("wrench")
    return RobotState(
        seq=int(d["seq"]), t=float(d["t"]),
        joint_positions=np.asarray(d["joint_positions"], dtype=float),
        joint_velocities=np.asarray(d["joint_velocities"], dtype=float),
        tcp_position=np.asarray(d["tcp_position"], dtype=float),
        tcp_quaternion=np.asarray(d["tcp_quaternion"], dtype=float),
        grip=float(d["grip"]), faults=tuple(decode_fault(f) for f in d["faults"]),
        wrench=None if wrench is None else np.asarray(wrench, dtype=float))


def decode_capabilities(d: Mapping[str, Any]) -> Capabilities:
    return Capabilities(
        name=d["name"], joint_names=tuple(d["joint_names"]),
        joint_lower=np.asarray(d["joint_lower"], dtype=float), joint_upper=np.asarray(d["joint_upper"], dtype=float),
        max_joint_velocity=np.asarray(d["max_joint_velocity"], dtype=float),
        max_joint_acceleration=np.asarray(d["max_joint_acceleration"], dtype=float),
        control_modes=tuple(ControlMode(m) for m in d["control_modes"]),
        control_hz=float(d["control_hz"]), has_gripper=bool(d["has_gripper"]),
        has_wrench=bool(d.get("has_wrench", False)))  # absent from logs written before the sensor


# --------------------------------------------------------------------------- reader


@dataclasses.dataclass(frozen=True)
class CommandRecord:
    """One logged command: what the agent asked for and what reached the arm."""

    t: float
    raw: Command | None
    sent: Command | None
    rejected: str | None
    changes: Any
    origin: str
    report: Any


@dataclasses.dataclass(frozen=True)
class EventRecord:
    t: float
    text: str
    data: dict[str, Any]


class FrameSequence(Sequence[Frame]):
    """One camera's logged frames, decoded only when indexed."""

    def __init__(self, store: Path, camera: str, records: list[Mapping[str, Any]]):
        self.store, self.camera = store, camera
        self._entries = scan_frames(store)
        # A record always follows its frame's flush; drop any that points past the complete frames.
        self._records = [r for r in records if r["index"] < len(self._entries)]
        self.times = [float(r["t"]) for r in self._records]

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i: int) -> Frame:  # type: ignore[override]
        r = self._records[i]
        return Frame(self.camera, int(r["seq"]), float(r["t"]), read_frame_image(self.store, self._entries[r["index"]]))

    def __iter__(self) -> Iterator[Frame]:
        return (self[i] for i in range(len(self)))

    def latest_before(self, t: float) -> Frame | None:
        """The newest frame stamped at or before `t` (for replaying by time)."""
        i = bisect.bisect_right(self.times, t)
        return self[i - 1] if i else None


class EpisodeReader:
    """Reads an episode log, finished or cut off by a crash.

    A last line without its newline that does not parse is a write cut short by a kill: it is
    skipped and `truncated` set. A bad line anywhere else is real damage: CorruptLogError.

    Attributes:
        meta, config, capabilities, schema: from the "meta" record.
        states, commands, faults, events: the typed records, in log order.
        frames: camera name -> FrameSequence (decoded lazily).
        timeline: (type, typed record) for every state/command/fault/event/frame, in log order.
        gap: the emulator's gap dict, or None.
        ends_cleanly: whether the "end" record was written.
        truncated: whether a cut-off last line was skipped.
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        lines = (self.folder / EPISODE_FILE).read_bytes().split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        records = [self._parse(line, n) for n, line in enumerate(lines, 1) if line.strip()]
        self.truncated = False
        if tail.strip():
            try:
                last = json.loads(tail)
                if not isinstance(last, dict):
                    raise ValueError("not an object")
                records.append(last)  # complete but for its newline
            except ValueError:
                self.truncated = True
        if not records or records[0].get("type") != "meta":
            raise CorruptLogError(f"{self.folder / EPISODE_FILE} does not start with a meta record")
        self.meta: dict[str, Any] = records[0]
        self.schema = int(self.meta["schema"])
        if self.schema > SCHEMA_VERSION:
            raise CorruptLogError(f"log schema {self.schema} is newer than this reader ({SCHEMA_VERSION})")
        self.config: dict[str, Any] = self.meta["config"]
        self.capabilities = decode_capabilities(self.meta["capabilities"])
        self.states: list[RobotState] = []
        self.commands: list[CommandRecord] = []
        self.faults: list[Fault] = []
        self.events: list[EventRecord] = []
        self.timeline: list[tuple[str, Any]] = []
        self.gap: dict[str, Any] | None = None
        self.end: dict[str, Any] | None = None
        frame_records: dict[str, list[dict[str, Any]]] = {}
        for r in records[1:]:
            kind = r.get("type")
            if kind == "state":
                self.states.append(decode_state(r))
                self.timeline.append((kind, self.states[-1]))
            elif kind == "command":
                self.commands.append(CommandRecord(
                    float(r["t"]), None if r["raw"] is None else decode_command(r["raw"]),
                    None if r["sent"] is None else decode_command(r["sent"]), r["rejected"], r["changes"],
                    r["origin"], r["report"]))
                self.timeline.append((kind, self.commands[-1]))
            elif kind == "fault":
                self.faults.append(decode_fault(r))
                self.timeline.append((kind, self.faults[-1]))
            elif kind == "event":
                self.events.append(EventRecord(float(r["t"]), r["text"], r["data"]))
                self.timeline.append((kind, self.events[-1]))
            elif kind == "frame":
                frame_records.setdefault(r["camera"], []).append(r)
                self.timeline.append((kind, r))
            elif kind == "gap":
                self.gap = r["gap"]
            elif kind == "end":
                self.end = r
            # other types: written by a newer writer of the same schema; ignored
        self.frames = {cam: FrameSequence(self.folder / f"frames_{cam}.bin", cam, recs)
                       for cam, recs in frame_records.items()}

    @property
    def ends_cleanly(self) -> bool:
        return self.end is not None

    def video_path(self, camera: str) -> Path:
        return self.folder / f"{camera}.mp4"

    def _parse(self, line: bytes, n: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except ValueError as e:
            raise CorruptLogError(f"{self.folder / EPISODE_FILE}:{n} is not JSON ({e}) and is not the last line") from e
        if not isinstance(record, dict):
            raise CorruptLogError(f"{self.folder / EPISODE_FILE}:{n} is not a JSON object")
        return record


# --------------------------------------------------------------------------- playback


class EndOfLog(RuntimeError):
    """Every logged state has been served: the replayed episode is over."""


def commands_equal(a: Command, b: Command) -> bool:
    """Bit-exact equality (Command's own == cannot compare arrays): mode, target bytes and dtype, grip, t."""
    ta, tb = np.asarray(a.target), np.asarray(b.target)
    return (a.mode is b.mode and ta.dtype == tb.dtype and ta.shape == tb.shape and ta.tobytes() == tb.tobytes()
            and float(a.grip).hex() == float(b.grip).hex() and float(a.t).hex() == float(b.t).hex())


class ReplayBackend(RobotBackend):
    """Plays a logged episode: states in log order (or by time), and keeps every command sent.

    It has no kinematic model: `forward_kinematics` knows only the logged (joints -> TCP)
    pairs of the states and refuses anything else, so a safety layer in front of it must not
    be trusted for workspace checks.
    """

    def __init__(self, reader: EpisodeReader):
        self._caps = reader.capabilities
        self._states = list(reader.states)
        self._times = [s.t for s in self._states]
        self._fk = {np.asarray(s.joint_positions, dtype=float).tobytes(): s.tcp_position for s in self._states}
        self._next = 0
        self._current: RobotState | None = None
        self._connected = False
        self._sent: list[Command] = []
        self.stop_calls = 0
        self.clear_calls = 0

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def remaining(self) -> int:
        """Logged states not yet served by `read_state`."""
        return len(self._states) - self._next

    def read_state(self) -> RobotState:
        """The next logged state; EndOfLog after the last."""
        self._require_connected()
        if self._next >= len(self._states):
            raise EndOfLog(f"all {len(self._states)} logged states have been served")
        self._current = self._states[self._next]
        self._next += 1
        return self._current

    def state_at(self, t: float) -> RobotState:
        """The newest logged state measured at or before `t` (replaying by time); also moves the cursor."""
        self._require_connected()
        i = bisect.bisect_right(self._times, t)
        if i == 0:
            raise ValueError(f"no state logged at or before t={t}")
        self._current, self._next = self._states[i - 1], i
        return self._current

    def send(self, command: Command) -> None:
        """Keep a copy of the command (the caller may reuse its array)."""
        self._require_connected()
        self._sent.append(dataclasses.replace(command, target=np.array(command.target, copy=True)))

    def sent_commands(self) -> tuple[Command, ...]:
        return tuple(self._sent)

    def stop(self) -> None:
        self.stop_calls += 1

    def faults(self) -> tuple[Fault, ...]:
        """The faults the arm reported in the state served last."""
        return () if self._current is None else self._current.faults

    def clear_faults(self) -> None:
        self.clear_calls += 1

    def forward_kinematics(self, joint_positions: np.ndarray) -> np.ndarray:
        """The logged TCP for exactly these logged joints; anything else is unknown to a log."""
        key = np.asarray(joint_positions, dtype=float).tobytes()
        if key not in self._fk:
            raise NotImplementedError(
                "ReplayBackend has no kinematic model: it knows the TCP only at logged joint positions, "
                f"and {np.asarray(joint_positions).tolist()} is not one; use the emulator or the arm's own FK")
        return self._fk[key].copy()

    def _require_connected(self) -> None:
        if not self._connected:
            raise NotConnectedError("replay backend is not connected")


def replay(reader: EpisodeReader, backend: ReplayBackend | None = None) -> ReplayBackend:
    """Drive a ReplayBackend through the log as the driver did: read each state, re-send each sent command.

    Returns:
        The backend; its `sent_commands()` equal (bit-exactly) every logged command that was sent.
    """
    backend = backend or ReplayBackend(reader)
    backend.connect()
    for kind, record in reader.timeline:
        if kind == "state":
            backend.read_state()
        elif kind == "command" and record.sent is not None:
            backend.send(record.sent)
    return backend
