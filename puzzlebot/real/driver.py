"""The driver the agent talks to: one backend behind the safety layer, with an explicit state machine.

    DISCONNECTED --connect--> IDLE --activate--> ACTIVE
          ^                     ^                  | fault (arm or sensor)
          |                     | clear_faults     v
          +----disconnect------ FAULT <------------+        estop() from anywhere -> ESTOPPED
                                                            (also cleared only by clear_faults)

Rules it enforces: every command passes the `SafetyLayer`; a fault or e-stop stops the arm
and latches until `clear_faults()` is called explicitly; after a fault, a clear or a
reconnect the safety reference is resynchronised to the measured joints, so the arm never
jumps; leaving the context manager always stops the arm and disconnects, exception or not.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from puzzlebot.real.calibration import RobotCalibration
from puzzlebot.real.interface import (
    LATCHING,
    Command,
    Fault,
    FaultKind,
    NotConnectedError,
    RobotBackend,
    RobotState,
)
from puzzlebot.real.safety import SafetyConfig, SafetyLayer, SafetyReport


class DriverState(enum.Enum):
    DISCONNECTED = "disconnected"
    IDLE = "idle"
    ACTIVE = "active"
    FAULT = "fault"
    ESTOPPED = "estopped"


class DriverError(RuntimeError):
    """A call the driver's state does not allow (e.g. commanding while FAULT)."""


class Recorder(Protocol):
    """What the driver logs to (`puzzlebot.real.recording.EpisodeWriter` satisfies it)."""

    def log_state(self, state: RobotState) -> None: ...

    def log_command(self, raw: Command, report: SafetyReport) -> None: ...

    def log_sent(self, command: Command, origin: str) -> None: ...

    def log_fault(self, fault: Fault) -> None: ...

    def log_event(self, text: str, **data: object) -> None: ...


