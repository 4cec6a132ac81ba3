"""The one interface every arm and camera backend speaks: the reality emulator and real arms alike.

Keys and units match the simulated env (`puzzlebot.sim.env`), so a policy moves between
simulation, the emulator and hardware unchanged: joint positions in rad, TCP position in m
(world frame of the puzzle table), TCP orientation as a wxyz quaternion, grip closure in
[0, 1] (0 open). Timestamps are `time.monotonic()` seconds of the process that reads them.
A wrist force/torque sensor, where an arm has one (the sim env has none), reads N and N·m in
the same world frame.

Backends are thin: they never clip, check or retry. Everything they are sent has passed the
`SafetyLayer` (`puzzlebot.real.safety`); the `Driver` (`puzzlebot.real.driver`) owns both.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field

import numpy as np


class FaultKind(enum.Enum):
    """What went wrong, in one vocabulary for every vendor (vendor codes are kept alongside)."""

    DISCONNECTED = "disconnected"
    PROTECTIVE_STOP = "protective_stop"
    EMERGENCY_STOP = "emergency_stop"
    JOINT_LIMIT = "joint_limit"
    SENSOR_INVALID = "sensor_invalid"  # NaN/Inf or out-of-range readings
    COMMS = "comms"  # dropped or late packets beyond what the backend tolerates
    WATCHDOG = "watchdog"  # no command arrived in time: the arm was held
    VENDOR = "vendor"  # a vendor error without a closer match


#: Faults that halt everything until cleared explicitly (never automatically).
LATCHING = frozenset({FaultKind.PROTECTIVE_STOP, FaultKind.EMERGENCY_STOP, FaultKind.DISCONNECTED,
                      FaultKind.SENSOR_INVALID, FaultKind.JOINT_LIMIT, FaultKind.VENDOR})


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    message: str
    t: float
    vendor_code: int | str | None = None


class ControlMode(enum.Enum):
    JOINT = "joint"  # absolute joint position targets, rad
    EE = "ee"  # absolute TCP pose targets: position (3) + wxyz quaternion (4)


@dataclass(frozen=True)
class Capabilities:
    """What a backend offers; known before `connect()` (from its config), like LeRobot's features."""

    name: str
    joint_names: tuple[str, ...]
    joint_lower: np.ndarray  # rad, hard limits of the arm
    joint_upper: np.ndarray
    max_joint_velocity: np.ndarray  # rad/s
    max_joint_acceleration: np.ndarray  # rad/s^2
    control_modes: tuple[ControlMode, ...] = (ControlMode.JOINT,)
    control_hz: float = 25.0  # the rate the backend expects commands at
    has_gripper: bool = True
    has_wrench: bool = False  # a wrist force/torque sensor fills `RobotState.wrench`

    @property
    def dof(self) -> int:
        return len(self.joint_names)


@dataclass(frozen=True)
class RobotState:
    """One measurement of the arm."""

    seq: int  # strictly increasing per connection
    t: float  # monotonic time of the measurement
    joint_positions: np.ndarray
    joint_velocities: np.ndarray
    tcp_position: np.ndarray
    tcp_quaternion: np.ndarray
    grip: float
    faults: tuple[Fault, ...] = ()
    wrench: np.ndarray | None = None
    """Wrist force/torque sensor (when `Capabilities.has_wrench`), shape (6,): force (N, xyz) then
    torque (N·m, xyz, about the TCP), world frame, exerted by the environment ON the hand; tared
    (the hand's own weight and inertia are not in it). None for an arm without one."""

    def proprio(self) -> np.ndarray:
        """The env's "proprio" observation: TCP pos (3), quat (4), grip (1), joint pos, joint vel."""
        return np.concatenate([self.tcp_position, self.tcp_quaternion, [self.grip], self.joint_positions,
                               self.joint_velocities]).astype(np.float32)


@dataclass(frozen=True)
class Command:
    """A target for the arm: joint positions (JOINT) or a TCP pose (EE), plus the grip."""

    mode: ControlMode
    target: np.ndarray
    grip: float = 0.0
    t: float = 0.0  # monotonic time the command was issued


@dataclass(frozen=True)
class CameraIntrinsics:
    width: int
    height: int
    matrix: np.ndarray  # 3x3 pinhole K
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(5))


@dataclass(frozen=True)
class Frame:
    camera: str
    seq: int
    t: float  # monotonic time of exposure as reported by the backend
    image: np.ndarray  # HxWx3 uint8 RGB


class NotConnectedError(RuntimeError):
    """A call that needs a connection was made on a disconnected backend or driver."""


class StaleFrameError(RuntimeError):
    """The newest camera frame is older than the caller allows: never reuse it silently."""


class RobotBackend(abc.ABC):
    """An arm: the reality emulator, a vendor SDK, or a replayed log."""

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    def read_state(self) -> RobotState:
        """The newest measurement; raises NotConnectedError when not connected."""

    def read_new_states(self, block: bool = False) -> list[RobotState]:
        """Every measurement since the last read, oldest first.

        A backend that measures faster than it is read overrides this, so that a reader can tell
        readings it skipped (not lost) from readings that never arrived (gaps in `seq`). This
        default serves one reading per call, as `read_state` does.
        """
        return [self.read_state()]

    @abc.abstractmethod
    def send(self, command: Command) -> None:
        """Forward an already safety-checked command to the arm."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Bring the arm to rest now (hold position); must work from any state."""

    @abc.abstractmethod
    def faults(self) -> tuple[Fault, ...]:
        """Active faults reported by the arm."""

    @abc.abstractmethod
    def clear_faults(self) -> None:
        """Acknowledge faults on the arm (only called by the driver on an explicit request)."""

    @abc.abstractmethod
    def forward_kinematics(self, joint_positions: np.ndarray) -> np.ndarray:
        """TCP position (3,) for joint positions: used by the safety layer's workspace check."""


class CameraBackend(abc.ABC):
    """A camera: the emulator's renderer, a USB camera through OpenCV, or a replayed log."""

    name: str

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    @property
    @abc.abstractmethod
    def intrinsics(self) -> CameraIntrinsics: ...

    @abc.abstractmethod
    def read_latest(self, max_age: float) -> Frame:
        """The newest frame if it is at most `max_age` s old, else raise StaleFrameError."""
