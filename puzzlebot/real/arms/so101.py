"""SO-101 arm (TheRobotStudio / Hugging Face) on Feetech STS3215 servos: `pip install 'puzzlebot[so101]'`.

The servos share one half-duplex serial bus driven through `scservo_sdk` (PyPI feetech-servo-sdk):
`PortHandler(port)`, `PacketHandler(0)` (STS servos use protocol_end 0: little-endian words),
`GroupSyncRead` / `GroupSyncWrite`. One sync read of the block Present_Position (56) .. Status (65)
gives every servo's position, velocity and hardware status per cycle; one sync write of
Goal_Position (42) commands them all.

Units: STS3215 position is a 12-bit magnetic encoder, 4096 ticks per turn, so
    rad = direction * (ticks - zero_ticks) * 2 pi / 4096,   ticks = zero_ticks + direction * rad * 4096 / (2 pi);
`zero_ticks` is the reading at the URDF's zero pose: 2048 after LeRobot's calibration, which puts
the middle of each joint's range at 2048 and is the zero of `so101_new_calib.urdf`. Present_Velocity
is steps/s in sign-magnitude (bit 15 = sign).

Status register bits (Feetech STS memory table, address 65; the SDK's ERRBIT_* use the same bits)
map onto faults, one per servo and kind, vendor_code = the status byte:

    bit   mask   meaning                       FaultKind
    0     0x01   input voltage out of range    VENDOR
    1     0x02   magnetic encoder (sensor)     SENSOR_INVALID
    2     0x04   overheat                      VENDOR
    3     0x08   overcurrent                   VENDOR
    4     0x10   angle limit                   JOINT_LIMIT
    5     0x20   overload (torque unloaded)    VENDOR

COMM_RX_TIMEOUT and other failed exchanges are COMMS (vendor_code = the COMM_* result); after
`max_comm_failures` failed reads in a row, or when the port raises OSError (unplugged USB: pyserial's
SerialException), the link is lost: DISCONNECTED. Recovery reads every servo's status, sets each
goal to the present position (so re-enabling torque cannot jump) and writes Torque_Enable = 1.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import MISSING

from puzzlebot.real.arms.common import CommsGlitch, LinkLost, Sample, VendorArm, import_vendor, rot_z, urdf_origin
from puzzlebot.real.interface import Capabilities, ControlMode, Fault, FaultKind
from puzzlebot.sim.robots.base import Mount

# STS3215 control table (Feetech STS series memory table; the same addresses as LeRobot's
# STS_SMS_SERIES_CONTROL_TABLE).
ADDR_P_COEFFICIENT, ADDR_D_COEFFICIENT, ADDR_I_COEFFICIENT = 21, 22, 23
ADDR_TORQUE_ENABLE, ADDR_ACCELERATION, ADDR_GOAL_POSITION = 40, 41, 42
ADDR_LOCK, ADDR_PRESENT_POSITION, ADDR_PRESENT_VELOCITY, ADDR_STATUS = 55, 56, 58, 65
READ_LENGTH = ADDR_STATUS + 1 - ADDR_PRESENT_POSITION  # 10 bytes: position .. status
STS3215_MODEL = 777
TICKS_PER_REV = 4096
RAD_PER_TICK = 2 * math.pi / TICKS_PER_REV

#: Status bit -> (FaultKind, meaning).
STATUS_BITS: dict[int, tuple[FaultKind, str]] = {
    0x01: (FaultKind.VENDOR, "input voltage out of range"),
    0x02: (FaultKind.SENSOR_INVALID, "magnetic encoder error"),
    0x04: (FaultKind.VENDOR, "overheat"),
    0x08: (FaultKind.VENDOR, "overcurrent"),
    0x10: (FaultKind.JOINT_LIMIT, "angle limit"),
    0x20: (FaultKind.VENDOR, "overload (torque unloaded)"),
}

SO101_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
# Joint origins (xyz m, rpy rad) of TheRobotStudio/SO-ARM100 Simulation/SO101/so101_new_calib.urdf
# (commit 0aee1d0f), each joint revolving about its own z; values as published (1.5708 = pi/2).
SO101_URDF_JOINTS = (
    ((0.0207909, -0.0230745, 0.0948817), (-3.14159, 6.03684e-16, 1.5708)),  # base -> shoulder
    ((-0.0303992, -0.0182778, -0.0542), (-1.5708, -1.5708, 0.0)),  # shoulder -> upper_arm
    ((-0.11257, -0.028, 2.46331e-16), (-1.22818e-15, 5.75928e-16, 1.5708)),  # upper_arm -> lower_arm
    ((-0.1349, 0.0052, 1.65232e-16), (3.2474e-15, 2.86219e-15, -1.5708)),  # lower_arm -> wrist
    ((0.0, -0.0611, 0.0181), (1.5708, -9.38083e-08, 3.14159)),  # wrist -> gripper
)
#: The URDF's fixed `gripperframe` (between the jaws) on the gripper link.
SO101_GRIPPER_FRAME = ((-0.0079, -0.000218121, -0.0981274), (1.5708, 1.22465e-16, 1.5708))
_JOINT_ORIGINS = tuple(urdf_origin(xyz, rpy) for xyz, rpy in SO101_URDF_JOINTS)
_TOOL = urdf_origin(*SO101_GRIPPER_FRAME)


@dataclass(frozen=True)
class SO101Config:
    """An SO-101 follower arm: five STS3215 joints and an STS3215 gripper on one serial bus."""

    name: str = "so101"
    """Capabilities.name (what calibration files pin)."""
    port: str = MISSING
    """Serial port of the bus adapter, e.g. /dev/ttyACM0."""
    baudrate: int = 1_000_000
    """Bus speed (the STS3215 default)."""
    servo_ids: tuple[int, ...] = (1, 2, 3, 4, 5)
    """Bus ids of shoulder_pan .. wrist_roll."""
    gripper_id: int = 6
    zero_ticks: tuple[int, ...] = (2048,) * 5
    """Encoder reading at the URDF zero pose, per joint (2048 after LeRobot-style calibration)."""
    directions: tuple[int, ...] = (1,) * 5
    """+1 if the servo's ticks grow with the URDF joint angle, else -1."""
    gripper_zero_ticks: int = 2048
    gripper_direction: int = 1
    gripper_open: float = 1.5
    """Gripper joint angle when open, rad (URDF range -0.17 .. 1.75; set it from your arm)."""
    gripper_closed: float = 0.0
    """Gripper joint angle when closed, rad."""
    joint_lower: tuple[float, ...] = (-1.91986, -1.74533, -1.69, -1.65806, -2.79253)
    """Hard joint limits, rad: the `<limit>` of each joint in so101_new_calib.urdf."""
    joint_upper: tuple[float, ...] = (1.91986, 1.74533, 1.69, 1.65806, 2.79253)
    max_joint_velocity: tuple[float, ...] = (math.radians(60) / 0.222,) * 5
    """rad/s: Feetech STS3215 (7.4 V) datasheet no-load speed, 0.222 s per 60 deg."""
    max_joint_acceleration: tuple[float, ...] = (254 * 100 * RAD_PER_TICK,) * 5
    """rad/s^2: the highest Acceleration register value, 254 x 100 steps/s^2 (STS memory table)."""
    p_coefficient: int = 16
    """Position loop P gain (register 21); LeRobot's SO-101 value (32 is the factory default, shakier)."""
    i_coefficient: int = 0
    """Position loop I gain (register 23)."""
    d_coefficient: int = 32
    """Position loop D gain (register 22)."""
    acceleration: int = 254
    """Acceleration register (41), x 100 steps/s^2; 254 is the servo's fastest."""
    control_hz: float = 30.0
    """Command rate (LeRobot records SO-101 at 30 fps)."""
    torque_off_on_disconnect: bool = False
    """Release torque when disconnecting (the arm falls!) instead of holding the last goal."""
    mount: Mount = Mount()
    """Where the arm's base sits in the puzzle table's world frame (measure it)."""
    calibration_path: str | None = None
    """Versioned calibration file (`puzzlebot.real.calibration`): joint zero offsets and TCP offset, read
    when the backend is built and verified against the arm in `connect()`; None: no offsets, URDF gripper frame."""
    max_comm_failures: int = 3
    """Failed reads in a row before the link counts as lost."""


