"""What the arm backends share: lazy vendor imports, kinematics, fault latching, and the
connect / read / send / stop / clear skeleton around three vendor-specific hooks.

Each vendor file (`ur.py`, `xarm.py`, `so101.py`) only says how to open its link, sample the
arm, command it, stop it and recover it, and maps the vendor's codes onto `FaultKind`. This
module turns that into the `RobotBackend` contract the same way for all of them:

  * joint readings get the calibration's zero offsets added (commands get them subtracted);
  * `seq` and `t` are stamped here with `time.monotonic()` right after the vendor read returns;
  * latching faults (`interface.LATCHING`) stay reported until `clear_faults()` has run the
    vendor's recovery and the vendor no longer reports them; others are reported while active;
  * a lost link latches DISCONNECTED, and `read_state`/`send` raise `NotConnectedError`;
  * a failed read below `max_comm_failures` in a row is a COMMS fault, and the previous
    measurement is returned again unchanged (same `seq` and `t`, so its age shows).
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import numpy as np

from puzzlebot.real.calibration import RobotCalibration
from puzzlebot.real.interface import (
    LATCHING,
    Capabilities,
    Command,
    ControlMode,
    Fault,
    FaultKind,
    NotConnectedError,
    RobotBackend,
    RobotState,
)
from puzzlebot.sim.robots.base import Mount

SdkFactory = Callable[[], Any]
"""Returns the vendor SDK surface a backend uses (the real modules, or a mock from tests/mocks)."""


# ---------------------------------------------------------------------------- vendor imports
def import_vendor(module: str, extra: str, distribution: str) -> ModuleType:
    """Import a vendor SDK module, or fail with the install command that provides it.

    Args:
        module: importable name, e.g. "rtde_control".
        extra: the puzzlebot install extra that pulls it in, e.g. "ur".
        distribution: the PyPI distribution that ships `module`, e.g. "ur-rtde".
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"the {extra!r} arm backend needs the {module!r} module from {distribution!r}: "
                          f"pip install 'puzzlebot[{extra}]'") from err


class LinkLost(Exception):
    """Raised by a vendor hook: the link to the arm is gone (socket closed, port unplugged)."""

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


class CommsGlitch(Exception):
    """Raised by a vendor hook: one exchange failed (timeout, rejected packet) but the link is up."""

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------- kinematics
def translation(x: float, y: float, z: float) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = (x, y, z)
    return out


def rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = np.eye(4)
    out[1:3, 1:3] = ((c, -s), (s, c))
    return out


def rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = np.eye(4)
    out[0, 0], out[0, 2], out[2, 0], out[2, 2] = c, s, -s, c
    return out


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = np.eye(4)
    out[:2, :2] = ((c, -s), (s, c))
    return out


def dh_standard(theta: float, d: float, a: float, alpha: float) -> np.ndarray:
    """Standard (distal) Denavit-Hartenberg link transform: Rz(theta) Tz(d) Tx(a) Rx(alpha)."""
    return rot_z(theta) @ translation(0.0, 0.0, d) @ translation(a, 0.0, 0.0) @ rot_x(alpha)


def dh_modified(alpha_prev: float, a_prev: float, theta: float, d: float) -> np.ndarray:
    """Modified (Craig, proximal) DH link transform: Rx(alpha_{i-1}) Tx(a_{i-1}) Rz(theta) Tz(d)."""
    return rot_x(alpha_prev) @ translation(a_prev, 0.0, 0.0) @ rot_z(theta) @ translation(0.0, 0.0, d)


def urdf_origin(xyz: tuple[float, float, float], rpy: tuple[float, float, float]) -> np.ndarray:
    """A URDF `<origin xyz rpy>`: fixed-axis roll, pitch, yaw, i.e. R = Rz(yaw) Ry(pitch) Rx(roll)."""
    return translation(*xyz) @ rot_z(rpy[2]) @ rot_y(rpy[1]) @ rot_x(rpy[0])


