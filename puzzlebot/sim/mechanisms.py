"""The mechanism library: where each kind of part sits, how it moves, what an arm grasps.

Each mechanism turns a `PartSpec` into a `PartLayout`: its joint (kind, axis, anchor), its
shapes drawn at joint value 0 in the puzzle frame, a handle (the point an arm grasps or
pushes, and how to approach it), a marker plate, and the points where a lock's keeper can
sit. The compiler (`sim.build`) turns layouts into MuJoCo bodies; skills and locks use the
same kinematics (`PartLayout.transform`).

Default dimensions and dynamics are those of a desktop wooden lockbox toy (measured by hand
on typical toys: drawer runners take a few newtons to overcome, hinges a few N·cm); they are
placeholders for proper system identification, which is exactly what the agent does.
Armatures of the small sliding parts stand for the reflected inertia of their guides and
keep MuJoCo's mass-scaled contacts and limits stiff (a 30 g button alone would sink through
its lock pin under a 20 N press).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from puzzlebot.sim.spec import MECHANISMS, BaseSpec, JointSpec, PartSpec

PANEL_T = 0.006  # half thickness of panels (12 mm plywood)
HANDLE_STANDOFF = 0.04  # handle bar distance in front of its panel: room for fingers
MARKER_SIZE = 0.04  # outer side of a part's marker plate (the black square is 3/4 of it)


@dataclass(frozen=True)
class Shape:
    """A primitive in the puzzle frame at joint value 0."""

    name: str
    kind: str  # "box" | "capsule" | "cylinder"
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    size: tuple[float, ...] = ()
    fromto: tuple[float, ...] | None = None
    zaxis: tuple[float, float, float] | None = None
    rgba: tuple[float, float, float, float] = (0.8, 0.7, 0.5, 1.0)


@dataclass(frozen=True)
class Handle:
    """Where an arm interacts with a part: grasp it, or push it with a closed hand."""

    pos: np.ndarray  # puzzle frame at q = 0
    approach: np.ndarray  # unit vector the tool moves along to reach the handle
    grip_axis: np.ndarray  # unit vector the fingers close along (grasp) or face (push)
    mode: str  # "grasp" | "push"
    radius: float  # half width of what is grasped or pushed


@dataclass(frozen=True)
class Marker:
    """A square ArUco plate lying on a part's visible face."""

    center: np.ndarray
    normal: np.ndarray  # points out of the face, towards the cameras
    up: np.ndarray  # marker's image "up" direction
    size: float = MARKER_SIZE


@dataclass
class PartLayout:
    """Everything the compiler, locks and skills need to know about one part's geometry."""

    part: PartSpec
    joint: JointSpec
    kind: str  # "slide" | "hinge"
    axis: np.ndarray  # unit, puzzle frame; increasing q opens the part
    anchor: np.ndarray  # a point on the hinge axis (or the body origin for slides)
    shapes: list[Shape]
    handle: Handle
    marker: Marker
    lock_points: list[np.ndarray]  # candidate keeper locations at q = 0
    mass: float
    static_shapes: list[Shape] = field(default_factory=list)  # guides fixed to the base

    def transform(self, q: float) -> tuple[np.ndarray, np.ndarray]:
        """Rotation R and translation t mapping a q = 0 point p to R @ p + t at joint value q."""
        if self.kind == "slide":
            return np.eye(3), self.axis * q
        rot = rotation(self.axis, q)
        return rot, self.anchor - rot @ self.anchor

    def point_at(self, p: np.ndarray, q: float) -> np.ndarray:
        rot, t = self.transform(q)
        return rot @ p + t

    def velocity_dir(self, p: np.ndarray, q: float) -> np.ndarray:
        """Unit direction a q = 0 point p moves in, at joint value q, as q increases."""
        world = self.point_at(p, q)
        v = self.axis if self.kind == "slide" else np.cross(self.axis, world - self.anchor)
        n = np.linalg.norm(v)
        if n < 1e-9:
            raise ValueError(f"part {self.part.name!r}: point {p} lies on its hinge axis")
        return v / n


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' rotation matrix about a unit axis."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