class Driver:
    """Owns one RobotBackend and its SafetyLayer; the only way commands reach an arm."""

    def __init__(self, backend: RobotBackend, safety: SafetyConfig | None = None,
                 calibration: RobotCalibration | None = None, address: str = "",
                 recorder: Recorder | None = None, clock: Callable[[], float] = time.monotonic,
                 max_state_age: float = 0.1):
        self.backend = backend
        self.capabilities = backend.capabilities
        self.safety = SafetyLayer(self.capabilities, safety or SafetyConfig(), backend.forward_kinematics)
        self.calibration = calibration
        self.address = address
        self.recorder = recorder
        self.clock = clock
        self.state = DriverState.DISCONNECTED
        self.last_state: RobotState | None = None
        self.fault: Fault | None = None
        self.max_state_age = max_state_age
        self.stale_states = 0  # late or repeated states (each logged as COMMS)
        self.dropped_states = 0  # states that never arrived (gaps in seq)
        self._newest_seq: int | None = None
        self._fresh = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Driver:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect, read the arm, resync the safety reference: IDLE (or FAULT if the arm reports one)."""
        if self.state is not DriverState.DISCONNECTED:
            return
        self.backend.connect()
        self._newest_seq = None
        self._event("connect")
        self.state = DriverState.IDLE
        measured = self.read_state()
        if self.state is DriverState.IDLE:
            self.safety.resync(measured.joint_positions, measured.t)

    def activate(self) -> None:
        """IDLE -> ACTIVE: checks the calibration first (a mismatch refuses to enable the arm)."""
        if self.state is not DriverState.IDLE:
            raise DriverError(f"activate() needs IDLE, the driver is {self.state.value}")
        if self.calibration is not None:
            self.calibration.verify(self.capabilities, self.address)
        self.state = DriverState.ACTIVE
        self._event("activate")

    def close(self) -> None:
        """Stop the arm (always) and disconnect; safe to call in any state, twice."""
        if self.state is DriverState.DISCONNECTED:
            return
        try:
            self._stop_arm()
        finally:
            try:
                self.backend.disconnect()
            finally:
                self.state = DriverState.DISCONNECTED
                self._event("disconnect")

    # ------------------------------------------------------------------ sensing
    def read_state(self) -> RobotState:
        """Read the arm; a fault reported by it (or a NaN reading) stops the arm and latches FAULT."""
        self._require_connected()
        try:
            # Every reading since the last read, not only the newest: a backend measuring faster
            # than it is read skips readings, and a skipped reading is not a lost one.
            states = self.backend.read_new_states(block=True)
        except NotConnectedError as err:
            self._on_fault(Fault(FaultKind.DISCONNECTED, f"lost the arm: {err}", self.clock()))
            raise
        if not states:
            raise NotConnectedError(f"{type(self.backend).__name__}.read_new_states(block=True) returned no state")
        state = states[-1]
        if self.recorder is not None:  # the reading acted on (a replay serves one per read)
            self.recorder.log_state(state)
        measured_faults = tuple(f for s in states for f in s.faults)
        for fault in measured_faults + tuple(self.backend.faults()):
            if fault.kind in LATCHING:
                self._on_fault(fault)
                break
        age = self.clock() - state.t
        previous = self._newest_seq
        repeated = previous is not None and state.seq <= previous
        if age > self.max_state_age or repeated:  # late or repeated: flagged, never passed off as fresh
            self.stale_states += 1
            why = "repeats an older reading" if repeated else f"is {age * 1000:.0f} ms old"
            self._log_comms(f"state seq {state.seq} {why}")
        seqs = [previous] * (previous is not None) + [s.seq for s in states]
        lost = sum(max(b - a - 1, 0) for a, b in zip(seqs, seqs[1:], strict=False))
        if lost:
            self.dropped_states += lost
            self._log_comms(f"{lost} state(s) lost before seq {state.seq}")
        self._newest_seq = max(state.seq, previous or 0)
        readings = (state.joint_positions, state.joint_velocities, state.tcp_position)
        if not all(np.all(np.isfinite(r)) for r in readings):
            self._on_fault(Fault(FaultKind.SENSOR_INVALID, f"non-finite reading at seq {state.seq}", state.t))
        elif age <= self.max_state_age and not repeated:
            self.last_state = state
        self._fresh = self.last_state is state
        return state

    def _log_comms(self, message: str) -> None:
        if self.recorder is not None:
            self.recorder.log_fault(Fault(FaultKind.COMMS, message, self.clock()))

    @property
    def state_is_fresh(self) -> bool:
        """Whether the newest reading was fresh, new and finite (an agent must not act on a stale one)."""
        return self._fresh and self.last_state is not None

    # ------------------------------------------------------------------ acting
    def send(self, command: Command) -> SafetyReport:
        """Filter `command` through the safety layer and forward what it allows; returns the report."""
        if self.state is not DriverState.ACTIVE:
            raise DriverError(f"commands need ACTIVE, the driver is {self.state.value}"
                              + (f" ({self.fault.kind.value}: {self.fault.message})" if self.fault else ""))
        report = self.safety.filter(command, self.clock())
        if report.sent is not None:
            self.backend.send(report.sent)
        if self.recorder is not None:
            self.recorder.log_command(command, report)
        return report

    def tick(self) -> bool:
        """Call every control period: holds the arm if commands stopped arriving; True if it did."""
        now = self.clock()
        if self.state is DriverState.ACTIVE and self.safety.watchdog_expired(now):
            hold = self.safety.hold_command(now)
            self.backend.send(hold)
            if self.recorder is not None:
                self.recorder.log_sent(hold, "watchdog")
                self.recorder.log_fault(Fault(FaultKind.WATCHDOG, "no command in time: holding", now))
            return True
        return False

    def estop(self, reason: str = "operator e-stop") -> None:
        """Stop everything now; only an explicit clear_faults() re-enables."""
        fault = Fault(FaultKind.EMERGENCY_STOP, reason, self.clock())
        self._stop_arm()
        self.safety.trip(fault)
        self.fault = fault
        self.state = DriverState.ESTOPPED
        if self.recorder is not None:
            self.recorder.log_fault(fault)

    def clear_faults(self) -> None:
        """Explicitly acknowledge faults: reconnect if needed, clear the arm's, resync -> IDLE."""
        if self.state not in (DriverState.FAULT, DriverState.ESTOPPED):
            return
        if not self.backend.is_connected:
            self.backend.connect()
            self._newest_seq = None
            self._event("reconnect")
        self.backend.clear_faults()
        remaining = [f for f in self.backend.faults() if f.kind in LATCHING]
        if remaining:
            raise DriverError(f"the arm still reports {remaining[0].kind.value}: {remaining[0].message}")
        state = self.backend.read_state()
        if not np.all(np.isfinite(state.joint_positions)):
            raise DriverError("the arm still reports non-finite joint readings")
        self.safety.clear(state.joint_positions, state.t)
        self.last_state = state
        self.fault = None
        self.state = DriverState.IDLE
        self._event("clear_faults")

    # ------------------------------------------------------------------ internals
    def _on_fault(self, fault: Fault) -> None:
        if self.state in (DriverState.FAULT, DriverState.ESTOPPED):
            return
        self._stop_arm()
        self.safety.trip(fault)
        self.fault = fault
        self.state = DriverState.ESTOPPED if fault.kind is FaultKind.EMERGENCY_STOP else DriverState.FAULT
        if self.recorder is not None:
            self.recorder.log_fault(fault)

    def _stop_arm(self) -> None:
        try:
            if self.backend.is_connected:
                self.backend.stop()
        except Exception as err:  # the arm must be told to stop even if the link is failing; record why not
            self._event("stop_failed", error=repr(err))

    def _require_connected(self) -> None:
        if self.state is DriverState.DISCONNECTED:
            raise NotConnectedError("the driver is not connected: call connect() or use it as a context manager")

    def _event(self, text: str, **data: object) -> None:
        if self.recorder is not None:
            self.recorder.log_event(text, **data)