def mount_transform(mount: Mount) -> np.ndarray:
    """Arm base in the world (puzzle table) frame, with the sim's `Mount` convention."""
    return translation(*mount.pos) @ rot_z(mount.yaw)


def quat_wxyz(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a 3x3 rotation matrix (Shepperd's method)."""
    m = np.asarray(rotation, dtype=float)[:3, :3]
    trace = np.trace(m)
    if trace > 0.0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = np.array([0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s])
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = np.array([(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s])
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = np.array([(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s])
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = np.array([(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return -q if q[0] < 0.0 else q


# ---------------------------------------------------------------------------- faults
def _key(fault: Fault) -> tuple:
    return fault.kind, fault.vendor_code, fault.message


class FaultBook:
    """Active faults of one backend: latching kinds stay until acknowledged, others while reported."""

    def __init__(self) -> None:
        self._latched: dict[tuple, Fault] = {}
        self._transient: dict[str, dict[tuple, Fault]] = {}

    def update(self, source: str, faults: Iterable[Fault]) -> None:
        """Record what `source` reports now: latching faults latch, the rest replace `source`'s last report."""
        previous = self._transient.get(source, {})
        current: dict[tuple, Fault] = {}
        for fault in faults:
            if fault.kind in LATCHING:
                self._latched.setdefault(_key(fault), fault)  # keep the time it was first seen
            else:
                current[_key(fault)] = previous.get(_key(fault), fault)
        self._transient[source] = current

    def acknowledge(self, still_active: Iterable[Fault]) -> None:
        """Drop latched faults the vendor no longer reports (call after the vendor's recovery)."""
        keep = {_key(f) for f in still_active}
        self._latched = {k: f for k, f in self._latched.items() if k in keep}

    def active(self) -> tuple[Fault, ...]:
        merged = dict(self._latched)
        for faults in self._transient.values():
            for key, fault in faults.items():
                merged.setdefault(key, fault)
        return tuple(merged.values())

    def clear_transient(self) -> None:
        """Forget non-latching reports (they described a link that is gone)."""
        self._transient.clear()

    def reset(self) -> None:
        self._latched.clear()
        self._transient.clear()


@dataclasses.dataclass
class Sample:
    """One vendor reading, in the vendor's joint zero (before calibration offsets)."""

    joint_positions: np.ndarray
    joint_velocities: np.ndarray
    grip: float
    faults: list[Fault]


# ---------------------------------------------------------------------------- the skeleton
class VendorArm(RobotBackend):
    """A `RobotBackend` over a vendor SDK; subclasses fill in the hooks below.

    Args:
        config: the arm's frozen config dataclass (needs `name`, `mount`, `calibration_path`,
            `max_comm_failures` and whatever the subclass reads).
        sdk_factory: returns the vendor SDK surface; None imports the real SDK lazily in
            `connect()`. Tests pass a mock's `sdk` method here.
    """

    def __init__(self, config: Any, sdk_factory: SdkFactory | None = None) -> None:
        self.config = config
        self._sdk_factory = sdk_factory
        self._capabilities = self._make_capabilities()
        self._connected = False
        self._seq = 0
        self._last: RobotState | None = None
        self._failed_reads = 0
        self._book = FaultBook()
        self._base = mount_transform(config.mount)
        self._tcp = np.eye(4)
        self._offsets = np.zeros(self._capabilities.dof)
        self._calibration: RobotCalibration | None = None
        if config.calibration_path:
            self._calibration = RobotCalibration.load(config.calibration_path)
            if self._calibration.joint_offsets:
                self._offsets = np.asarray(self._calibration.joint_offsets, dtype=float)
            self._tcp = translation(*self._calibration.tcp_offset)

    # ------------------------------------------------------------------ vendor hooks
    @abc.abstractmethod
    def _make_capabilities(self) -> Capabilities: ...

    @abc.abstractmethod
    def _load_sdk(self) -> Any:
        """Import the real vendor SDK (through `import_vendor`) and return its surface."""

    @abc.abstractmethod
    def _open(self, sdk: Any) -> None:
        """Open the link and make the arm ready to follow streamed targets; ConnectionError if not."""

    @abc.abstractmethod
    def _release(self, lost: bool = False) -> None:
        """Close the link; must not raise. `lost`: the link broke (a backend may keep handles to reconnect)."""

    @abc.abstractmethod
    def _sample(self) -> Sample:
        """Read joints, grip and the vendor's active faults; LinkLost / CommsGlitch on failure."""

    @abc.abstractmethod
    def _poll_faults(self) -> list[Fault]:
        """The vendor's active faults now; LinkLost / CommsGlitch on failure."""

    @abc.abstractmethod
    def _command(self, joint_positions: np.ndarray, grip: float) -> None:
        """Stream one joint target (vendor zero, rad) and grip closure; LinkLost / CommsGlitch."""

    @abc.abstractmethod
    def _halt(self) -> None:
        """The vendor's stop: hold the arm where it is."""

    @abc.abstractmethod
    def _recover(self) -> None:
        """The vendor's own fault recovery (acknowledge, re-enable)."""

    @abc.abstractmethod
    def _flange(self, joint_positions: np.ndarray) -> np.ndarray:
        """4x4 flange (tool mount) pose in the arm's base frame, from the maker's kinematics."""

    def _link_alive(self) -> bool:
        """A cheap local check that the link is still up (no bus traffic)."""
        return True

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """The IP address or serial port of the arm (what a calibration file pins)."""

    # ------------------------------------------------------------------ RobotBackend
    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def is_connected(self) -> bool:
        if self._connected and not self._link_alive():
            self._lose_link(LinkLost("the vendor SDK reports the link as down"))
        return self._connected

    def connect(self) -> None:
        """Open the link; a calibration that does not match this arm refuses before anything is enabled."""
        if self._connected:
            return
        if self._calibration is not None:
            self._calibration.verify(self._capabilities, self.address)
        sdk = self._sdk_factory() if self._sdk_factory is not None else self._load_sdk()
        self._open(sdk)
        self._connected = True
        self._failed_reads = 0
        self._seq = 0
        try:
            sample = self._sample()
        except (LinkLost, CommsGlitch) as err:
            self._connected = False
            self._release()
            raise ConnectionError(f"{self._capabilities.name} at {self.address}: first read failed: {err}") from err
        self._last = self._stamp(sample)

    def disconnect(self) -> None:
        """Close the link on purpose: not a fault, so nothing stays latched."""
        try:
            self._release()
        finally:
            self._connected = False
            self._last = None
            self._book.reset()

    def read_state(self) -> RobotState:
        self._require_connected()
        try:
            sample = self._sample()
        except LinkLost as err:
            raise self._lose_link(err) from err
        except CommsGlitch as err:
            self._failed_reads += 1
            if self._failed_reads >= self.config.max_comm_failures:
                lost = LinkLost(f"{self._failed_reads} failed reads in a row, last: {err}", err.code)
                raise self._lose_link(lost) from err
            self._book.update("read", [Fault(FaultKind.COMMS, f"read failed ({self._failed_reads} in a row): "
                                             f"{err}; returning the previous measurement", time.monotonic(),
                                             err.code)])
            assert self._last is not None  # connect() always leaves a measurement
            return dataclasses.replace(self._last, faults=self._book.active())
        self._failed_reads = 0
        self._book.update("read", ())
        self._last = self._stamp(sample)
        return self._last

    def send(self, command: Command) -> None:
        self._require_connected()
        if command.mode is not ControlMode.JOINT:
            raise ValueError(f"{self._capabilities.name}: only {ControlMode.JOINT.value!r} commands are supported, "
                             f"got {command.mode.value!r}")
        target = np.asarray(command.target, dtype=float)
        if target.shape != (self._capabilities.dof,):
            raise ValueError(f"{self._capabilities.name}: joint target shape {target.shape}, "
                             f"need ({self._capabilities.dof},)")
        try:
            self._command(target - self._offsets, float(command.grip))
        except LinkLost as err:
            raise self._lose_link(err) from err
        except CommsGlitch as err:
            self._book.update("send", [Fault(FaultKind.COMMS, f"command not taken: {err}", time.monotonic(),
                                             err.code)])
            return
        self._book.update("send", ())

    def stop(self) -> None:
        """Hold the arm; a no-op when not connected, and a lost link while stopping is recorded, not raised."""
        if not self._connected:
            return
        try:
            self._halt()
        except LinkLost as err:
            self._lose_link(err)
        except CommsGlitch as err:
            raise RuntimeError(f"{self._capabilities.name}: stop was not delivered: {err}") from err

    def faults(self) -> tuple[Fault, ...]:
        if self._connected:
            try:
                self._book.update("vendor", self._poll_faults())
            except LinkLost as err:
                self._lose_link(err)
            except CommsGlitch as err:
                self._book.update("vendor", [Fault(FaultKind.COMMS, f"fault poll failed: {err}", time.monotonic(),
                                                   err.code)])
        return self._book.active()

    def clear_faults(self) -> None:
        """Run the vendor's recovery, then forget latched faults the vendor no longer reports."""
        self._require_connected()
        try:
            self._recover()
            still = self._poll_faults()
        except LinkLost as err:
            raise self._lose_link(err) from err
        except CommsGlitch as err:
            raise RuntimeError(f"{self._capabilities.name}: recovery failed: {err}") from err
        self._book.acknowledge(still)
        for source in ("read", "send", "state"):
            self._book.update(source, ())
        self._book.update("vendor", still)
        self._failed_reads = 0

    def forward_kinematics(self, joint_positions: np.ndarray) -> np.ndarray:
        return self.tcp_pose_matrix(joint_positions)[:3, 3].copy()

    # ------------------------------------------------------------------ helpers
    def tcp_pose_matrix(self, joint_positions: np.ndarray) -> np.ndarray:
        """4x4 TCP pose in the world frame: mount @ flange(q) @ calibration's TCP offset."""
        q = np.asarray(joint_positions, dtype=float)
        if q.shape != (self._capabilities.dof,):
            raise ValueError(f"{self._capabilities.name}: joint vector shape {q.shape}, "
                             f"need ({self._capabilities.dof},)")
        return self._base @ self._flange(q) @ self._tcp

    def _stamp(self, sample: Sample) -> RobotState:
        t = time.monotonic()
        self._book.update("state", sample.faults)
        q = np.asarray(sample.joint_positions, dtype=float) + self._offsets
        pose = self.tcp_pose_matrix(q)
        self._seq += 1
        return RobotState(seq=self._seq, t=t, joint_positions=q,
                          joint_velocities=np.asarray(sample.joint_velocities, dtype=float),
                          tcp_position=pose[:3, 3].copy(), tcp_quaternion=quat_wxyz(pose[:3, :3]),
                          grip=float(sample.grip), faults=self._book.active())

    def _lose_link(self, err: LinkLost) -> NotConnectedError:
        """Latch DISCONNECTED, close what is left of the link; returns the error for callers to raise."""
        self._book.clear_transient()
        self._book.update("link", [Fault(FaultKind.DISCONNECTED, f"lost the link to {self.address}: {err}",
                                         time.monotonic(), err.code)])
        self._connected = False
        self._release(lost=True)
        return NotConnectedError(f"{self._capabilities.name} at {self.address}: {err}")

    def _require_connected(self) -> None:
        if not self._connected:
            raise NotConnectedError(f"{self._capabilities.name} at {self.address} is not connected: call connect()")

    def __enter__(self) -> VendorArm:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            self.disconnect()
