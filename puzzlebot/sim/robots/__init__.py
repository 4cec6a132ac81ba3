"""Robot models that attach to a puzzle scene: a floating gripper and the Kinova Jaco arm."""

from __future__ import annotations

from puzzlebot.sim.robots.base import ArmController, Mount, RobotModel


def make_robot(name: str) -> RobotModel:
    """Instantiate a robot by name ('gripper' or 'jaco'); vendor models are imported lazily."""
    if name == "gripper":
        from puzzlebot.sim.robots.gripper import FloatingGripper

        return FloatingGripper()
    if name == "jaco":
        from puzzlebot.sim.robots.jaco import JacoArm

        return JacoArm()
    raise ValueError(f"unknown robot {name!r}: choose 'gripper' or 'jaco'")


__all__ = ["ArmController", "Mount", "RobotModel", "make_robot"]
