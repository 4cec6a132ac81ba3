"""The safety layer every command passes before it reaches an arm backend.

Pure and deterministic: no I/O, threads or clocks (the caller passes time in), so every rule
is testable exactly. The layer keeps a *reference* (the last target sent, or the measured
position after `resync`) and moves it towards each requested target no faster than the limits
allow. Anything it cannot make safe by clipping it refuses: NaN/Inf, wrong shapes, targets
outside the workspace box (moving somewhere other than asked is worse than not moving) and
every command while a latching fault is active. Order of precedence in joint mode: joint limits
and the jump cap are hard, velocity and acceleration are limited within them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from puzzlebot.real.interface import LATCHING, Capabilities, Command, ControlMode, Fault

_EPS_T = 1e-6  # s: command times closer than this count as "no time passed"
_EPS = 1e-9  # tolerance for reporting a change (and for the quaternion norm)


@dataclass(frozen=True)
class SafetyConfig:
    """Limits of the safety layer; velocity/acceleration are fractions of the arm's own."""

    joint_margin: float = 0.05
    """Kept inside the hard joint limits, rad (~3 deg: room for tracking overshoot)."""
    max_joint_step: float = 0.1
    """Largest change of any joint target per command, rad: the jump cap (2.5 rad/s at 25 Hz,
    a backstop above the velocity limit)."""
    velocity_scale: float = 0.5
    """Fraction of `Capabilities.max_joint_velocity` the target stream may use, (0, 1]."""
    acceleration_scale: float = 0.5
    """Fraction of `Capabilities.max_joint_acceleration` the target stream may use, (0, 1]."""
    max_tcp_step: float = 0.02
    """Largest TCP target translation per command in EE mode, m (twice the sim env's
    `max_translation`, so a full policy action passes uncapped)."""
    workspace_low: tuple[float, float, float] = (-0.45, -0.30, 0.01)
    """Lower corner of the TCP box, world frame, m (the sim env's `workspace_low`)."""
    workspace_high: tuple[float, float, float] = (0.20, 0.30, 0.55)
    """Upper corner of the TCP box, world frame, m (the sim env's `workspace_high`)."""
    watchdog_s: float = 0.25
    """Silence after which the arm is held, s (about six commands at 25 Hz)."""
    grip_min: float = 0.0
    """Lowest grip closure sent, in [0, 1] (0 open)."""
    grip_max: float = 1.0
    """Highest grip closure sent, in [0, 1] (1 closed)."""

    def __post_init__(self) -> None:
        if not (self.joint_margin >= 0.0 and np.isfinite(self.joint_margin)):
            raise ValueError(f"SafetyConfig.joint_margin: {self.joint_margin} must be finite and >= 0")
        for name in ("max_joint_step", "max_tcp_step", "watchdog_s"):
            if not (getattr(self, name) > 0.0 and np.isfinite(getattr(self, name))):
                raise ValueError(f"SafetyConfig.{name}: {getattr(self, name)} must be finite and > 0")
        for name in ("velocity_scale", "acceleration_scale"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"SafetyConfig.{name}: {getattr(self, name)} must be in (0, 1]")
        for name in ("workspace_low", "workspace_high"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != (3,) or not np.all(np.isfinite(value)):
                raise ValueError(f"SafetyConfig.{name}: {getattr(self, name)} must be 3 finite numbers (m)")
        if not np.all(np.asarray(self.workspace_low) < np.asarray(self.workspace_high)):
            raise ValueError(f"SafetyConfig.workspace_low: {self.workspace_low} must be below "
                             f"workspace_high {self.workspace_high} on every axis")
        if not 0.0 <= self.grip_min < self.grip_max <= 1.0:
            raise ValueError(f"SafetyConfig.grip_min/grip_max: need 0 <= grip_min < grip_max <= 1, "
                             f"got {self.grip_min}, {self.grip_max}")


@dataclass(frozen=True)
class SafetyReport:
    """What the layer did with one command."""

    sent: Command | None
    """The command actually forwarded to the backend; None when rejected."""
    rejected: bool
    reason: str = ""
    """Why the command was rejected (empty when sent)."""
    changes: tuple[str, ...] = ()
    """Human-readable list of what was modified on the way (clips, caps, limits)."""


class SafetyLayer:
    """Filters commands for one arm: refuses the unsafe, limits the rest, holds on silence.

    Args:
        capabilities: The backend's joint limits, velocity/acceleration limits and rate.
        config: The layer's own limits.
        forward_kinematics: Joint positions (dof,) -> TCP position (3,), world frame, m.
    """

    def __init__(self, capabilities: Capabilities, config: SafetyConfig,
                 forward_kinematics: Callable[[np.ndarray], np.ndarray]) -> None:
        self.capabilities = capabilities
        self.config = config
        self._fk = forward_kinematics
        self._lo = np.asarray(capabilities.joint_lower, dtype=float) + config.joint_margin
        self._hi = np.asarray(capabilities.joint_upper, dtype=float) - config.joint_margin
        if not np.all(self._lo < self._hi):
            raise ValueError(f"SafetyConfig.joint_margin: {config.joint_margin} rad leaves no range inside the "
                             f"limits of {capabilities.name}")
        self._vmax = np.asarray(capabilities.max_joint_velocity, dtype=float) * config.velocity_scale
        self._amax = np.asarray(capabilities.max_joint_acceleration, dtype=float) * config.acceleration_scale
        for name, limit in (("max_joint_velocity", self._vmax), ("max_joint_acceleration", self._amax)):
            if limit.shape != (capabilities.dof,) or not np.all((limit > 0) & np.isfinite(limit)):
                raise ValueError(f"Capabilities.{name}: need {capabilities.dof} finite values > 0 for "
                                 f"{capabilities.name}")
        self._ws_lo = np.asarray(config.workspace_low, dtype=float)
        self._ws_hi = np.asarray(config.workspace_high, dtype=float)
        self._period = 1.0 / capabilities.control_hz
        self._synced = False
        self._fault: Fault | None = None
        self._mode = ControlMode.JOINT  # the space the reference lives in
        self._q = np.zeros(capabilities.dof)  # joint reference, rad
        self._v = np.zeros(capabilities.dof)  # its velocity, rad/s
        self._p = np.zeros(3)  # TCP position reference, m
        self._quat: np.ndarray | None = None  # TCP orientation reference (EE mode only)
        self._grip = 0.0
        self._t = 0.0  # time of the last sent command (or of the resync)
        self._fresh = True  # no command sent since the resync

    @property
    def latched(self) -> bool:
        """True while a latching fault halts everything (until `clear`)."""
        return self._fault is not None

    @property
    def active_fault(self) -> Fault | None:
        """The fault that latched the layer, if any."""
        return self._fault

    @property
    def synced(self) -> bool:
        """True once `resync` (or `clear`) has set the reference to a measured position."""
        return self._synced

    @property
    def reference(self) -> np.ndarray:
        """The joint reference: the last joint target sent, or the resynced measurement."""
        return self._q.copy()

    def resync(self, measured_joints: np.ndarray, t: float, grip: float | None = None) -> None:
        """Restart from where the arm really is, at rest, so the next command cannot jump.

        Call after connect, after any fault, after `clear` and after a reconnect.

        Args:
            measured_joints: Measured joint positions (dof,), rad.
            t: Time of the resync (starts the watchdog), s.
            grip: Measured grip; None keeps the last commanded one (a held object stays held).
        """
        q = np.array(measured_joints, dtype=float)
        if q.shape != (self.capabilities.dof,) or not np.all(np.isfinite(q)):
            raise ValueError(f"resync: measured joints must be {self.capabilities.dof} finite numbers, got {q}")
        self._q, self._v = q, np.zeros_like(q)
        self._p = self._tcp(q)
        self._mode, self._quat = ControlMode.JOINT, None
        if grip is not None and np.isfinite(grip):
            self._grip = float(np.clip(grip, self.config.grip_min, self.config.grip_max))
        self._t, self._fresh, self._synced = float(t), True, True

    def trip(self, fault: Fault) -> bool:
        """Record a fault; latching kinds (stops, disconnects, ...) halt all commands until `clear`.

        Returns:
            Whether the layer is latched now. The first latching fault is kept as the cause.
        """
        if fault.kind in LATCHING and self._fault is None:
            self._fault = fault
        return self.latched

    def clear(self, measured_joints: np.ndarray, t: float, grip: float | None = None) -> None:
        """Explicitly acknowledge the fault and resync: the only way out of a latch."""
        self.resync(measured_joints, t, grip)
        self._fault = None

    def watchdog_expired(self, t: float) -> bool:
        """True when nothing was sent for more than `watchdog_s` (since the last command or resync)."""
        return self._synced and t - self._t > self.config.watchdog_s

    def hold_command(self, t: float) -> Command:
        """The command that holds the arm at its reference (sent by the driver on watchdog expiry).

        Holds in the space of the reference (JOINT, or EE after EE commands: a stale joint
        reference would move the arm) and keeps the grip. The held arm is at rest, so the next
        command accelerates from zero; the watchdog stays expired until a command is sent.
        """
        if not self._synced:
            raise RuntimeError("hold_command: not synced to a measured position (call resync first)")
        self._v = np.zeros_like(self._v)
        if self._mode is ControlMode.EE and self._quat is not None:
            return Command(ControlMode.EE, np.concatenate([self._p, self._quat]), self._grip, t)
        return Command(ControlMode.JOINT, self._q.copy(), self._grip, t)

    def filter(self, command: Command, t: float) -> SafetyReport:
        """Make one command safe, or refuse it.

        Args:
            command: The requested command (its own `t` is ignored; `t` below counts).
            t: Time the command is sent, s (the same clock as `resync`).

        Returns:
            The report; `sent` is the command to forward (None when rejected).
        """
        if self._fault is not None:
            return _reject(f"latched by {self._fault.kind.value} fault ({self._fault.message}): clear it explicitly")
        if not self._synced:
            return _reject("not synced to a measured position: call resync first")
        if command.mode not in self.capabilities.control_modes:
            return _reject(f"control mode {command.mode.value} is not supported by {self.capabilities.name}")
        try:  # a private copy: the caller may reuse its array, the reference must not change with it
            target, grip_in = np.array(command.target, dtype=float), float(command.grip)
        except (TypeError, ValueError):
            return _reject(f"non-numeric target or grip: {command.target!r}, {command.grip!r}")
        shape = (self.capabilities.dof,) if command.mode is ControlMode.JOINT else (7,)
        if target.shape != shape:
            return _reject(f"wrong target shape {target.shape} for {command.mode.value} mode, expected {shape}")
        if not np.all(np.isfinite(target)):
            return _reject(f"non-finite target {target}")
        if not np.isfinite(grip_in):
            return _reject(f"non-finite grip {grip_in}")
        dt = t - self._t
        if dt < -_EPS_T:
            return _reject(f"time went backwards: t={t} before the last command at {self._t}")
        if self._fresh or dt <= _EPS_T:
            dt = self._period
        changes: list[str] = []
        grip = min(max(grip_in, self.config.grip_min), self.config.grip_max)
        if grip != grip_in:
            changes.append(f"grip clipped from {grip_in:.3g} to {grip:.3g}")
        if command.mode is ControlMode.JOINT:
            result = self._filter_joint(target, dt, changes)
        else:
            result = self._filter_ee(target, changes)
        if isinstance(result, str):
            return _reject(result)
        self._grip, self._t, self._fresh = grip, float(t), False
        return SafetyReport(Command(command.mode, result, grip, t), False, "", tuple(changes))

    def _filter_joint(self, target: np.ndarray, dt: float, changes: list[str]) -> np.ndarray | str:
        """Clip, check the workspace, then move the reference towards the goal within the limits."""
        if self._mode is not ControlMode.JOINT:
            return "switching from EE to JOINT control needs a resync to the measured joints"
        goal = np.clip(target, self._lo, self._hi)
        names = self.capabilities.joint_names
        for i in np.flatnonzero(goal != target):
            side = "upper limit - margin" if target[i] > self._hi[i] else "lower limit + margin"
            changes.append(f"clipped joint {i} ({names[i]}) to {side}")
        tcp = self._tcp(goal)
        if not self._in_box(tcp):
            return f"target leaves the workspace box: TCP {np.round(tcp, 4)} outside {self._ws_lo}..{self._ws_hi}"
        q, v, step = self._q, self._v, self.config.max_joint_step
        delta = goal - q
        if (ratio := np.max(np.abs(delta)) / step) > 1.0 + _EPS:
            delta = delta / ratio  # uniform scaling keeps the joint-space direction
            changes.append(f"jump capped to {step:g} rad")
        vel = delta / dt
        # Never faster than the limit, nor than what can still brake to a stop at the goal
        # (no overshoot): the largest v with dt * sum_k max(v - k a dt, 0) <= distance.
        a_dt, dist = self._amax * dt, np.abs(goal - q)
        n = np.floor(0.5 * (-a_dt + np.sqrt(a_dt**2 + 8.0 * self._amax * dist)) / a_dt)
        brake = (dist / dt + a_dt * n * (n + 1) / 2) / (n + 1)
        if (ratio := np.max(np.abs(vel) / np.maximum(np.minimum(self._vmax, brake), 1e-12))) > 1.0 + _EPS:
            vel = vel / ratio
            changes.append("velocity limited")
        if (ratio := np.max(np.abs(vel - v) / a_dt)) > 1.0 + _EPS:
            vel = v + (vel - v) / ratio
            changes.append("acceleration limited")
        sent = q + vel * dt
        # Hard limits win over smoothness; never jumping wins over everything.
        hard = np.clip(np.clip(sent, self._lo, self._hi), q - step, q + step)
        if np.any(np.abs(hard - sent) > _EPS):
            changes.append("clipped to joint limits / jump cap after acceleration limiting")
        sent = hard
        if not np.array_equal(sent, goal):
            tcp = self._tcp(sent)
            # A joint-space line can leave a box that holds both ends (but let an arm that
            # starts outside the box come back in).
            if self._in_box(self._p) and not self._in_box(tcp):
                return f"intermediate target leaves the workspace box: TCP {np.round(tcp, 4)}"
        self._q, self._v, self._p = sent, (sent - q) / dt, tcp
        return sent.copy()

    def _filter_ee(self, target: np.ndarray, changes: list[str]) -> np.ndarray | str:
        """Check the box and the quaternion, normalise it and cap the translation step."""
        pos, quat = target[:3], target[3:]
        if not self._in_box(pos):
            return f"target leaves the workspace box: TCP {np.round(pos, 4)} outside {self._ws_lo}..{self._ws_hi}"
        norm = float(np.linalg.norm(quat))
        if norm < 1e-6:
            return f"quaternion of ~zero norm ({norm:.3g})"
        if abs(norm - 1.0) > _EPS:
            quat = quat / norm
            changes.append(f"quaternion normalised (norm was {norm:.4g})")
        step = pos - self._p
        if (dist := float(np.linalg.norm(step))) > self.config.max_tcp_step + _EPS:
            pos = self._p + step * (self.config.max_tcp_step / dist)
            changes.append(f"TCP step capped to {self.config.max_tcp_step:g} m")
        self._mode, self._p, self._quat = ControlMode.EE, pos, quat
        return np.concatenate([pos, quat])

    def _tcp(self, joints: np.ndarray) -> np.ndarray:
        tcp = np.asarray(self._fk(joints), dtype=float)
        if tcp.shape != (3,):
            raise ValueError(f"forward_kinematics must return a TCP position (3,), got shape {tcp.shape}")
        return tcp

    def _in_box(self, tcp: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(tcp)) and np.all(tcp >= self._ws_lo) and np.all(tcp <= self._ws_hi))


def _reject(reason: str) -> SafetyReport:
    return SafetyReport(None, True, reason, ())
