"""An in-memory arm for driver tests: joints follow commands exactly; faults are injected by hand."""

from __future__ import annotations

import numpy as np

from puzzlebot.real.interface import (
    Capabilities,
    Command,
    Fault,
    FaultKind,
    NotConnectedError,
    RobotBackend,
    RobotState,
)

CAPS = Capabilities(
    name="fake3",
    joint_names=("j1", "j2", "j3"),
    joint_lower=np.full(3, -2.0),
    joint_upper=np.full(3, 2.0),
    max_joint_velocity=np.full(3, 1.0),
    max_joint_acceleration=np.full(3, 10.0),
    control_hz=25.0,
)


class FakeArm(RobotBackend):
    def __init__(self, start=(0.0, 0.0, 0.0)):
        self.q = np.array(start, dtype=float)
        self.connected = False
        self.sent: list[Command] = []
        self.stops = 0
        self.active_faults: list[Fault] = []
        self.seq = 0
        self.t = 0.0
        self.nan_next = False
        self.cleared = 0

    @property
    def capabilities(self) -> Capabilities:
        return CAPS

    def connect(self) -> None:
        self.connected = True
        self.active_faults = [f for f in self.active_faults if f.kind is not FaultKind.DISCONNECTED]

    def disconnect(self) -> None:
        self.connected = False

    @property
    def is_connected(self) -> bool:
        return self.connected

    def read_state(self) -> RobotState:
        if not self.connected:
            raise NotConnectedError("fake arm unplugged")
        self.seq += 1
        self.t += 0.04
        q = np.full(3, np.nan) if self.nan_next else self.q.copy()
        self.nan_next = False
        return RobotState(self.seq, self.t, q, np.zeros(3), self.forward_kinematics(self.q), np.array([1.0, 0, 0, 0]),
                          0.0, tuple(self.active_faults))

    def send(self, command: Command) -> None:
        if not self.connected:
            raise NotConnectedError("fake arm unplugged")
        self.sent.append(command)
        self.q = np.array(command.target, dtype=float)

    def stop(self) -> None:
        self.stops += 1

    def faults(self) -> tuple[Fault, ...]:
        return tuple(self.active_faults)

    def clear_faults(self) -> None:
        self.cleared += 1
        self.active_faults = []

    def forward_kinematics(self, joint_positions: np.ndarray) -> np.ndarray:
        return 0.1 * np.asarray(joint_positions, dtype=float)

    # test hooks
    def unplug(self) -> None:
        self.connected = False
        self.active_faults.append(Fault(FaultKind.DISCONNECTED, "cable", self.t))

    def protective_stop(self) -> None:
        self.active_faults.append(Fault(FaultKind.PROTECTIVE_STOP, "collision detected", self.t, vendor_code=3))
