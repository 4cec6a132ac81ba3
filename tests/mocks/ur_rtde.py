"""A fake UR e-Series controller behind ur_rtde's Python surface.

`URController` is the robot: joints, safety mode, robot mode, whether the ur_rtde control script
runs, and whether the network link is up. `sdk()` returns the three ur_rtde classes bound to it:
`RTDEControlInterface`, `RTDEReceiveInterface`, `DashboardClient`.

Behaviour copied from ur_rtde and the controller:
  * servoJ moves the joints toward its target for its `time` argument at `max_speed`; it returns
    False (and does nothing) unless the control script runs and the safety mode is NORMAL/REDUCED;
    its arguments are range-checked like ur_rtde's (ValueError, pybind11's std::invalid_argument);
  * a protective stop or e-stop halts the arm and stops the control script;
  * a dropped link makes isConnected() False and every call raise RuntimeError; reconnect()
    succeeds once the link is back;
  * dashboard recovery: unlockProtectiveStop (PROTECTIVE_STOP -> NORMAL; `unlock_refusals`
    makes it fail like the controller does within 5 s of the stop), restartSafety
    (VIOLATION/FAULT -> NORMAL, power off), powerOn (POWER_OFF -> IDLE), brakeRelease
    (IDLE -> RUNNING); reuploadScript restarts the script when NORMAL and RUNNING. An e-stop
    still pressed cannot be cleared; releasing it leaves the arm powered off.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

NORMAL, REDUCED, PROTECTIVE_STOP, RECOVERY, SAFEGUARD_STOP = 1, 2, 3, 4, 5
SYSTEM_EMERGENCY_STOP, ROBOT_EMERGENCY_STOP, VIOLATION, FAULT = 6, 7, 8, 9
POWER_OFF, IDLE, RUNNING = 3, 5, 7


class URController:
    """The simulated UR controller and arm."""

    def __init__(self, q0: tuple[float, ...] = (0.0, -1.57, 1.57, -1.57, -1.57, 0.0), max_speed: float = 1.0) -> None:
        self.q = np.array(q0, dtype=float)
        self.qd = np.zeros(6)
        self.target: np.ndarray | None = None
        self.max_speed = max_speed
        self.safety_mode = NORMAL
        self.robot_mode = RUNNING
        self.program_running = False  # RTDEControlInterface uploads the script on construction
        self.link_up = True
        self.estop_pressed = False
        self.unlock_refusals = 0  # unlock attempts refused as "too soon" (the controller's 5 s rule)
        self.calls: list[tuple] = []

    # ------------------------------------------------------------------ what tests use
    def sdk(self) -> SimpleNamespace:
        """The ur_rtde surface (the three classes), bound to this controller."""
        controller = self

        class _Control(RTDEControlInterface):
            def __init__(self, hostname: str, *args: Any, **kwargs: Any) -> None:
                super().__init__(controller, hostname)

        class _Receive(RTDEReceiveInterface):
            def __init__(self, hostname: str, *args: Any, **kwargs: Any) -> None:
                super().__init__(controller, hostname)

        class _Dashboard(DashboardClient):
            def __init__(self, hostname: str, port: int = 29999, verbose: bool = False) -> None:
                super().__init__(controller, hostname)

        return SimpleNamespace(RTDEControlInterface=_Control, RTDEReceiveInterface=_Receive, DashboardClient=_Dashboard)

    def called(self, name: str) -> int:
        """How many times a method of that name was called."""
        return sum(1 for call in self.calls if call[0] == name)

    def protective_stop(self) -> None:
        self._halt(PROTECTIVE_STOP)

    def safeguard_stop(self) -> None:
        self._halt(SAFEGUARD_STOP)

    def safeguard_reset(self) -> None:
        """The light curtain clears: the controller leaves SAFEGUARD_STOP by itself."""
        self.safety_mode = NORMAL

    def press_estop(self) -> None:
        self.estop_pressed = True
        self._halt(ROBOT_EMERGENCY_STOP)

    def release_estop(self) -> None:
        """The button is twisted out: safety NORMAL again, but the arm is powered off."""
        self.estop_pressed = False
        self.safety_mode = NORMAL
        self.robot_mode = POWER_OFF

    def enter_safety_mode(self, mode: int) -> None:
        """Any other safety mode (RECOVERY, VIOLATION, FAULT, ...)."""
        self._halt(mode)

    def drop_link(self) -> None:
        self.link_up = False

    def restore_link(self) -> None:
        self.link_up = True

    # ------------------------------------------------------------------ internals
    def _halt(self, safety_mode: int) -> None:
        self.safety_mode = safety_mode
        self.program_running = False
        self.target = None
        self.qd = np.zeros(6)

    def _can_move(self) -> bool:
        return self.program_running and self.safety_mode in (NORMAL, REDUCED) and self.robot_mode == RUNNING

    def _advance(self, dt: float) -> None:
        if self.target is None or not self._can_move():
            self.qd = np.zeros(6)
            return
        step = np.clip(self.target - self.q, -self.max_speed * dt, self.max_speed * dt)
        self.q = self.q + step
        self.qd = step / dt


class _Link:
    """What the three ur_rtde handles share: a connection that can drop and come back."""

    def __init__(self, controller: URController, hostname: str) -> None:
        self._c = controller
        self.hostname = hostname
        self._record("__init__", hostname)
        if not controller.link_up:
            raise RuntimeError(f"One of the RTDE input registers are already in use! / cannot connect to {hostname}")
        self._open = True

    def _record(self, name: str, *args: Any) -> None:
        self._c.calls.append((name, *args))

    def _check(self) -> None:
        if not self.isConnected():
            raise RuntimeError("RTDE: not connected to the robot")

    def isConnected(self) -> bool:
        return self._open and self._c.link_up

    def disconnect(self) -> None:
        self._record("disconnect")
        self._open = False

    def reconnect(self) -> bool:
        self._record("reconnect")
        self._open = self._c.link_up
        return self._open


class RTDEReceiveInterface(_Link):
    def getActualQ(self) -> list[float]:
        self._check()
        return self._c.q.tolist()

    def getActualQd(self) -> list[float]:
        self._check()
        return self._c.qd.tolist()

    def getSafetyMode(self) -> int:
        self._check()
        return self._c.safety_mode

    def getRobotMode(self) -> int:
        self._check()
        return self._c.robot_mode

    def isProtectiveStopped(self) -> bool:
        self._check()
        return self._c.safety_mode == PROTECTIVE_STOP

    def isEmergencyStopped(self) -> bool:
        self._check()
        return self._c.safety_mode in (SYSTEM_EMERGENCY_STOP, ROBOT_EMERGENCY_STOP)


class RTDEControlInterface(_Link):
    def __init__(self, controller: URController, hostname: str) -> None:
        super().__init__(controller, hostname)
        self._upload()

    def _upload(self) -> bool:
        if self._c.safety_mode in (NORMAL, REDUCED) and self._c.robot_mode == RUNNING:
            self._c.program_running = True
        return self._c.program_running

    def reconnect(self) -> bool:
        ok = super().reconnect()
        if ok:
            self._upload()  # ur_rtde re-sends its control script on reconnect
        return ok

    def servoJ(self, q: list[float], speed: float, acceleration: float, time: float,
               lookahead_time: float, gain: float) -> bool:
        self._record("servoJ", list(q), speed, acceleration, time, lookahead_time, gain)
        self._check()
        for value, low, high, name in ((speed, 0.0, 3.14, "speed"), (acceleration, 0.0, 40.0, "acceleration"),
                                       (lookahead_time, 0.03, 0.2, "lookahead_time"), (gain, 100, 2000, "gain")):
            if not low <= value <= high:
                raise ValueError(f"{name} {value} is not within [{low}, {high}]")
        if len(q) != 6 or not np.all(np.isfinite(q)):
            raise ValueError("servoJ: q must be 6 finite values")
        if not self._c._can_move():
            return False
        self._c.target = np.array(q, dtype=float)
        self._c._advance(time)
        return True

    def servoStop(self, a: float = 10.0) -> bool:
        self._record("servoStop", a)
        self._check()
        self._c.target = None
        self._c.qd = np.zeros(6)
        return True

    def stopJ(self, a: float = 2.0, asynchronous: bool = False) -> None:
        self._record("stopJ", a)
        self._check()
        self._c.target = None
        self._c.qd = np.zeros(6)

    def isProgramRunning(self) -> bool:
        self._check()
        return self._c.program_running

    def getRobotStatus(self) -> int:
        """Bits 0-3: power on | program running | teach button pressed | power button pressed."""
        self._check()
        return int(self._c.robot_mode >= 4) | (int(self._c.program_running) << 1)

    def reuploadScript(self) -> bool:
        self._record("reuploadScript")
        self._check()
        return self._upload()


class DashboardClient(_Link):
    def __init__(self, controller: URController, hostname: str) -> None:
        self._c = controller
        self.hostname = hostname
        self._open = False
        self._record("DashboardClient", hostname)

    def connect(self, timeout_ms: int = 2000) -> None:
        self._record("connect")
        if not self._c.link_up:
            raise RuntimeError(f"Dashboard: could not connect to {self.hostname}:29999")
        self._open = True

    def unlockProtectiveStop(self) -> None:
        self._record("unlockProtectiveStop")
        self._check()
        if self._c.safety_mode == PROTECTIVE_STOP and self._c.unlock_refusals > 0:
            self._c.unlock_refusals -= 1  # ur_rtde throws std::logic_error: RuntimeError in Python
            raise RuntimeError("Unlock protective stop failure: Cannot unlock protective stop until 5s after "
                               "occurrence. Always inspect cause of protective stop before unlocking")
        if self._c.safety_mode == PROTECTIVE_STOP:
            self._c.safety_mode = NORMAL

    def closeSafetyPopup(self) -> None:
        self._record("closeSafetyPopup")
        self._check()

    def restartSafety(self) -> None:
        self._record("restartSafety")
        self._check()
        if self._c.safety_mode in (VIOLATION, FAULT):
            self._c.safety_mode = NORMAL
            self._c.robot_mode = POWER_OFF

    def powerOn(self) -> None:
        self._record("powerOn")
        self._check()
        if self._c.safety_mode in (NORMAL, REDUCED) and self._c.robot_mode == POWER_OFF:
            self._c.robot_mode = IDLE

    def brakeRelease(self) -> None:
        self._record("brakeRelease")
        self._check()
        if self._c.robot_mode == IDLE:
            self._c.robot_mode = RUNNING
