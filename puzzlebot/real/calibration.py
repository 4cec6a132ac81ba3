"""Robot calibration and settings, persisted as versioned files; a mismatch refuses to enable.

A calibration file pins what a run assumes about the arm: which robot (name and address),
its joint names and limits (a fingerprint of the backend's capabilities), joint zero
offsets and the TCP offset. The driver compares it with the connected backend before the
first motion: deploying with another arm's calibration, or after the controller's limits
changed, stops there with a message naming the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from puzzlebot.files import write_text_atomic
from puzzlebot.real.interface import Capabilities

SCHEMA_VERSION = 1


class CalibrationError(RuntimeError):
    """The calibration file is missing, malformed, or does not match the connected arm."""


def capabilities_fingerprint(capabilities: Capabilities) -> str:
    """A short stable hash of what must not change under a calibration: joints and limits."""
    payload = {
        "name": capabilities.name,
        "joints": list(capabilities.joint_names),
        "lower": np.round(np.asarray(capabilities.joint_lower, dtype=float), 6).tolist(),
        "upper": np.round(np.asarray(capabilities.joint_upper, dtype=float), 6).tolist(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RobotCalibration:
    robot: str
    """Backend name (Capabilities.name), e.g. 'ur5e', 'xarm6', 'so101', 'emulator-jaco'."""
    address: str
    """IP address or serial port the calibration was made on."""
    fingerprint: str
    """`capabilities_fingerprint` of the arm at calibration time."""
    joint_offsets: tuple[float, ...] = ()
    """Zero offsets added to measured joints, rad (empty: none)."""
    tcp_offset: tuple[float, ...] = (0.0, 0.0, 0.0)
    """Tool centre point from the flange, m."""
    schema_version: int = SCHEMA_VERSION
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def for_backend(cls, capabilities: Capabilities, address: str, **kwargs) -> RobotCalibration:
        return cls(robot=capabilities.name, address=address, fingerprint=capabilities_fingerprint(capabilities),
                   **kwargs)

    def save(self, path: str | Path) -> None:
        """Write YAML atomically (tmp file + rename): a crash never leaves half a calibration."""
        path = Path(path)
        data = asdict(self)
        data["joint_offsets"] = list(self.joint_offsets)
        data["tcp_offset"] = list(self.tcp_offset)
        write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> RobotCalibration:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise CalibrationError(f"{path}: calibration file not found (make one before enabling the arm)") from None
        if not isinstance(data, dict):
            raise CalibrationError(f"{path}: not a calibration mapping")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise CalibrationError(f"{path}: schema_version {version!r}, this puzzlebot reads {SCHEMA_VERSION}")
        try:
            data["joint_offsets"] = tuple(float(v) for v in data.get("joint_offsets", ()))
            data["tcp_offset"] = tuple(float(v) for v in data.get("tcp_offset", (0.0, 0.0, 0.0)))
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise CalibrationError(f"{path}: malformed calibration ({err})") from None

    def verify(self, capabilities: Capabilities, address: str) -> None:
        """Raise CalibrationError naming the first field that does not match the connected arm."""
        if self.robot != capabilities.name:
            raise CalibrationError(f"calibration is for robot {self.robot!r}, connected arm is {capabilities.name!r}")
        if self.address != address:
            raise CalibrationError(f"calibration address {self.address!r} differs from the connected {address!r}")
        current = capabilities_fingerprint(capabilities)
        if self.fingerprint != current:
            raise CalibrationError(f"calibration fingerprint {self.fingerprint} differs from the arm's {current}: "
                                   "joint names or limits changed since calibration; recalibrate")
        if self.joint_offsets and len(self.joint_offsets) != capabilities.dof:
            raise CalibrationError(f"joint_offsets has {len(self.joint_offsets)} values, the arm has "
                                   f"{capabilities.dof} joints")
