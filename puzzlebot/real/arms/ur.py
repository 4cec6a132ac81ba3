"""Universal Robots e-Series (UR5e) through ur_rtde: `pip install 'puzzlebot[ur]'`.

ur_rtde (SDU Robotics, https://sdurobotics.gitlab.io/ur_rtde/) gives three handles, all opened
in `connect()`:
  * `rtde_receive.RTDEReceiveInterface(ip)`: getActualQ / getActualQd / getSafetyMode / getRobotMode;
  * `rtde_control.RTDEControlInterface(ip)`: uploads a control script; servoJ streams joint
    targets, servoStop / stopJ stop, isProgramRunning tells whether that script still runs,
    reuploadScript restarts it after a stop;
  * `dashboard_client.DashboardClient(ip)` (port 29999): unlockProtectiveStop, closeSafetyPopup,
    powerOn, brakeRelease, restartSafety, the recovery steps an operator does on the pendant.

Safety modes (RTDE output `safety_mode`, as `getSafetyMode()` returns it; UR's SafetyMode enum as
in ur_dashboard_msgs/SafetyMode and the Universal Robots Client Library) map onto faults:

    code  UR name                               FaultKind
    1     NORMAL, 2 REDUCED                     (none)
    3     PROTECTIVE_STOP                       PROTECTIVE_STOP
    4     RECOVERY (joint past a safety limit)  JOINT_LIMIT
    5     SAFEGUARD_STOP                        PROTECTIVE_STOP
    6     SYSTEM_EMERGENCY_STOP                 EMERGENCY_STOP
    7     ROBOT_EMERGENCY_STOP                  EMERGENCY_STOP
    8     VIOLATION, 9 FAULT                    VENDOR
    10    VALIDATE_JOINT_ID, 11 UNDEFINED       VENDOR
    12    AUTOMATIC_MODE_SAFEGUARD_STOP         PROTECTIVE_STOP
    13    SYSTEM_THREE_POSITION_ENABLING_STOP   PROTECTIVE_STOP
    14    TP_THREE_POSITION_ENABLING_STOP       PROTECTIVE_STOP

With the safety mode NORMAL/REDUCED, a robot mode other than RUNNING (7) is a VENDOR fault
(vendor_code "robot_mode=N"), and a stopped control script a VENDOR fault ("program_stopped").
A lost RTDE link (isConnected() false, or calls raising RuntimeError) is DISCONNECTED.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from omegaconf import MISSING

from puzzlebot.real.arms.common import CommsGlitch, LinkLost, Sample, VendorArm, dh_standard, import_vendor
from puzzlebot.real.interface import Capabilities, ControlMode, Fault, FaultKind
from puzzlebot.sim.robots.base import Mount

# UR5e kinematics, standard DH, from Universal Robots' "DH parameters for calculations of
# kinematics and dynamics" (universal-robots.com/articles/ur/application-installation/
# dh-parameters-for-calculations-of-kinematics-and-dynamics/), UR5e row; m and rad.
UR5E_DH_D = (0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996)
UR5E_DH_A = (0.0, -0.425, -0.3922, 0.0, 0.0, 0.0)
UR5E_DH_ALPHA = (math.pi / 2, 0.0, 0.0, math.pi / 2, -math.pi / 2, 0.0)

UR5E_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")

# Safety modes and robot modes as ur_rtde returns them (robot modes: RTDEReceiveInterface docs).
SAFETY_NORMAL, SAFETY_REDUCED, SAFETY_PROTECTIVE_STOP, SAFETY_RECOVERY = 1, 2, 3, 4
SAFETY_VIOLATION, SAFETY_FAULT = 8, 9
ROBOT_MODE_POWER_OFF, ROBOT_MODE_IDLE, ROBOT_MODE_RUNNING = 3, 5, 7
ROBOT_MODE_NAMES = {-1: "NO_CONTROLLER", 0: "DISCONNECTED", 1: "CONFIRM_SAFETY", 2: "BOOTING", 3: "POWER_OFF",
                    4: "POWER_ON", 5: "IDLE", 6: "BACKDRIVE", 7: "RUNNING", 8: "UPDATING_FIRMWARE"}

#: safety_mode -> (FaultKind, UR's name); NORMAL and REDUCED are absent (no fault).
SAFETY_FAULTS: dict[int, tuple[FaultKind, str]] = {
    3: (FaultKind.PROTECTIVE_STOP, "PROTECTIVE_STOP"),
    4: (FaultKind.JOINT_LIMIT, "RECOVERY (a joint is past its safety limit: move it back in freedrive)"),
    5: (FaultKind.PROTECTIVE_STOP, "SAFEGUARD_STOP"),
    6: (FaultKind.EMERGENCY_STOP, "SYSTEM_EMERGENCY_STOP"),
    7: (FaultKind.EMERGENCY_STOP, "ROBOT_EMERGENCY_STOP"),
    8: (FaultKind.VENDOR, "VIOLATION"),
    9: (FaultKind.VENDOR, "FAULT"),
    10: (FaultKind.VENDOR, "VALIDATE_JOINT_ID"),
    11: (FaultKind.VENDOR, "UNDEFINED_SAFETY_MODE"),
    12: (FaultKind.PROTECTIVE_STOP, "AUTOMATIC_MODE_SAFEGUARD_STOP"),
    13: (FaultKind.PROTECTIVE_STOP, "SYSTEM_THREE_POSITION_ENABLING_STOP"),
    14: (FaultKind.PROTECTIVE_STOP, "TP_THREE_POSITION_ENABLING_STOP"),
}


@dataclass(frozen=True)
class URConfig:
    """A UR e-Series arm on the network, driven by ur_rtde's servoJ stream."""

    name: str = "ur5e"
    """Capabilities.name (what calibration files pin)."""
    ip: str = MISSING
    """Controller IP address (the pendant must be in Remote Control mode)."""
    joint_lower: tuple[float, ...] = (-2 * math.pi,) * 6
    """Hard joint limits, rad: UR5e datasheet, working range +-360 deg on every joint."""
    joint_upper: tuple[float, ...] = (2 * math.pi,) * 6
    max_joint_velocity: tuple[float, ...] = (math.pi,) * 6
    """rad/s: UR5e datasheet, maximum speed 180 deg/s on every joint."""
    max_joint_acceleration: tuple[float, ...] = (40.0,) * 6
    """rad/s^2: the datasheet gives none; 40 is ur_rtde's UR_JOINT_ACCELERATION_MAX."""
    control_hz: float = 125.0
    """Command rate; servoJ's `time` argument is 1 / control_hz."""
    servo_lookahead_time: float = 0.1
    """servoJ lookahead, s, ur_rtde accepts [0.03, 0.2]: larger is smoother and lags more."""
    servo_gain: float = 300.0
    """servoJ proportional gain, ur_rtde accepts [100, 2000]."""
    servo_stop_deceleration: float = 10.0
    """servoStop deceleration of the tool, m/s^2 (ur_rtde's default)."""
    stop_joint_deceleration: float = 2.0
    """stopJ deceleration, rad/s^2 (ur_rtde's default), used when not servoing."""
    mount: Mount = Mount()
    """Where the arm's base sits in the puzzle table's world frame (measure it)."""
    calibration_path: str | None = None
    """Versioned calibration file (`puzzlebot.real.calibration`): joint zero offsets and TCP offset, read
    when the backend is built and verified against the arm in `connect()`; None: no offsets, flange TCP."""
    max_comm_failures: int = 3
    """Failed reads in a row before the link counts as lost."""


