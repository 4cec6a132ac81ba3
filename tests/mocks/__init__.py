"""Mocks of the vendor SDKs the real-arm backends use (`puzzlebot.real.arms`), like LeRobot's
`tests/mocks/`: each holds a simple joint state that moves toward commanded targets and can inject
the vendor's own failures.

    ur_rtde.py  URController: rtde_control / rtde_receive / dashboard_client surface
    xarm.py     XArmController: xarm.wrapper.XArmAPI surface
    scservo.py  FeetechBus: scservo_sdk surface (PortHandler, PacketHandler, GroupSyncRead/Write)

Each controller's `sdk()` returns the module-like namespace a backend's `sdk_factory` must return,
so `Backend(config, sdk_factory=controller.sdk)` drives the mock instead of hardware. Every call a
backend makes is appended to `controller.calls` (method name first) for tests to inspect.
"""
