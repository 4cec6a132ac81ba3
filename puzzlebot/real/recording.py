"""Episode recording: an append-only, crash-safe log of one run on an arm (emulator or hardware).

Why this shape: a run on hardware can end at any instant (kill -9, a cable, a power cut), and
what happened before that instant is exactly what a post-mortem needs. So nothing is ever
rewritten in place:

- ``episode.jsonl`` holds one JSON object per line, each line written with one call and
  flushed at once (a killed process loses nothing it had written; an ``fsync`` every
  ``fsync_every`` records, on every fault and on close bounds what a power cut can lose).
  Python's ``json`` writes floats with ``repr``, so every float round-trips bit-exactly
  (``NaN``/``Infinity`` are written as such: raw commands may carry them).
- ``frames_<camera>.bin`` holds the camera's JPEG frames, each behind a fixed header with its
  length and CRC32, flushed per frame; a frame cut short by a kill is detected and skipped.
  A frame's bytes are flushed before its "frame" record, so a record never points at nothing.
- ``<camera>.mp4`` is written from those at ``close()``, to a temporary file then renamed.

Record types (field ``type``): meta, state, command, fault, frame, event, gap, end; see
`EpisodeWriter`. Reading and playing back live in `puzzlebot.real.replay` (`EpisodeReader`,
`ReplayBackend`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from puzzlebot.real.interface import Capabilities, Command, ControlMode, Fault, Frame, RobotState

SCHEMA_VERSION = 1
EPISODE_FILE = "episode.jsonl"
#: Per-frame header in ``frames_<camera>.bin``: payload length, CRC32 of the payload, seq, t.
FRAME_HEADER = struct.Struct("<IIqd")


class CorruptLogError(RuntimeError):
    """The log is damaged somewhere a crash cannot have damaged it (not just a cut-off tail)."""


# --------------------------------------------------------------------------- encoding


def _jsonable(obj: Any) -> Any:
    """`json.dumps` fallback: arrays as (nested) lists, enums by value, dataclasses as dicts."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()  # Python floats carry float32/float64 values exactly
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot record {type(obj).__name__}: convert it to JSON-able data first")


def encode_command(command: Command) -> dict[str, Any]:
    """A command as a record field; the target's dtype is kept so decoding is bit-exact."""
    target = np.asarray(command.target)
    return {"mode": ControlMode(command.mode).value, "target": target, "dtype": target.dtype.str,
            "grip": command.grip, "t": command.t}


def encode_fault(fault: Fault) -> dict[str, Any]:
    return {"kind": fault.kind.value, "message": fault.message, "vendor_code": fault.vendor_code, "t": fault.t}


def _fsync_dir(folder: Path) -> None:
    """Make a new or renamed directory entry durable (POSIX only; a no-op elsewhere)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_camera_name(camera: str) -> str:
    """Camera names become file names: keep them to letters, digits, '-' and '_'."""
    if not camera or not all(c.isascii() and (c.isalnum() or c in "-_") for c in camera):
        raise ValueError(f"camera name {camera!r} must be non-empty ASCII letters, digits, '-' or '_'")
    return camera


# --------------------------------------------------------------------------- frames store


@dataclasses.dataclass(frozen=True)
class FrameEntry:
    """Where one complete frame sits in ``frames_<camera>.bin``."""

    offset: int  # of the payload
    length: int
    crc: int
    seq: int
    t: float


def scan_frames(path: Path) -> list[FrameEntry]:
    """Index the complete frames of a store, stopping at a tail cut short (or zeroed) by a crash.

    Only headers are read, plus the last payload's CRC (the one place a crash can leave garbage).
    """
    entries: list[FrameEntry] = []
    if not path.exists():
        return entries
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + FRAME_HEADER.size <= size:
            f.seek(pos)
            length, crc, seq, t = FRAME_HEADER.unpack(f.read(FRAME_HEADER.size))
            start = pos + FRAME_HEADER.size
            if length == 0 or start + length > size:
                break
            entries.append(FrameEntry(start, length, crc, seq, t))
            pos = start + length
        if entries:
            last = entries[-1]
            f.seek(last.offset)
            if zlib.crc32(f.read(last.length)) != last.crc:
                entries.pop()
    return entries


def read_frame_image(path: Path, entry: FrameEntry) -> np.ndarray:
    """Decode one stored frame to HxWx3 uint8 RGB."""
    with open(path, "rb") as f:
        f.seek(entry.offset)
        payload = f.read(entry.length)
    if zlib.crc32(payload) != entry.crc:
        raise CorruptLogError(f"{path.name}: frame seq {entry.seq} fails its CRC")
    bgr = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CorruptLogError(f"{path.name}: frame seq {entry.seq} is not a decodable JPEG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_video(store: Path, out: Path, fps: float | None = None) -> int:
    """Write a store's frames to an mp4 (mp4v) atomically; returns the frame count.

    Args:
        store: a ``frames_<camera>.bin`` file.
        out: the ``.mp4`` to create; written to a temporary name first, then renamed.
        fps: frame rate; None estimates it from the frames' timestamps (25 if it cannot).
    """
    entries = scan_frames(store)
    if not entries:
        return 0
    if fps is None:
        span = entries[-1].t - entries[0].t
        fps = (len(entries) - 1) / span if len(entries) > 1 and span > 0 else 25.0
    first = read_frame_image(store, entries[0])
    height, width = first.shape[:2]
    tmp = out.with_name(f".{out.stem}.tmp.mp4")  # VideoWriter picks the container from the suffix
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot open an mp4v writer for {tmp}")
    try:
        for entry in entries:
            rgb = read_frame_image(store, entry)
            if rgb.shape[:2] != (height, width):  # a video has one size: resize the odd frame
                rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out)
    _fsync_dir(out.parent)
    return len(entries)


class _FrameStore:
    """One camera's append-only JPEG store."""

    def __init__(self, path: Path, jpeg_quality: int):
        self.path = path
        self._file = open(path, "xb")
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        self.count = 0

    def append(self, frame: Frame) -> int:
        """Encode and append a frame (header and payload in one write), flush; returns its index."""
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(np.asarray(frame.image), cv2.COLOR_RGB2BGR), self._params)
        if not ok:
            raise ValueError(f"camera {frame.image.shape} image could not be JPEG-encoded")
        payload = jpeg.tobytes()
        self._file.write(FRAME_HEADER.pack(len(payload), zlib.crc32(payload), frame.seq, frame.t) + payload)
        self._file.flush()
        self.count += 1
        return self.count - 1

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self.sync()
            self._file.close()


