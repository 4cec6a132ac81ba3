"""The contract every simulated robot meets: attach to a scene, then drive in Cartesian space.

Skills, the oracle and the gymnasium env only talk to `ArmController`, so a floating
gripper and a real arm model (Kinova Jaco) are interchangeable.

Tool frame convention (the TCP site of every robot):
  * tool +z is the approach direction (out of the palm, towards what is grasped);
  * tool +y is the finger closing direction (fingers move along +-y when closing);
  * the TCP sits between the fingertips, where a grasped handle ends up.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import mujoco
import numpy as np

# Collision bits shared by the puzzle compiler and robots: statics and parts collide with
# the robot only; lock pins and keepers collide through explicit contact pairs.
STATIC_BIT = 1
PART_BIT = 2
ROBOT_BIT = 4


@dataclass(frozen=True)
class Mount:
    """Where a robot's base (or a floating gripper's home) sits in the world frame."""

    pos: tuple[float, float, float] = (-0.55, 0.0, 0.0)
    yaw: float = 0.0


@dataclass(frozen=True)
class SidePush:
    """One way a hand pushes a handle sideways: a hand closure and the spot that does it."""

    point: tuple[float, float, float]
    """The spot on the hand that touches the handle, tool frame, m."""
    axis: tuple[float, float, float] = (0.0, 1.0, 0.0)
    """Tool-frame direction the spot pushes along (perpendicular to tool z)."""
    closure: float = 1.0
    """Hand closure (0 open .. 1 closed) held while pushing."""


@dataclass(frozen=True)
class HandGeometry:
    """What scripted skills need to know about a robot's hand, in its tool frame (see above)."""

    press_reach: float
    """How far the closed hand reaches past the TCP along tool +z, m: what presses a button."""
    side_pushes: tuple[SidePush, ...]
    """Ways to push a handle sideways, preferred first (a retry takes the next)."""
    preshape: float = 0.0
    """Closure (0 open .. 1 closed) held while approaching a handle to grasp it."""
    grasp_offset: float = 0.0
    """How far short of a handle, along the approach, the TCP stops before the hand closes, m."""
    max_speed: float = 0.5
    """Fastest TCP speed scripted skills command in free space, m/s."""
    wide_axis: tuple[float, float, float] = (0.0, 1.0, 0.0)
    """Tool-frame direction in which the hand behind the fingertips is widest: kept level, it
    clears the table under a low handle."""
    opening: float = 0.0
    """Gap between the fully open fingers, m, shrinking linearly with closure; 0 if not linear
    (a grasp then approaches with `preshape`)."""
    envelope: tuple[tuple[float, float, float], ...] = ()
    """Tool-frame points bounding the hand behind its fingers (palm and wrist corners): a skill
    tilts the hand until they clear the table; empty means unchecked."""
    closed_fingers: tuple[tuple[float, float, float], ...] = ()
    """Tool-frame corners of the closed fingers: a push or press, whose fingertips go under or
    beside a low handle, keeps them clear of the table too; empty means unchecked."""


class ArmController(abc.ABC):
    """Drives one attached robot inside a compiled model; reads only its own joints."""

    #: Names of the robot's actuated joints (for joint-space actions and observations).
    joint_names: tuple[str, ...]
    #: The hand's geometry and limits as scripted skills see them.
    hand: HandGeometry

    @abc.abstractmethod
    def reset(self, data: mujoco.MjData) -> None:
        """Put the robot at its home configuration (qpos, ctrl, mocap) in `data`."""

    @abc.abstractmethod
    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Current tool centre point: position (3,) and quaternion wxyz (4,), world frame."""

    @abc.abstractmethod
    def set_tcp_target(self, pos: np.ndarray, quat: np.ndarray) -> None:
        """Command a Cartesian TCP target; realised by mocap or IK into actuator targets."""

    @abc.abstractmethod
    def set_grip(self, closure: float) -> None:
        """Command the hand: 0 fully open, 1 fully closed (force-limited)."""

    @abc.abstractmethod
    def grip(self) -> float:
        """Measured hand closure in [0, 1]."""

    @abc.abstractmethod
    def joint_positions(self) -> np.ndarray:
        """Measured positions of `joint_names`."""

    @abc.abstractmethod
    def joint_velocities(self) -> np.ndarray:
        """Measured velocities of `joint_names`."""

    @abc.abstractmethod
    def set_joint_targets(self, q: np.ndarray) -> None:
        """Command joint-space position targets (clipped to the joint ranges)."""

    @abc.abstractmethod
    def geom_ids(self) -> np.ndarray:
        """Ids of the robot's collision geoms (to tell which contacts are the robot's)."""

    def controller_state(self) -> dict[str, np.ndarray]:
        """Controller memory outside MjData (e.g. an IK warm start), for pickling envs."""
        return {}

    def restore_controller_state(self, state: dict[str, np.ndarray]) -> None:
        """Put back what `controller_state` returned (nothing to do for a stateless controller)."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no controller state, got {sorted(state)}")


class RobotModel(abc.ABC):
    """A robot description that can be attached to a puzzle scene built with MjSpec."""

    name: str
    #: Where the robot stands when a scene does not say (the puzzle stands at the origin).
    default_mount: Mount = Mount()

    @abc.abstractmethod
    def attach(self, scene: mujoco.MjSpec, mount: Mount) -> None:
        """Add the robot's bodies, actuators and TCP site to `scene` under a name prefix."""

    @abc.abstractmethod
    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> ArmController:
        """Return a controller for the robot inside a model compiled from the scene."""