def ur5e_flange(q: np.ndarray) -> np.ndarray:
    """UR5e flange pose in the base frame (the controller's base frame, as the pendant shows it)."""
    pose = np.eye(4)
    for theta, d, a, alpha in zip(q, UR5E_DH_D, UR5E_DH_A, UR5E_DH_ALPHA, strict=True):
        pose = pose @ dh_standard(theta, d, a, alpha)
    return pose


class URBackend(VendorArm):
    """A UR arm through ur_rtde. Only JOINT commands; the grip is ignored (no gripper driver here)."""

    config: URConfig

    def __init__(self, config: URConfig, sdk_factory: Any = None) -> None:
        if config.ip == MISSING:
            raise ValueError("URConfig.ip is required (the controller's IP address)")
        super().__init__(config, sdk_factory)
        self._receive: Any = None
        self._control: Any = None
        self._dashboard: Any = None
        self._servoing = False

    @property
    def address(self) -> str:
        return self.config.ip

    def _make_capabilities(self) -> Capabilities:
        c = self.config
        return Capabilities(name=c.name, joint_names=UR5E_JOINTS, joint_lower=np.array(c.joint_lower),
                            joint_upper=np.array(c.joint_upper), max_joint_velocity=np.array(c.max_joint_velocity),
                            max_joint_acceleration=np.array(c.max_joint_acceleration),
                            control_modes=(ControlMode.JOINT,), control_hz=c.control_hz, has_gripper=False)

    def _load_sdk(self) -> Any:
        modules = {m: import_vendor(m, "ur", "ur-rtde") for m in ("rtde_control", "rtde_receive", "dashboard_client")}
        return SimpleNamespace(RTDEControlInterface=modules["rtde_control"].RTDEControlInterface,
                               RTDEReceiveInterface=modules["rtde_receive"].RTDEReceiveInterface,
                               DashboardClient=modules["dashboard_client"].DashboardClient)

    # ------------------------------------------------------------------ link
    def _open(self, sdk: Any) -> None:
        ip = self.config.ip
        try:
            if None not in (self._receive, self._control, self._dashboard):  # after a lost link
                if not (self._receive.reconnect() and self._control.reconnect()):  # re-sends the script
                    raise RuntimeError("reconnect() returned False")
            else:
                self._receive = self._control = self._dashboard = None
                receive = sdk.RTDEReceiveInterface(ip)
                control = sdk.RTDEControlInterface(ip)  # uploads the control script
                self._receive, self._control, self._dashboard = receive, control, sdk.DashboardClient(ip)
            self._dashboard.connect()
        except RuntimeError as err:
            raise ConnectionError(f"UR at {ip}: {err}") from err
        self._servoing = False

    def _release(self, lost: bool = False) -> None:
        for handle in (self._control, self._receive, self._dashboard):
            if handle is not None:
                try:
                    handle.disconnect()
                except RuntimeError:
                    pass  # the link is already gone: nothing left to close
        if not lost:  # after a lost link the handles stay, so connect() can use ur_rtde's reconnect()
            self._receive = self._control = self._dashboard = None

    def _link_alive(self) -> bool:
        try:
            return bool(self._receive.isConnected() and self._control.isConnected())
        except RuntimeError:
            return False

    def _vendor_call(self, fn: Any, *args: Any) -> Any:
        """Call ur_rtde; a RuntimeError with the link down is a lost link, otherwise a glitch."""
        try:
            return fn(*args)
        except RuntimeError as err:
            if not self._link_alive():
                raise LinkLost(str(err), "isConnected=False") from err
            raise CommsGlitch(str(err), "RuntimeError") from err

    # ------------------------------------------------------------------ reading
    def _sample(self) -> Sample:
        if not self._link_alive():
            raise LinkLost("RTDE isConnected() is False", "isConnected=False")
        q = self._vendor_call(self._receive.getActualQ)
        qd = self._vendor_call(self._receive.getActualQd)
        return Sample(np.asarray(q, dtype=float), np.asarray(qd, dtype=float), 0.0, self._poll_faults())

    def _poll_faults(self) -> list[Fault]:
        if not self._link_alive():
            raise LinkLost("RTDE isConnected() is False", "isConnected=False")
        safety = int(self._vendor_call(self._receive.getSafetyMode))
        robot_mode = int(self._vendor_call(self._receive.getRobotMode))
        running = bool(self._vendor_call(self._control.isProgramRunning))
        return ur_faults(safety, robot_mode, running)

    # ------------------------------------------------------------------ acting
    def _command(self, joint_positions: np.ndarray, grip: float) -> None:
        c = self.config
        # speed and acceleration are "not used in current version" of servoJ but must lie in
        # ur_rtde's accepted ranges; 0.5 is what its examples pass.
        accepted = self._vendor_call(self._control.servoJ, [float(v) for v in joint_positions], 0.5, 0.5,
                                     1.0 / c.control_hz, c.servo_lookahead_time, c.servo_gain)
        if not accepted:
            raise CommsGlitch("servoJ returned False (control script not running, or the arm is stopped)",
                              "servoJ=False")
        self._servoing = True

    def _halt(self) -> None:
        if self._servoing:
            self._vendor_call(self._control.servoStop, self.config.servo_stop_deceleration)
            self._servoing = False
        else:
            self._vendor_call(self._control.stopJ, self.config.stop_joint_deceleration)

    def _recover(self) -> None:
        """What an operator does on the pendant, in order; steps that do not apply are skipped.

        Unlock a protective stop, close the safety popup, restart the safety system after a
        VIOLATION/FAULT, power on and release the brakes when the arm is off (after an e-stop
        is released), then re-upload the control script if it stopped. An e-stop still pressed
        or a RECOVERY mode (jog the joint back by hand) stays reported. The controller refuses
        to unlock a protective stop within 5 s of it (ur_rtde raises RuntimeError "Unlock
        protective stop failure: ..."): `clear_faults` then raises with that reply; try again.
        """
        dash, receive = self._dashboard, self._receive
        safety = int(self._vendor_call(receive.getSafetyMode))
        if safety == SAFETY_PROTECTIVE_STOP:
            self._vendor_call(dash.unlockProtectiveStop)
        if safety != SAFETY_NORMAL:
            self._vendor_call(dash.closeSafetyPopup)
        if safety in (SAFETY_VIOLATION, SAFETY_FAULT):
            self._vendor_call(dash.restartSafety)
        safety = int(self._vendor_call(receive.getSafetyMode))
        if safety in (SAFETY_NORMAL, SAFETY_REDUCED):
            if int(self._vendor_call(receive.getRobotMode)) in (ROBOT_MODE_POWER_OFF, ROBOT_MODE_IDLE):
                self._vendor_call(dash.powerOn)
                self._vendor_call(dash.brakeRelease)
            if not self._vendor_call(self._control.isProgramRunning):
                self._vendor_call(self._control.reuploadScript)
        self._servoing = False

    def _flange(self, joint_positions: np.ndarray) -> np.ndarray:
        return ur5e_flange(joint_positions)


def ur_faults(safety_mode: int, robot_mode: int, program_running: bool, t: float | None = None) -> list[Fault]:
    """Map ur_rtde's safety mode, robot mode and script state onto faults (see the module table)."""
    now = time.monotonic() if t is None else t
    if safety_mode in SAFETY_FAULTS:
        kind, name = SAFETY_FAULTS[safety_mode]
        return [Fault(kind, f"UR safety mode {safety_mode}: {name}", now, safety_mode)]
    if safety_mode not in (SAFETY_NORMAL, SAFETY_REDUCED):
        return [Fault(FaultKind.VENDOR, f"UR safety mode {safety_mode}: unknown", now, safety_mode)]
    if robot_mode != ROBOT_MODE_RUNNING:
        name = ROBOT_MODE_NAMES.get(robot_mode, "unknown")
        return [Fault(FaultKind.VENDOR, f"UR robot mode {robot_mode}: {name}, not RUNNING (power on, release brakes)",
                      now, f"robot_mode={robot_mode}")]
    if not program_running:
        return [Fault(FaultKind.VENDOR, "the ur_rtde control script is not running on the controller", now,
                      "program_stopped")]
    return []