# --------------------------------------------------------------------------- writer


class EpisodeWriter:
    """Writes one episode's log into `folder`; satisfies the driver's `Recorder` protocol.

    Records (one JSON object per line, field ``type``):
        meta: ``schema``, ``t`` (monotonic), ``wall_time``, ``config``, ``capabilities``.
        state: every `RobotState` field (faults as fault dicts); ``wrench`` only when measured.
        command: ``t``, ``origin`` ("agent", or the driver's own, e.g. "watchdog"), ``raw`` and
            ``sent`` (each a command dict with its own ``t``, or null), ``rejected`` (the reason
            or null), ``changes`` (what the safety layer changed) and ``report`` (the full report).
        fault: ``kind``, ``message``, ``vendor_code``, ``t``.
        frame: ``camera``, ``seq``, ``t``, ``index`` (into ``frames_<camera>.bin``).
        event: ``t``, ``text``, ``data``.
        gap: the emulator's drawn gap (only given at close).
        end: ``t``, ``counts`` per type, ``videos`` (frames written per camera's mp4).

    Args:
        folder: the run folder; created if needed. One episode per folder: an existing log is
            never appended to (FileExistsError).
        config: the run's config, recorded in "meta".
        capabilities: the backend's capabilities, recorded in "meta" (replay rebuilds them).
        fsync_every: records between fsyncs; faults and close always fsync.
        jpeg_quality: JPEG quality of stored camera frames.
        video_fps: frame rate of the mp4s; None estimates it from the frame timestamps.
        clock: the monotonic clock stamping records that carry no time of their own.
    """

    def __init__(self, folder: str | os.PathLike[str], config: Mapping[str, Any], capabilities: Capabilities, *,
                 fsync_every: int = 50, jpeg_quality: int = 90, video_fps: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if fsync_every < 1:
            raise ValueError("fsync_every must be >= 1")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log = open(self.folder / EPISODE_FILE, "xb")
        _fsync_dir(self.folder)
        self._fsync_every, self._jpeg_quality, self._video_fps = fsync_every, jpeg_quality, video_fps
        self._clock = clock
        self._lock = threading.Lock()  # the control loop and camera threads may log at once
        self._stores: dict[str, _FrameStore] = {}
        self._counts: Counter[str] = Counter()
        self._unsynced = 0
        self._closing = False  # set by close(): no frames after the stores are closed
        self.closed = False
        try:
            self._write({"type": "meta", "schema": SCHEMA_VERSION, "t": clock(), "wall_time": time.time(),
                         "config": config, "capabilities": capabilities}, sync=True)
        except TypeError:  # an unrecordable config: leave no empty log claiming the folder
            self._log.close()
            (self.folder / EPISODE_FILE).unlink()
            raise

    # -- the Recorder protocol

    def log_state(self, state: RobotState) -> None:
        """Record one measurement of the arm (its wrench only when it has one: older logs read alike)."""
        d = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
        d["faults"] = [encode_fault(f) for f in state.faults]
        if state.wrench is None:
            del d["wrench"]
        self._write({"type": "state", **d})

    def log_command(self, raw: Command, report: Any) -> None:
        """Record the agent's raw command and what the safety layer made of it.

        Args:
            raw: the command as the agent issued it.
            report: the safety layer's `SafetyReport`: ``sent`` (the command actually sent, None
                if rejected), ``reason`` and ``changes``; recorded whole as well.
        """
        reason = getattr(report, "reason", None)
        self.record_command(raw, getattr(report, "sent", None), rejected=reason if isinstance(reason, str) else None,
                            changes=getattr(report, "changes", ()), report=report)

    def log_fault(self, fault: Fault) -> None:
        """Record a fault and fsync at once: faults are what a post-mortem looks for first."""
        self._write({"type": "fault", **encode_fault(fault)}, sync=True)

    def log_event(self, text: str, **data: object) -> None:
        """Record a free-text event (connect, disconnect, estop, clear, ...) with optional data."""
        self._write({"type": "event", "t": self._clock(), "text": text, "data": data})

    # -- beyond the protocol

    def record_command(self, raw: Command | None, sent: Command | None, *, rejected: str | None = None,
                       changes: Any = (), report: Any = None, origin: str = "agent") -> None:
        """Record a command pair; `raw` is None for commands the driver issues itself (holds)."""
        if sent is None and not rejected:
            rejected = "not sent (no reason given)"
        self._write({"type": "command", "t": self._clock(), "origin": origin,
                     "raw": None if raw is None else encode_command(raw),
                     "sent": None if sent is None else encode_command(sent),
                     "rejected": rejected if sent is None else None, "changes": changes,
                     "report": _report_without_commands(report)})

    def log_sent(self, command: Command, origin: str) -> None:
        """Record a command the driver sent on its own (e.g. the watchdog's hold), so replay sees it."""
        self.record_command(None, command, origin=origin)

    def log_frame(self, frame: Frame) -> int:
        """Store a camera frame (flushed before its record is written); returns its index in the store."""
        camera = _check_camera_name(frame.camera)
        with self._lock:
            self._check_open()
            if self._closing:
                raise RuntimeError(f"episode log in {self.folder} is closing: no more frames")
            store = self._stores.get(camera)
            if store is None:
                store = self._stores[camera] = _FrameStore(self.folder / f"frames_{camera}.bin", self._jpeg_quality)
            index = store.append(frame)
        self._write({"type": "frame", "camera": camera, "seq": frame.seq, "t": frame.t, "index": index})
        return index

    def close(self, gap: Mapping[str, Any] | None = None) -> None:
        """Finish the episode: the gap (if given), the videos, then "end"; idempotent."""
        if self.closed:
            return
        if gap is not None:
            self._write({"type": "gap", "gap": gap})
        with self._lock:
            self._closing = True
            for store in self._stores.values():
                store.close()
        videos: dict[str, int] = {}
        for camera, store in self._stores.items():
            try:
                videos[camera] = write_video(store.path, self.folder / f"{camera}.mp4", self._video_fps)
            except (OSError, cv2.error) as e:  # the frames stay in the store; the log says why
                self.log_event("video_failed", camera=camera, error=str(e))
        self._write({"type": "end", "t": self._clock(), "counts": dict(self._counts), "videos": videos}, sync=True)
        with self._lock:
            self._log.close()
            self.closed = True
        _fsync_dir(self.folder)

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and not self.closed:
            self.log_event("exception", type=exc_type.__name__ if exc_type else "", message=str(exc))
        self.close()

    # -- internals

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"episode log in {self.folder} is closed")

    def _write(self, record: dict[str, Any], sync: bool = False) -> None:
        """Serialise first (a bad record must not leave half a line), then one write + flush."""
        line = json.dumps(record, default=_jsonable, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            self._check_open()
            self._log.write(line)
            self._log.flush()
            self._counts[record["type"]] += 1
            self._unsynced += 1
            if sync or self._unsynced >= self._fsync_every:
                if not self._closing:  # frames first: records never outlive their frames
                    for store in self._stores.values():
                        store.sync()
                os.fsync(self._log.fileno())
                self._unsynced = 0


def _report_without_commands(report: Any) -> Any:
    """The safety report as a dict, less its commands (they are stored once, as raw/sent)."""
    if report is None or not (dataclasses.is_dataclass(report) and not isinstance(report, type)):
        return report
    fields = ((f.name, getattr(report, f.name)) for f in dataclasses.fields(report))
    return {name: value for name, value in fields if not isinstance(value, Command)}
