"""A fake UFACTORY xArm 6 control box behind xarm-python-sdk's `XArmAPI` surface.

`XArmController` is the robot: joints, mode, state, error/warn codes, the e-stop button, an xArm
Gripper and the network link. `sdk()` returns a namespace with `XArmAPI` bound to it.

Behaviour copied from the SDK (xarm/x3/base.py, decorator.py, code.py) and the controller:
  * return codes: 0 ok, -1 not connected (APIState.NOT_CONNECTED, getters return (-1, msg)),
    1 uncleared error (move commands only), 9 not ready (mode/state wrong), -8 out of joint range;
  * `is_radian` (constructor default, per-call override) selects rad or degrees, as in the SDK;
  * set_servo_angle_j needs mode 1 and a ready state; each get_joint_states() advances the arm
    toward its target by `max_speed * dt`;
  * an error halts the arm (state 4); clean_error() clears it unless the e-stop is still pressed,
    then motion_enable(True) + set_state(0) make it ready again; an e-stop cuts motor power.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np

NOT_CONNECTED, HAS_ERROR, NOT_READY, OUT_OF_RANGE = -1, 1, 9, -8
STATE_MOVING, STATE_READY, STATE_STOP = 1, 2, 4
# xArm 6 joint ranges (the SDK's XCONF.Robot.JOINT_LIMITS, XARM6_X4), rad.
LOWER = np.array([-2 * math.pi, -2.059488, -3.92699, -2 * math.pi, -1.692969, -2 * math.pi])
UPPER = np.array([2 * math.pi, 2.094395, 0.191986, 2 * math.pi, math.pi, 2 * math.pi])


class XArmController:
    """The simulated control box and arm."""

    def __init__(self, q0: tuple[float, ...] = (0.0, -0.5, -0.5, 0.0, 1.0, 0.0), max_speed: float = 1.0,
                 dt: float = 0.01) -> None:
        self.q = np.array(q0, dtype=float)
        self.qd = np.zeros(6)
        self.target: np.ndarray | None = None
        self.max_speed, self.dt = max_speed, dt
        self.mode = 0
        self.state = STATE_STOP
        self.motion_enabled = False
        self.error_code = 0
        self.warn_code = 0
        self.estop_pressed = False
        self.link_up = True
        self.gripper_pulse = 850.0
        self.calls: list[tuple] = []

    # ------------------------------------------------------------------ what tests use
    def sdk(self) -> SimpleNamespace:
        """The xarm.wrapper surface, with XArmAPI bound to this controller."""
        controller = self

        class _XArmAPI(XArmAPI):
            def __init__(self, port: str | None = None, is_radian: bool = False, do_not_open: bool = False,
                         **kwargs: Any) -> None:
                super().__init__(controller, port, is_radian, do_not_open)

        return SimpleNamespace(XArmAPI=_XArmAPI)

    def called(self, name: str) -> int:
        return sum(1 for call in self.calls if call[0] == name)

    def inject_error(self, code: int) -> None:
        """A controller error: the arm stops in state 4 until cleaned and re-enabled."""
        self.error_code = code
        self.state = STATE_STOP
        self.target = None
        self.qd = np.zeros(6)

    def press_estop(self) -> None:
        self.estop_pressed = True
        self.motion_enabled = False
        self.inject_error(1)

    def release_estop(self) -> None:
        self.estop_pressed = False

    def drop_link(self) -> None:
        self.link_up = False

    def restore_link(self) -> None:
        self.link_up = True

    # ------------------------------------------------------------------ internals
    def ready(self) -> bool:
        return self.error_code == 0 and self.motion_enabled and self.state in (STATE_MOVING, STATE_READY)

    def advance(self) -> None:
        if self.target is None or not self.ready():
            self.qd = np.zeros(6)
            return
        step = np.clip(self.target - self.q, -self.max_speed * self.dt, self.max_speed * self.dt)
        self.q = self.q + step
        self.qd = step / self.dt
        self.state = STATE_MOVING if np.any(step) else STATE_READY


class XArmAPI:
    """The subset of xarm.wrapper.XArmAPI a backend uses, same names and return conventions."""

    def __init__(self, controller: XArmController, port: str | None, is_radian: bool, do_not_open: bool) -> None:
        self._c = controller
        self.port = port
        self.default_is_radian = is_radian
        self._open = False
        self._record("XArmAPI", port, is_radian)
        if not do_not_open:
            self.connect()

    def _record(self, name: str, *args: Any) -> None:
        self._c.calls.append((name, *args))

    def _to_rad(self, values: list[float], is_radian: bool | None) -> np.ndarray:
        radian = self.default_is_radian if is_radian is None else is_radian
        arr = np.asarray(values, dtype=float)
        return arr if radian else np.radians(arr)

    def _from_rad(self, values: np.ndarray, is_radian: bool | None) -> list[float]:
        radian = self.default_is_radian if is_radian is None else is_radian
        return (values if radian else np.degrees(values)).tolist()

    # ------------------------------------------------------------------ connection
    def connect(self, port: str | None = None, **kwargs: Any) -> None:
        self._record("connect")
        if not self._c.link_up:
            raise Exception(f"can not connect to port/ip {self.port}")  # what the SDK raises
        self._open = True

    def disconnect(self) -> None:
        self._record("disconnect")
        self._open = False

    @property
    def connected(self) -> bool:
        return self._open and self._c.link_up

    # ------------------------------------------------------------------ reported state
    @property
    def error_code(self) -> int:
        return self._c.error_code

    @property
    def warn_code(self) -> int:
        return self._c.warn_code

    @property
    def state(self) -> int:
        return self._c.state

    @property
    def mode(self) -> int:
        return self._c.mode

    # ------------------------------------------------------------------ setters
    def motion_enable(self, enable: bool = True, servo_id: int | None = None) -> int:
        self._record("motion_enable", enable)
        if not self.connected:
            return NOT_CONNECTED
        if not self._c.estop_pressed:
            self._c.motion_enabled = enable
        return 0

    def set_mode(self, mode: int = 0, detection_param: int = 0) -> int:
        self._record("set_mode", mode)
        if not self.connected:
            return NOT_CONNECTED
        self._c.mode = mode
        return 0

    def set_state(self, state: int = 0) -> int:
        self._record("set_state", state)
        if not self.connected:
            return NOT_CONNECTED
        if state == STATE_STOP:
            self._c.state = STATE_STOP
            self._c.target = None
            self._c.qd = np.zeros(6)
        elif state == 0 and self._c.error_code == 0 and self._c.motion_enabled:
            self._c.state = STATE_READY
        return 0

    def clean_error(self) -> int:
        self._record("clean_error")
        if not self.connected:
            return NOT_CONNECTED
        if not (self._c.estop_pressed and self._c.error_code in (1, 2, 3)):
            self._c.error_code = 0
        self._c.state = STATE_STOP
        return 0

    def clean_warn(self) -> int:
        self._record("clean_warn")
        if not self.connected:
            return NOT_CONNECTED
        self._c.warn_code = 0
        return 0

    def emergency_stop(self) -> None:
        self._record("emergency_stop")
        self.set_state(STATE_STOP)
        self.motion_enable(True)
        self.set_state(0)

    def set_servo_angle_j(self, angles: list[float], speed: float | None = None, mvacc: float | None = None,
                          mvtime: float | None = None, is_radian: bool | None = None, **kwargs: Any) -> int:
        self._record("set_servo_angle_j", list(angles), is_radian)
        if not self.connected:
            return NOT_CONNECTED
        q = self._to_rad(list(angles)[:6], is_radian)
        if np.any(q < LOWER) or np.any(q > UPPER):
            return OUT_OF_RANGE
        if self._c.error_code:
            return HAS_ERROR
        if self._c.mode != 1 or not self._c.ready():
            return NOT_READY
        self._c.target = q
        return 0

    # ------------------------------------------------------------------ getters
    def get_joint_states(self, is_radian: bool | None = None, num: int = 3) -> tuple[int, Any]:
        self._record("get_joint_states")
        if not self.connected:
            return NOT_CONNECTED, "xArm is not connect"
        self._c.advance()
        pad = np.zeros(7)
        pos, vel = pad.copy(), pad.copy()
        pos[:6], vel[:6] = self._c.q, self._c.qd
        result = [self._from_rad(pos, is_radian), self._from_rad(vel, is_radian), [0.0] * 7][:num]
        return 0, result

    def get_servo_angle(self, servo_id: int | None = None, is_radian: bool | None = None,
                        is_real: bool = False) -> tuple[int, Any]:
        if not self.connected:
            return NOT_CONNECTED, "xArm is not connect"
        return 0, self._from_rad(np.append(self._c.q, 0.0), is_radian)

    # ------------------------------------------------------------------ gripper
    def set_gripper_mode(self, mode: int, **kwargs: Any) -> int:
        self._record("set_gripper_mode", mode)
        return 0 if self.connected else NOT_CONNECTED

    def set_gripper_enable(self, enable: bool, **kwargs: Any) -> int:
        self._record("set_gripper_enable", enable)
        return 0 if self.connected else NOT_CONNECTED

    def set_gripper_position(self, pos: float, wait: bool = False, speed: float | None = None,
                             auto_enable: bool = False, timeout: float | None = None, **kwargs: Any) -> int:
        self._record("set_gripper_position", pos)
        if not self.connected:
            return NOT_CONNECTED
        self._c.gripper_pulse = float(np.clip(pos, -10.0, 850.0))
        return 0

    def get_gripper_position(self, **kwargs: Any) -> tuple[int, Any]:
        if not self.connected:
            return NOT_CONNECTED, None
        return 0, self._c.gripper_pulse