# Defaults per mechanism: size, joint, mass. Sizes: see each layout function.
DEFAULTS: dict[str, tuple[tuple[float, ...], JointSpec, float]] = {
    "drawer": ((0.18, 0.08, 0.16), JointSpec((0.0, 0.12), friction=2.0, damping=5.0, armature=0.05), 0.4),
    "door": ((0.14, 0.16), JointSpec((0.0, 1.7), friction=0.05, damping=0.05, armature=0.005), 0.3),
    "lid": ((0.18, 0.30), JointSpec((0.0, 1.9), friction=0.05, damping=0.05, armature=0.005), 0.3),
    "bolt": ((0.10,), JointSpec((0.0, 0.045), friction=1.0, damping=3.0, armature=0.15), 0.06),
    "lever": ((0.10,), JointSpec((0.0, 1.2), friction=0.06, damping=0.02, armature=0.003), 0.05),
    "knob": ((0.035,), JointSpec((0.0, 2.5), friction=0.02, damping=0.01, armature=0.001), 0.05),
    "button": ((0.04,), JointSpec((0.0, 0.012), friction=1.0, damping=2.0, armature=0.15), 0.03),
}
assert set(DEFAULTS) == set(MECHANISMS)

WOOD = (0.80, 0.66, 0.45, 1.0)
METAL = (0.55, 0.57, 0.60, 1.0)
RED = (0.75, 0.18, 0.15, 1.0)

_X = np.array([1.0, 0.0, 0.0])
_Y = np.array([0.0, 1.0, 0.0])
_Z = np.array([0.0, 0.0, 1.0])


def in_face_direction(angle: float) -> np.ndarray:
    """Unit vector in the front face plane: 0 rad = +y, pi/2 = +z."""
    return np.array([0.0, np.cos(angle), np.sin(angle)])


def layout(part: PartSpec, base: BaseSpec) -> PartLayout:
    """Lay out one part on the base."""
    size, joint, mass = DEFAULTS[part.mechanism]
    size = part.size or size
    joint = part.joint or joint
    mass = part.mass if part.mass is not None else mass
    builder = _LAYOUTS[part.mechanism]
    return builder(part, base, size, joint, mass)


def _front(base: BaseSpec, part: PartSpec, standoff: float = 0.0) -> np.ndarray:
    """A point on (or `standoff` in front of) the front face at the part's (y, z)."""
    y, z = part.position
    return np.array([-base.size[0] / 2 - standoff, y, z])


def _bar(prefix: str, a: np.ndarray, b: np.ndarray, back: np.ndarray, radius: float = 0.008) -> list[Shape]:
    """A handle bar from a to b with two posts going back (by vector `back`) to its panel."""
    return [
        Shape(f"{prefix}_bar", "capsule", fromto=(*a, *b), size=(radius,), rgba=METAL),
        Shape(f"{prefix}_post_a", "capsule", fromto=(*a, *(a + back)), size=(0.005,), rgba=METAL),
        Shape(f"{prefix}_post_b", "capsule", fromto=(*b, *(b + back)), size=(0.005,), rgba=METAL),
    ]


