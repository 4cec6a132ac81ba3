"""Real arm backends: one config dataclass and one driver file per arm.

    ur5e   `ur.URBackend`      (URConfig)     extra `ur`     ur_rtde over RTDE
    xarm6  `xarm.XArmBackend`  (XArmConfig)   extra `xarm`   xarm-python-sdk over TCP
    so101  `so101.SO101Backend` (SO101Config) extra `so101`  Feetech STS3215 bus via scservo_sdk

Importing this package never imports a vendor SDK: each backend imports its own in `connect()`
and, when it is missing, raises ImportError naming the extra (`pip install 'puzzlebot[ur]'`).
Every backend takes an `sdk_factory` so tests drive it against `tests/mocks/`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from puzzlebot.real.arms.common import SdkFactory, VendorArm
from puzzlebot.real.arms.so101 import SO101Backend, SO101Config
from puzzlebot.real.arms.ur import URBackend, URConfig
from puzzlebot.real.arms.xarm import XArmBackend, XArmConfig

#: robot name -> (config class, backend class).
ARMS: dict[str, tuple[type, type[VendorArm]]] = {
    "ur5e": (URConfig, URBackend),
    "xarm6": (XArmConfig, XArmBackend),
    "so101": (SO101Config, SO101Backend),
}
#: robot name -> the config field holding its address.
ADDRESS_FIELD = {"ur5e": "ip", "xarm6": "ip", "so101": "port"}


def make_arm(name: str, config: Any = None, sdk_factory: SdkFactory | None = None, *, address: str | None = None,
             **overrides: Any) -> VendorArm:
    """Build the backend registered as `name`.

    Args:
        name: one of `ARMS` ('ur5e', 'xarm6', 'so101').
        config: an instance of that arm's config class; None: its defaults.
        sdk_factory: returns the vendor SDK surface (tests: a mock); None imports the real SDK on connect.
        address: the arm's IP address (ur5e, xarm6) or serial port (so101), set on the config.
        **overrides: other config fields to replace, e.g. control_hz=50.0.
    """
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}: choose one of {sorted(ARMS)}")
    config_cls, backend_cls = ARMS[name]
    if config is None:
        config = config_cls()
    elif not isinstance(config, config_cls):
        raise TypeError(f"arm {name!r} needs a {config_cls.__name__}, got {type(config).__name__}")
    if address is not None:
        overrides[ADDRESS_FIELD[name]] = address
    if overrides:
        config = dataclasses.replace(config, **overrides)
    return backend_cls(config, sdk_factory)


__all__ = ["ADDRESS_FIELD", "ARMS", "SO101Backend", "SO101Config", "URBackend", "URConfig", "VendorArm", "XArmBackend",
           "XArmConfig", "make_arm"]
