"""The printed marker sheet: each part's marker id, its size, and where its handle is relative to it.

A lab that prints markers for a puzzle also notes where each marker sits relative to the
handle it labels, as a fiducial map does for objects (the grasp frame in the marker's
frame). That is all the agent gets before it touches anything: a handle point, the direction
to reach it from, whether it is grasped (a bar, with the bar's visible orientation) or pushed
(a knob, peg or cap), and its size. It says nothing about joints, ranges, dynamics or locks:
those the agent must find by moving things.

`marker_sheet(spec)` writes the sheet of a puzzle authored in puzzlebot (what
`puzzlebot-author export` prints alongside the marker PNGs); `task_goals(spec)` says what the
task asks (which part to open, how far), as a person would tell it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from puzzlebot.agent.perception.markers import marker_sizes
from puzzlebot.sim.build import lay_out
from puzzlebot.sim.markers import base_front_plate
from puzzlebot.sim.spec import PuzzleSpec

_MARKER_LIFT = 0.002  # m, the printed face sits this far out of the plate's centre plane (sim/build.py)
_BASE_FRONT_NORMAL, _BASE_FRONT_UP = np.array([-1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])  # sim/build.py


@dataclass(frozen=True)
class Affordance:
    """One part's handle, in its marker's frame (x right, y up, z out of the printed face)."""

    part: str
    marker_id: int
    point: np.ndarray  # (3,) handle point, m
    approach: np.ndarray  # (3,) unit: the direction a hand moves along to reach the handle
    mode: str  # "grasp" (a bar the fingers close on) | "push" (a knob, peg or cap)
    radius: float  # half width of the bar or knob, m
    grip_axis: np.ndarray | None = None  # (3,) unit, grasps only: the direction fingers close along

    def in_world(self, T_world_marker: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Handle point, approach and grip axis in the world, given the marker's world pose."""
        R, p = T_world_marker[:3, :3], T_world_marker[:3, 3]
        grip = None if self.grip_axis is None else R @ self.grip_axis
        return R @ self.point + p, R @ self.approach, grip


@dataclass(frozen=True)
class MarkerSheet:
    """Everything printed with a puzzle: marker sizes (black square side) and handle affordances."""

    sizes: dict[int, float]
    affordances: dict[str, Affordance]  # by part name
    rest_rotations: dict[int, np.ndarray] = field(default_factory=dict)
    """Marker id -> (3, 3) orientation at rest in base marker 0's frame, as the puzzle was built
    (optional). Not a measurement: it breaks a small marker's PnP tilt ambiguity, where the
    image fits two tilts about equally (a 30 px knob marker read 22 deg off, every frame)."""

    def part_of_marker(self) -> dict[int, str]:
        return {a.marker_id: a.part for a in self.affordances.values()}


def marker_frame(center: np.ndarray, normal: np.ndarray, up: np.ndarray) -> np.ndarray:
    """4x4 pose of a printed marker (the convention of sim/build.py's marker sites and of PnP)."""
    T = np.eye(4)
    T[:3, :3] = np.column_stack([np.cross(up, normal), up, normal])
    T[:3, 3] = center + normal * _MARKER_LIFT
    return T


def marker_sheet(spec: PuzzleSpec) -> MarkerSheet:
    """The sheet of a puzzlebot-authored puzzle: sizes and handles, from its geometry at rest.

    Reads the handle and marker shapes only; joints, limits, dynamics and locks stay unknown.
    """
    affordances, rest = {}, {}
    base_front, _ = base_front_plate(spec.base.size)
    R_base = marker_frame(base_front, _BASE_FRONT_NORMAL, _BASE_FRONT_UP)[:3, :3]
    for name, lay in lay_out(spec).layouts.items():
        marker_id = lay.part.marker_id
        if marker_id is None:
            raise ValueError(f"part {name!r} has no marker id: validate the spec first")
        T_marker = marker_frame(lay.marker.center, lay.marker.normal, lay.marker.up)
        rest[marker_id] = R_base.T @ T_marker[:3, :3]
        T_inv = np.linalg.inv(T_marker)
        R = T_inv[:3, :3]
        handle = lay.handle
        affordances[name] = Affordance(
            part=name, marker_id=marker_id, point=R @ handle.pos + T_inv[:3, 3], approach=R @ handle.approach,
            mode=handle.mode, radius=float(handle.radius),
            # A bar's orientation is visible; a push handle's "grip axis" is its motion: not printed.
            grip_axis=R @ handle.grip_axis if handle.mode == "grasp" else None)
    return MarkerSheet(marker_sizes(spec), affordances, rest)


@dataclass(frozen=True)
class TaskGoal:
    """What the task asks of one part, as a person would say it: "open the drawer 8 cm or more"."""

    part: str
    min_opening: float | None = None  # m or rad from where the part started
    max_opening: float | None = None

    def holds(self, opening: float, margin: float = 0.0) -> bool:
        """Whether `opening` meets the goal with `margin` (a fraction of each bound) to spare:
        an estimate of where a part stands is only good to a few per cent."""
        return ((self.min_opening is None or opening >= self.min_opening * (1.0 + margin))
                and (self.max_opening is None or opening <= self.max_opening * (1.0 - margin)))


def task_goals(spec: PuzzleSpec) -> list[TaskGoal]:
    """The task as it is told to the agent: each goal part and how far to open it from where it starts."""
    layouts = lay_out(spec).layouts
    goals = []
    for goal in spec.goal:
        q0 = layouts[goal.part].joint.q0
        goals.append(TaskGoal(goal.part, None if goal.min is None else goal.min - q0,
                              None if goal.max is None else goal.max - q0))
    return goals