def _drawer(part, base, size, joint, mass) -> PartLayout:
    width, height, depth = size  # front panel width/height, tray depth
    face = _front(base, part)
    panel = face - _X * PANEL_T
    grip = face - _X * HANDLE_STANDOFF
    half_bar = min(0.025, width / 7)
    shapes = [
        Shape("panel", "box", tuple(panel), (PANEL_T, width / 2, height / 2), rgba=WOOD),
        Shape("tray", "box", tuple(face + _X * depth / 2), (depth / 2, width / 2 - 0.01, height / 2 - 0.01), rgba=WOOD),
        *_bar("handle", grip - _Y * half_bar, grip + _Y * half_bar, _X * (HANDLE_STANDOFF - 2 * PANEL_T)),
    ]
    # The marker sits towards the panel's edge, well clear of the bar's end: the bar stands 4 cm
    # proud of the panel, and seen from a camera off to the side it shifts over what is next to it.
    marker_side = min(MARKER_SIZE, width / 2 - half_bar - 0.025)
    marker_y = width / 2 - 0.005 - marker_side / 2
    return PartLayout(
        part, joint, "slide", -_X, panel, shapes,
        Handle(grip, _X, _Z, "grasp", 0.008),
        Marker(panel - _X * PANEL_T + _Y * marker_y, -_X, _Z, marker_side),
        [panel + _Y * s * (width / 2) for s in (1, -1)] + [panel + _Z * s * (height / 2) for s in (1, -1)],
        mass,
    )


def _door(part, base, size, joint, mass) -> PartLayout:
    width, height = size
    face = _front(base, part)
    panel = face - _X * PANEL_T
    side = 1.0 if part.hinge_side == "left" else -1.0  # robot's left is +y
    hinge = panel + _Y * side * width / 2
    free_edge = panel - _Y * side * width / 2
    grip = free_edge + _Y * side * 0.035 - _X * (HANDLE_STANDOFF - PANEL_T)
    shapes = [
        Shape("panel", "box", tuple(panel), (PANEL_T, width / 2, height / 2), rgba=WOOD),
        *_bar("handle", grip - _Z * 0.035, grip + _Z * 0.035, _X * (HANDLE_STANDOFF - 2 * PANEL_T)),
    ]
    hinge_pin = Shape("hinge_pin", "cylinder", tuple(hinge), (0.006, height / 2), zaxis=(0, 0, 1), rgba=METAL)
    return PartLayout(
        part, joint, "hinge", -side * _Z, hinge, shapes + [hinge_pin],
        Handle(grip, _X, _Y, "grasp", 0.008),
        Marker(panel - _X * PANEL_T + _Y * side * width * 0.12, -_X, _Z, min(MARKER_SIZE * 1.25, width * 0.5)),
        [free_edge + _Z * s * height / 4 for s in (0, 1, -1)],
        mass,
    )


def _lid(part, base, size, joint, mass) -> PartLayout:
    length, width = size  # along x (front to back), along y
    x, y = part.position
    top = base.size[2]
    panel = np.array([x, y, top + PANEL_T])
    hinge = np.array([x + length / 2, y, top])
    front_edge = np.array([x - length / 2, y, top + PANEL_T])
    grip = front_edge + _X * 0.0 - _X * (HANDLE_STANDOFF - PANEL_T)
    half_bar = min(0.05, width / 4)
    shapes = [
        Shape("panel", "box", tuple(panel), (length / 2, width / 2, PANEL_T), rgba=WOOD),
        *_bar("handle", grip - _Y * half_bar, grip + _Y * half_bar, _X * (HANDLE_STANDOFF - PANEL_T)),
    ]
    return PartLayout(
        part, joint, "hinge", _Y, hinge, shapes,
        Handle(grip, _X, _Z, "grasp", 0.008),
        Marker(panel + _Z * PANEL_T, _Z, -_X, MARKER_SIZE * 1.25),
        [front_edge + _Y * s * width / 3 for s in (0, 1, -1)],
        mass,
    )