def so101_flange(q: np.ndarray) -> np.ndarray:
    """SO-101 `gripperframe` pose in the URDF base frame, by chaining the published joint origins."""
    pose = np.eye(4)
    for origin, theta in zip(_JOINT_ORIGINS, q, strict=True):
        pose = pose @ origin @ rot_z(theta)
    return pose @ _TOOL


def status_faults(servo_id: int, joint: str, status: int, t: float | None = None) -> list[Fault]:
    """Faults for one servo's status byte (see the module table)."""
    now = time.monotonic() if t is None else t
    by_kind: dict[FaultKind, list[str]] = {}
    for bit, (kind, meaning) in STATUS_BITS.items():
        if status & bit:
            by_kind.setdefault(kind, []).append(meaning)
    if status & ~sum(STATUS_BITS):
        by_kind.setdefault(FaultKind.VENDOR, []).append("unknown status bit")
    return [Fault(kind, f"servo {servo_id} ({joint}): {', '.join(meanings)} (status 0x{status:02x})", now, status)
            for kind, meanings in by_kind.items()]


class SO101Backend(VendorArm):
    """An SO-101 through scservo_sdk; JOINT commands, grip through the gripper servo."""

    config: SO101Config

    def __init__(self, config: SO101Config, sdk_factory: Any = None) -> None:
        if config.port == MISSING:
            raise ValueError("SO101Config.port is required (the bus adapter's serial port)")
        for name in ("servo_ids", "zero_ticks", "directions", "joint_lower", "joint_upper"):
            if len(getattr(config, name)) != len(SO101_JOINTS):
                raise ValueError(f"SO101Config.{name}: need {len(SO101_JOINTS)} values")
        super().__init__(config, sdk_factory)
        self._ids = (*config.servo_ids, config.gripper_id)
        self._names = (*SO101_JOINTS, "gripper")
        self._zero = np.array((*config.zero_ticks, config.gripper_zero_ticks), dtype=float)
        self._sign = np.array((*config.directions, config.gripper_direction), dtype=float)
        self._sdk: Any = None
        self._port: Any = None
        self._ph: Any = None
        self._reader: Any = None
        self._writer: Any = None
        self._status: np.ndarray | None = None  # status bytes of the last sync read, and when
        self._status_t = -math.inf

    @property
    def address(self) -> str:
        return self.config.port

    def _make_capabilities(self) -> Capabilities:
        c = self.config
        return Capabilities(name=c.name, joint_names=SO101_JOINTS, joint_lower=np.array(c.joint_lower),
                            joint_upper=np.array(c.joint_upper), max_joint_velocity=np.array(c.max_joint_velocity),
                            max_joint_acceleration=np.array(c.max_joint_acceleration),
                            control_modes=(ControlMode.JOINT,), control_hz=c.control_hz, has_gripper=True)

    def _load_sdk(self) -> Any:
        return import_vendor("scservo_sdk", "so101", "feetech-servo-sdk")

    # ------------------------------------------------------------------ unit conversion
    def to_ticks(self, angles: np.ndarray) -> np.ndarray:
        """Servo ticks for joint angles (5 arm joints + gripper), rad; ValueError outside 0..4095."""
        ticks = np.rint(self._zero + self._sign * np.asarray(angles, dtype=float) / RAD_PER_TICK).astype(int)
        if np.any((ticks < 0) | (ticks >= TICKS_PER_REV)):
            raise ValueError(f"SO-101 target {np.round(angles, 4).tolist()} is outside one encoder turn: ticks {ticks}")
        return ticks

    def to_angles(self, ticks: np.ndarray) -> np.ndarray:
        """Joint angles, rad, for servo ticks (5 arm joints + gripper)."""
        return self._sign * (np.asarray(ticks, dtype=float) - self._zero) * RAD_PER_TICK

    # ------------------------------------------------------------------ bus
    def _io(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as err:  # pyserial's SerialException: the adapter is gone
            raise LinkLost(f"serial port error: {err}", "OSError") from err

    def _write1(self, servo_id: int, address: int, value: int) -> None:
        result, _error = self._io(self._ph.write1ByteTxRx, self._port, servo_id, address, value)
        if result != self._sdk.COMM_SUCCESS:
            raise CommsGlitch(f"servo {servo_id} write @{address}: {self._ph.getTxRxResult(result)}", result)

    def _read_block(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One sync read: ticks, velocity (steps/s) and status byte per servo (arm joints + gripper)."""
        result = self._io(self._reader.txRxPacket)
        if result != self._sdk.COMM_SUCCESS:
            raise CommsGlitch(f"sync read: {self._ph.getTxRxResult(result)}", result)
        ticks, velocity, status = (np.zeros(len(self._ids), dtype=int) for _ in range(3))
        for i, sid in enumerate(self._ids):
            if not self._reader.isAvailable(sid, ADDR_PRESENT_POSITION, READ_LENGTH):
                raise CommsGlitch(f"sync read: no data from servo {sid}", "unavailable")
            ticks[i] = self._reader.getData(sid, ADDR_PRESENT_POSITION, 2)
            raw = self._reader.getData(sid, ADDR_PRESENT_VELOCITY, 2)
            velocity[i] = -(raw & 0x7FFF) if raw & 0x8000 else raw
            status[i] = self._reader.getData(sid, ADDR_STATUS, 1)
        self._status, self._status_t = status, time.monotonic()
        return ticks, velocity, status

    def _write_goals(self, ticks: np.ndarray) -> None:
        """One sync write of Goal_Position; STS words are little-endian (protocol_end 0)."""
        self._writer.clearParam()
        for sid, tick in zip(self._ids, ticks, strict=True):
            self._writer.addParam(sid, [int(tick) & 0xFF, (int(tick) >> 8) & 0xFF])
        result = self._io(self._writer.txPacket)
        if result != self._sdk.COMM_SUCCESS:
            raise CommsGlitch(f"sync write: {self._ph.getTxRxResult(result)}", result)

    def _status_faults(self, status: np.ndarray) -> list[Fault]:
        now = time.monotonic()
        return [f for sid, name, s in zip(self._ids, self._names, status, strict=True) if s
                for f in status_faults(sid, name, int(s), now)]

    # ------------------------------------------------------------------ link
    def _open(self, sdk: Any) -> None:
        c = self.config
        self._sdk = sdk
        port = sdk.PortHandler(c.port)
        try:
            if not port.openPort() or not port.setBaudRate(c.baudrate):
                raise ConnectionError(f"SO-101: cannot open {c.port} at {c.baudrate} baud")
        except OSError as err:
            raise ConnectionError(f"SO-101: cannot open {c.port}: {err}") from err
        self._port, self._ph = port, sdk.PacketHandler(0)
        try:
            self._check_servos()
            for sid in self._ids:  # gains live in EEPROM: unlock, write, lock (as LeRobot does)
                self._write1(sid, ADDR_TORQUE_ENABLE, 0)
                self._write1(sid, ADDR_LOCK, 0)
                for address, value in ((ADDR_P_COEFFICIENT, c.p_coefficient), (ADDR_I_COEFFICIENT, c.i_coefficient),
                                       (ADDR_D_COEFFICIENT, c.d_coefficient), (ADDR_ACCELERATION, c.acceleration)):
                    self._write1(sid, address, value)
                self._write1(sid, ADDR_LOCK, 1)
            self._reader = sdk.GroupSyncRead(port, self._ph, ADDR_PRESENT_POSITION, READ_LENGTH)
            for sid in self._ids:
                self._reader.addParam(sid)
            self._writer = sdk.GroupSyncWrite(port, self._ph, ADDR_GOAL_POSITION, 2)
            self._enable_torque_in_place()
        except (LinkLost, CommsGlitch) as err:
            self._release()
            raise ConnectionError(f"SO-101 on {c.port}: {err}") from err

    def _check_servos(self) -> None:
        missing, wrong = [], []
        for sid in self._ids:
            model, result, _error = self._io(self._ph.ping, self._port, sid)
            if result != self._sdk.COMM_SUCCESS:
                missing.append(sid)
            elif model != STS3215_MODEL:
                wrong.append(f"{sid}: model {model}")
        if missing or wrong:
            raise CommsGlitch(f"no reply from servo ids {missing}" if missing else
                              f"not STS3215 (model {STS3215_MODEL}): {', '.join(wrong)}", "ping")

    def _enable_torque_in_place(self) -> None:
        """Goal := present position first, then torque on: enabling never jumps to a stale goal."""
        ticks, _velocity, _status = self._read_block()
        self._write_goals(ticks)
        for sid in self._ids:
            self._write1(sid, ADDR_TORQUE_ENABLE, 1)

    def _release(self, lost: bool = False) -> None:
        if self._port is None:
            return
        try:
            if self.config.torque_off_on_disconnect and not lost:
                for sid in self._ids:
                    self._ph.write1ByteTxRx(self._port, sid, ADDR_TORQUE_ENABLE, 0)
            self._port.closePort()
        except OSError:
            pass  # the adapter is already gone
        self._port = self._ph = self._reader = self._writer = None
        self._status = None

    # ------------------------------------------------------------------ reading
    def _sample(self) -> Sample:
        ticks, velocity, status = self._read_block()
        angles = self.to_angles(ticks)
        rates = self._sign * velocity * RAD_PER_TICK
        c = self.config
        grip = float(np.clip((c.gripper_open - angles[-1]) / (c.gripper_open - c.gripper_closed), 0.0, 1.0))
        return Sample(angles[:-1], rates[:-1], grip, self._status_faults(status))

    def _poll_faults(self) -> list[Fault]:
        # The driver asks for faults right after each read: reuse that read's status bytes when
        # they are fresher than half a control period instead of a second bus round trip.
        if self._status is None or time.monotonic() - self._status_t > 0.5 / self.config.control_hz:
            self._read_block()
        assert self._status is not None
        return self._status_faults(self._status)

    # ------------------------------------------------------------------ acting
    def _command(self, joint_positions: np.ndarray, grip: float) -> None:
        c = self.config
        gripper = c.gripper_open + grip * (c.gripper_closed - c.gripper_open)
        self._write_goals(self.to_ticks(np.append(joint_positions, gripper)))

    def _halt(self) -> None:
        self._write_goals(self._read_block()[0])  # Feetech has no stop instruction: goal := present

    def _recover(self) -> None:
        for sid in self._ids:  # read (and so acknowledge) each servo's error status first
            _status, result, _error = self._io(self._ph.read1ByteTxRx, self._port, sid, ADDR_STATUS)
            if result != self._sdk.COMM_SUCCESS:
                raise CommsGlitch(f"servo {sid} status read: {self._ph.getTxRxResult(result)}", result)
        self._enable_torque_in_place()
        self._status = None  # the status after recovery must be read fresh

    def _flange(self, joint_positions: np.ndarray) -> np.ndarray:
        return so101_flange(joint_positions)
