"""UFACTORY xArm 6 through xarm-python-sdk: `pip install 'puzzlebot[xarm]'`.

`xarm.wrapper.XArmAPI(ip, is_radian=True)` connects on construction. The arm streams in servo
mode: `motion_enable(True)`, `set_mode(1)`, `set_state(0)`, then `set_servo_angle_j(q)` per
command; `set_state(4)` stops (the next command re-arms mode 1 / state 0). Joint states come from
`get_joint_states` (firmware >= 1.9.0). The controller pushes `error_code` / `warn_code`;
recovery is `clean_error()`, `clean_warn()`, `motion_enable(True)`, `set_mode(1)`, `set_state(0)`
(the order the SDK's `clean_error` docstring asks for).

Controller error codes (the SDK's `xarm/core/config/x_code.py`, ControllerErrorCodeMap) map onto
faults, vendor_code = the error code:

    code        UFACTORY title                                   FaultKind
    1, 2, 3     e-stop button / e-stop IO / three-state switch   EMERGENCY_STOP
    22          self-collision error                             PROTECTIVE_STOP
    31          collision caused abnormal current                PROTECTIVE_STOP
    35          safety boundary limit                            PROTECTIVE_STOP
    23          joints angle exceed limit                        JOINT_LIMIT
    24, 30      (feedback) speed exceeds limit                   JOINT_LIMIT
    10, 11-17   servo motor error (joint N = code - 10)          VENDOR
    any other   (titles below where known)                       VENDOR

Warning 11 (controller command cache full: streamed commands were dropped) is a COMMS fault
(vendor_code "warn 11"); other warnings are parameter complaints and are only cleaned.
SDK return code -1 (APIState.NOT_CONNECTED) or `connected == False` is DISCONNECTED; other
non-zero return codes are COMMS (vendor_code "api N").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import MISSING

from puzzlebot.real.arms.common import CommsGlitch, LinkLost, Sample, VendorArm, dh_modified, import_vendor
from puzzlebot.real.interface import Capabilities, ControlMode, Fault, FaultKind
from puzzlebot.sim.robots.base import Mount

# xArm 6 kinematics, modified (Craig) DH, from UFACTORY's "Kinematic and Dynamic Parameters of
# UFACTORY xArm Series" (help.ufactory.cc). The link from joint 2 to 3 is 284.5 mm up and 53.5 mm
# out: a2 = sqrt(284.5^2 + 53.5^2) (published as 289.48866), T2_offset = -atan(284.5/53.5) =
# -1.3849179 rad, T3_offset = +1.3849179 rad. Lengths in m.
_A2 = math.hypot(0.2845, 0.0535)
_T_OFF = math.atan2(0.2845, 0.0535)
#: Per joint: (alpha_{i-1}, a_{i-1}, d_i, theta offset).
XARM6_MDH = (
    (0.0, 0.0, 0.267, 0.0),
    (-math.pi / 2, 0.0, 0.0, -_T_OFF),
    (0.0, _A2, 0.0, _T_OFF),
    (-math.pi / 2, 0.0775, 0.3425, 0.0),
    (math.pi / 2, 0.0, 0.0, 0.0),
    (-math.pi / 2, 0.076, 0.097, 0.0),
)
XARM6_JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6")

API_NOT_CONNECTED = -1  # xarm.x3.code.APIState.NOT_CONNECTED
HAS_ERROR, HAS_WARN = 1, 2  # APIState.HAS_ERROR / HAS_WARN: an uncleared controller error / warning
STATE_STOP = 4  # set_state(4): stop
MODE_SERVO = 1  # set_mode(1): servo motion mode, needed by set_servo_angle_j
WARN_CACHE_FULL = 11

#: Controller error code -> (FaultKind, UFACTORY's title).
XARM_ERRORS: dict[int, tuple[FaultKind, str]] = {
    1: (FaultKind.EMERGENCY_STOP, "Emergency Stop button on the controller pushed in"),
    2: (FaultKind.EMERGENCY_STOP, "Emergency IO of the control box triggered"),
    3: (FaultKind.EMERGENCY_STOP, "Emergency Stop button of the three-state switch pressed"),
    10: (FaultKind.VENDOR, "Servo motor error"),
    **{10 + j: (FaultKind.VENDOR, f"Servo motor {j} error") for j in range(1, 8)},
    18: (FaultKind.VENDOR, "Force torque sensor communication error"),
    19: (FaultKind.VENDOR, "End effector communication error"),
    21: (FaultKind.VENDOR, "Kinematic error"),
    22: (FaultKind.PROTECTIVE_STOP, "Self-collision error"),
    23: (FaultKind.JOINT_LIMIT, "Joints angle exceed limit"),
    24: (FaultKind.JOINT_LIMIT, "Speed exceeds limit"),
    25: (FaultKind.VENDOR, "Planning error"),
    26: (FaultKind.VENDOR, "Linux RT error"),
    27: (FaultKind.VENDOR, "Command reply error"),
    28: (FaultKind.VENDOR, "End module communication error"),
    30: (FaultKind.JOINT_LIMIT, "Feedback speed exceeds limit"),
    31: (FaultKind.PROTECTIVE_STOP, "Collision caused abnormal current"),
    33: (FaultKind.VENDOR, "Controller GPIO error"),
    35: (FaultKind.PROTECTIVE_STOP, "Safety boundary limit"),
    38: (FaultKind.VENDOR, "Abnormal joint angle"),
    39: (FaultKind.VENDOR, "Abnormal communication between master and slave IC of power board"),
    60: (FaultKind.VENDOR, "Linear speed exceeded limit in servo_j mode"),
    110: (FaultKind.VENDOR, "Robot arm base board communication error"),
    111: (FaultKind.VENDOR, "Control box external 485 device communication error"),
}


@dataclass(frozen=True)
class XArmConfig:
    """An xArm 6 on the network, driven in servo mode (mode 1) by set_servo_angle_j."""

    name: str = "xarm6"
    """Capabilities.name (what calibration files pin)."""
    ip: str = MISSING
    """Control box IP address."""
    joint_lower: tuple[float, ...] = (-2 * math.pi, -2.059488, -3.92699, -2 * math.pi, -1.692969, -2 * math.pi)
    """Hard joint limits, rad: xArm 6 user manual ranges J1 +-360, J2 -118..120, J3 -225..11,
    J4 +-360, J5 -97..180, J6 +-360 deg (as in the SDK's XCONF.Robot.JOINT_LIMITS, XARM6_X4)."""
    joint_upper: tuple[float, ...] = (2 * math.pi, 2.094395, 0.191986, 2 * math.pi, math.pi, 2 * math.pi)
    max_joint_velocity: tuple[float, ...] = (math.pi,) * 6
    """rad/s: xArm 6 datasheet, maximum joint speed 180 deg/s."""
    max_joint_acceleration: tuple[float, ...] = (20.0,) * 6
    """rad/s^2: the SDK's joint acceleration ceiling (`_max_joint_acc`); the datasheet gives none."""
    control_hz: float = 100.0
    """Command rate; servo mode (mode 1) moves smoothest with a steady, high-rate stream."""
    gripper: bool = True
    """An xArm Gripper on the tool flange (set_gripper_position), else the grip is ignored."""
    gripper_open_pulse: float = 850.0
    """xArm Gripper position when open, pulses (850 fully open)."""
    gripper_closed_pulse: float = 0.0
    """xArm Gripper position when closed, pulses."""
    gripper_speed: float = 5000.0
    """xArm Gripper speed, r/min."""
    grip_deadband: float = 0.01
    """Grip changes smaller than this are not sent (each gripper command is a Modbus round trip)."""
    mount: Mount = Mount()
    """Where the arm's base sits in the puzzle table's world frame (measure it)."""
    calibration_path: str | None = None
    """Versioned calibration file (`puzzlebot.real.calibration`): joint zero offsets and TCP offset, read
    when the backend is built and verified against the arm in `connect()`; None: no offsets, flange TCP."""
    max_comm_failures: int = 3
    """Failed reads in a row before the link counts as lost."""


def xarm6_flange(q: np.ndarray) -> np.ndarray:
    """xArm 6 flange pose in the base frame (at q = 0: (0.207, 0, 0.112) m, pointing down)."""
    pose = np.eye(4)
    for theta, (alpha_prev, a_prev, d, offset) in zip(q, XARM6_MDH, strict=True):
        pose = pose @ dh_modified(alpha_prev, a_prev, theta + offset, d)
    return pose


def xarm_faults(error_code: int, warn_code: int, t: float | None = None) -> list[Fault]:
    """Map the controller's error and warning codes onto faults (see the module table)."""
    now = time.monotonic() if t is None else t
    faults = []
    if error_code:
        kind, title = XARM_ERRORS.get(error_code, (FaultKind.VENDOR, "Other error"))
        faults.append(Fault(kind, f"xArm controller error {error_code}: {title}", now, error_code))
    if warn_code == WARN_CACHE_FULL:
        faults.append(Fault(FaultKind.COMMS, "xArm warning 11: controller command cache full, commands dropped",
                            now, f"warn {warn_code}"))
    return faults


class XArmBackend(VendorArm):
    """An xArm 6 through xarm-python-sdk; JOINT commands, grip through the xArm Gripper."""

    config: XArmConfig

    def __init__(self, config: XArmConfig, sdk_factory: Any = None) -> None:
        if config.ip == MISSING:
            raise ValueError("XArmConfig.ip is required (the control box's IP address)")
        super().__init__(config, sdk_factory)
        self._arm: Any = None
        self._armed = False
        self._sent_grip: float | None = None
        self._grip = 0.0

    @property
    def address(self) -> str:
        return self.config.ip

    def _make_capabilities(self) -> Capabilities:
        c = self.config
        return Capabilities(name=c.name, joint_names=XARM6_JOINTS, joint_lower=np.array(c.joint_lower),
                            joint_upper=np.array(c.joint_upper), max_joint_velocity=np.array(c.max_joint_velocity),
                            max_joint_acceleration=np.array(c.max_joint_acceleration),
                            control_modes=(ControlMode.JOINT,), control_hz=c.control_hz, has_gripper=c.gripper)

    def _load_sdk(self) -> Any:
        return import_vendor("xarm.wrapper", "xarm", "xarm-python-sdk")

    # ------------------------------------------------------------------ link
    def _open(self, sdk: Any) -> None:
        ip = self.config.ip
        try:
            arm = sdk.XArmAPI(ip, is_radian=True)
        except Exception as err:  # the SDK raises a bare Exception('connect socket failed')
            raise ConnectionError(f"xArm at {ip}: {err}") from err
        if not arm.connected:
            raise ConnectionError(f"xArm at {ip}: not connected")
        self._arm = arm
        try:
            self._check(arm.motion_enable(enable=True), "motion_enable")
            self._arm_servo_mode()
        except CommsGlitch:
            self._armed = False  # e.g. an uncleared error: faults() reports it, the next command re-arms
        except LinkLost as err:
            raise ConnectionError(f"xArm at {ip}: {err}") from err
        if self.config.gripper:
            arm.set_gripper_mode(0)
            arm.set_gripper_enable(True)
        self._sent_grip = None

    def _release(self, lost: bool = False) -> None:
        if self._arm is not None:
            try:
                self._arm.disconnect()
            except OSError:
                pass  # the socket is already gone
        self._arm = None
        self._armed = False

    def _link_alive(self) -> bool:
        return self._arm is not None and bool(self._arm.connected)

    def _check(self, code: int, what: str, ok: tuple[int, ...] = (0,)) -> None:
        if code == API_NOT_CONNECTED or not self._link_alive():
            raise LinkLost(f"{what}: xArm not connected", "api -1")
        if code not in ok:
            raise CommsGlitch(f"{what} returned code {code}", f"api {code}")

    def _arm_servo_mode(self) -> None:
        self._check(self._arm.set_mode(MODE_SERVO), "set_mode(1)")
        self._check(self._arm.set_state(0), "set_state(0)")
        self._armed = True

    # ------------------------------------------------------------------ reading
    def _sample(self) -> Sample:
        if not self._link_alive():
            raise LinkLost("XArmAPI.connected is False", "api -1")
        code, states = self._arm.get_joint_states(is_radian=True, num=2)
        self._check(code, "get_joint_states")
        q = np.asarray(states[0][:6], dtype=float)
        qd = np.asarray(states[1][:6], dtype=float)
        if self.config.gripper:
            gcode, pulse = self._arm.get_gripper_position()
            if gcode == 0 and pulse is not None:  # else keep the last grip reading
                c = self.config
                closure = (c.gripper_open_pulse - float(pulse)) / (c.gripper_open_pulse - c.gripper_closed_pulse)
                self._grip = float(np.clip(closure, 0.0, 1.0))
        return Sample(q, qd, self._grip, self._poll_faults())

    def _poll_faults(self) -> list[Fault]:
        if not self._link_alive():
            raise LinkLost("XArmAPI.connected is False", "api -1")
        return xarm_faults(int(self._arm.error_code), int(self._arm.warn_code))

    # ------------------------------------------------------------------ acting
    def _command(self, joint_positions: np.ndarray, grip: float) -> None:
        if not self._armed:
            self._arm_servo_mode()
        self._check(self._arm.set_servo_angle_j([float(v) for v in joint_positions], is_radian=True),
                    "set_servo_angle_j")
        c = self.config
        if c.gripper and (self._sent_grip is None or abs(grip - self._sent_grip) > c.grip_deadband):
            pulse = c.gripper_open_pulse + grip * (c.gripper_closed_pulse - c.gripper_open_pulse)
            self._check(self._arm.set_gripper_position(pulse, wait=False, speed=c.gripper_speed),
                        "set_gripper_position")
            self._sent_grip = grip

    def _halt(self) -> None:
        self._armed = False  # state 4 needs mode 1 / state 0 again before the next command
        self._check(self._arm.set_state(STATE_STOP), "set_state(4)")

    def _recover(self) -> None:
        """clean_error, clean_warn, motion_enable(True), set_mode(1), set_state(0).

        Codes 1/2 (an error/warning is still there, e.g. the e-stop is still pressed) are not a
        failure of the recovery: the error stays reported by `faults()`.
        """
        arm, still_there = self._arm, (0, HAS_ERROR, HAS_WARN)
        self._check(arm.clean_error(), "clean_error", still_there)
        self._check(arm.clean_warn(), "clean_warn", still_there)
        self._check(arm.motion_enable(enable=True), "motion_enable", still_there)
        try:
            self._arm_servo_mode()
        except CommsGlitch:
            self._armed = False  # not ready yet (error still there): the next command re-arms

    def _flange(self, joint_positions: np.ndarray) -> np.ndarray:
        return xarm6_flange(joint_positions)