def _bolt(part, base, size, joint, mass) -> PartLayout:
    (length,) = size
    d = in_face_direction(part.direction)
    perp = np.cross(_X, d)  # in the face plane, perpendicular to travel
    center = _front(base, part, standoff=0.016)
    tail = center - d * length / 2
    tip = center + d * length / 2
    knob_base = center - d * length * 0.3
    knob_tip = knob_base - _X * 0.045
    shapes = [
        Shape("rod", "capsule", fromto=(*tail, *tip), size=(0.008,), rgba=METAL),
        Shape("knob", "capsule", fromto=(*knob_base, *knob_tip), size=(0.010,), rgba=RED),
    ]
    plate = _front(base, part, standoff=0.026) + perp * 0.0 + d * length * 0.12
    guides = [
        Shape(f"guide_{i}", "box", tuple(center + d * s * length * 0.42 + _X * 0.004), (0.012, 0.006, 0.006),
              rgba=METAL)
        for i, s in enumerate((-1.0, 1.0))
    ]
    return PartLayout(
        part, joint, "slide", d, center, shapes,
        Handle(knob_tip + _X * 0.012, _X, d, "push", 0.010),
        Marker(plate, -_X, np.cross(-_X, d) if abs(d[2]) < 0.7 else _Z, 0.035),
        [tip],
        mass,
        static_shapes=[Shape(s.name, s.kind, s.pos, (0.008, 0.006 + abs(d[1]) * 0.008, 0.006 + abs(d[2]) * 0.008),
                             rgba=s.rgba) for s in guides],
    )


def _lever(part, base, size, joint, mass) -> PartLayout:
    (length,) = size
    d = in_face_direction(part.direction)
    pivot = _front(base, part, standoff=0.012)
    tip = pivot + d * length
    tip_out = tip - _X * 0.045
    shapes = [
        Shape("arm", "capsule", fromto=(*pivot, *tip), size=(0.008,), rgba=METAL),
        Shape("hub", "cylinder", tuple(pivot), (0.02, 0.008), zaxis=(1, 0, 0), rgba=METAL),
        Shape("grip", "capsule", fromto=(*tip, *tip_out), size=(0.010,), rgba=RED),
    ]
    return PartLayout(
        part, joint, "hinge", -_X, pivot, shapes,
        Handle(tip_out + _X * 0.012, _X, np.cross(-_X, d), "push", 0.010),
        Marker(pivot - _X * 0.010 - d * 0.0, -_X, d, 0.032),
        [tip],
        mass,
    )


KNOB_CRANK_RADIUS = 0.006  # m


def _knob(part, base, size, joint, mass) -> PartLayout:
    (radius,) = size
    center = _front(base, part, standoff=0.012)
    # The crank stands at the rim, clear of the marker's whole plate: a dark crank touching the
    # black square merges with it in the image and the marker is lost at some dial angles.
    crank = center + _Z * radius * 0.9
    crank_out = crank - _X * 0.045
    shapes = [
        Shape("dial", "cylinder", tuple(center), (radius, 0.010), zaxis=(1, 0, 0), rgba=WOOD),
        Shape("crank", "capsule", fromto=(*crank, *crank_out), size=(KNOB_CRANK_RADIUS,), rgba=RED),
    ]
    rim = [center + r * radius for r in (_Y, -_Y, -_Z)]
    return PartLayout(
        part, joint, "hinge", -_X, center, shapes,
        Handle(crank_out + _X * 0.012, _X, _Y, "push", KNOB_CRANK_RADIUS),
        Marker(center - _X * 0.011, -_X, _Z, radius * 0.95),
        rim,
        mass,
    )


def _button(part, base, size, joint, mass) -> PartLayout:
    (side,) = size
    face = _front(base, part)
    cap = face - _X * 0.012
    shapes = [
        Shape("cap", "box", tuple(cap), (0.012, side / 2, side / 2), rgba=RED),
        Shape("stem", "box", tuple(face + _X * 0.02), (0.02, side / 4, side / 4), rgba=METAL),
    ]
    return PartLayout(
        part, joint, "slide", _X, cap, shapes,
        Handle(cap - _X * 0.012, _X, _Z, "push", side / 2),
        Marker(cap - _X * 0.012, -_X, _Z, side * 0.9),
        [face + _X * 0.03 + s * axis * side / 4 for axis in (_Y, _Z) for s in (1, -1)],
        mass,
    )


_LAYOUTS = {
    "drawer": _drawer, "door": _door, "lid": _lid, "bolt": _bolt,
    "lever": _lever, "knob": _knob, "button": _button,
}
