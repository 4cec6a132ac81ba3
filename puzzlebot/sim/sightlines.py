"""Sight lines and reach corridors of a compiled puzzle, checked by casting rays in MuJoCo.

A puzzle is only playable if the perception cameras see its markers and the hand can reach
its handles. Bounding boxes cannot tell: a lock's pin plate lying over a drawer's marker, a
base marker at the edge of the close-up camera's frame on a wide box, or a bolt's rod that,
once open, crosses a button's cap. So the compiled puzzle is posed (in its default placement
before the default cameras) and rays are cast with `mujoco.mj_ray`:

- a marker is *seen* by a camera when its whole plate (ArUco needs the black square and its
  white border) lies inside the frame, it faces the camera within `MAX_VIEW_ANGLE_DEG`, its
  black square spans `MIN_MARKER_PIXELS`, and every sight line from the camera to a grid on
  the black square is clear. Each marker must be seen by one of `PERCEPTION_CAMERAS` with
  every part closed, and a part's marker also a quarter of the way through its own travel (the
  tracker follows it while it opens; a door swung further faces away, which is fine), and
  every other part's marker with each non-goal part open (a bolt slid down laid its marker
  plate over a corner of the marker below it, whose pose then came out 35 degrees off);
- a handle is *blocked* when a ray in its approach corridor (the fingers' width, 12 cm out)
  hits another part, or when another part's solid stands flush with the handle's face (within
  `FACE_DEPTH` past it: a bolt slid to the end of its slot brought its rod into a button's
  face, and the finger pressed the rod), with every part closed and with each non-goal part
  open in turn (a goal part open means the puzzle is solved: nothing needs reaching after it);
- a handle pushed sideways (a bolt's knob, a lever, a knob's pin: its opening motion runs
  across its approach) has *no room to push* when a ray in the corridor behind it (where the
  closed fingers go, `PUSH_ROOM` deep against its motion) hits another part, in the same poses:
  an open bolt's knob beside a closed bolt left the hand no way to push the second one.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from puzzlebot.sim import markers
from puzzlebot.sim.spec import PuzzleSpec

# The cameras whose images hold markers big enough to detect: the front face's close-up and,
# for lids and the base's top marker, the top view (see build.DEFAULT_CAMERAS).
PERCEPTION_CAMERAS = ("closeup", "top")
MIN_MARKER_PIXELS = 14.0  # black square side in the image, px
MAX_VIEW_ANGLE_DEG = 60.0  # between the plate's normal and the line to the camera
FRAME_MARGIN_PX = 10.0  # room for the placement's jitter
SIGHT_GRID_EXTENT = 0.8  # of the black square's half side: a graze on its outer border is tolerated
TRACKED_TRAVEL = 0.25  # of its range a part's marker must stay seen over: enough to fit its joint
CORRIDOR_LENGTH = 0.12  # m in front of a handle the hand travels through
CORRIDOR_HALF_WIDTH = 0.02  # m either side of the handle's centre line: the fingers' pads
PUSH_ROOM = 0.024  # m behind a pushed handle, against its motion: the closed fingers' thickness
PUSH_HALF_WIDTH = 0.01  # m either side of the push line the fingers cover
FACE_DEPTH = 0.005  # m past the handle's face the corridor goes on: a geom flush with the face is in the way
_GRID = np.linspace(-1.0, 1.0, 5)


@dataclass(frozen=True)
class Obstruction:
    """Part `part`'s marker is not seen, or its handle is blocked, in pose `pose`."""

    part: str
    what: str  # "marker" | "handle"
    why: str
    pose: str

    def __str__(self) -> str:
        return f"{self.part!r}'s {self.what} {self.why} with {self.pose}"


def obstructions(spec: PuzzleSpec, cameras: tuple[str, ...] = PERCEPTION_CAMERAS) -> list[Obstruction]:
    """Every unseen marker and blocked handle of a laid-out spec (empty if it is playable)."""
    from puzzlebot.sim.build import lay_out, puzzle_scene

    compiled = lay_out(spec)
    model = puzzle_scene(spec).compile()
    data = mujoco.MjData(model)
    parts = [p.name for p in spec.parts]
    q0 = {name: compiled.layouts[name].joint.q0 for name in parts}
    goals = {g.part for g in spec.goal}
    found: list[Obstruction] = []

    def pose(values: dict[str, float]) -> None:
        for name, q in values.items():
            data.qpos[model.jnt_qposadr[model.joint(f"{name}/joint").id]] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_camlight(model, data)

    pose(q0)
    for marker in ["base_front", "base_top", *parts]:
        why = _unseen(model, data, marker, cameras)
        if why:
            found.append(Obstruction(marker, "marker", why, "every part closed"))
    for name in parts:
        hi = compiled.layouts[name].joint.range[1]
        pose({**q0, name: q0[name] + TRACKED_TRAVEL * (hi - q0[name])})
        why = _unseen(model, data, name, cameras)
        if why:
            found.append(Obstruction(name, "marker", why, f"{name!r} {TRACKED_TRAVEL:.0%} open"))
    for mover in [p for p in parts if p not in goals]:
        pose({**q0, mover: compiled.layouts[mover].joint.range[1]})
        for name in [p for p in parts if p != mover]:
            why = _unseen(model, data, name, cameras)
            if why:
                found.append(Obstruction(name, "marker", why, f"{mover!r} open"))
    for name in parts:
        handle = compiled.layouts[name].handle
        pose(q0)
        push = _side_push(model, data, name, handle.approach, compiled.layouts[name].joint.range[1] - q0[name])
        for mover in [None, *[p for p in parts if p != name and p not in goals]]:
            pose(q0 if mover is None else {**q0, mover: compiled.layouts[mover].joint.range[1]})
            where = "every part closed" if mover is None else f"{mover!r} open"
            hit = _corridor_hit(model, data, name, handle.approach)
            if hit:
                found.append(Obstruction(name, "handle", f"is blocked by geom {hit!r}", where))
                break
            hit = None if push is None else _push_room_hit(model, data, name, handle.approach, push, handle.radius)
            if hit:
                found.append(Obstruction(name, "handle", f"has no room to be pushed: geom {hit!r} is behind it",
                                         where))
                break
    return found


def _side_push(model: mujoco.MjModel, data: mujoco.MjData, name: str, approach: np.ndarray,
               span: float) -> np.ndarray | None:
    """The direction (in the part's body frame) a handle starts to open along, if that runs
    across its approach (a side push); None for a pull or press along the approach."""
    site = model.site(f"{name}/handle").id
    body = model.site_bodyid[site]
    adr = model.jnt_qposadr[model.joint(f"{name}/joint").id]
    start = data.site_xpos[site].copy()
    data.qpos[adr] += 0.05 * span
    mujoco.mj_kinematics(model, data)
    step = data.site_xpos[site] - start
    data.qpos[adr] -= 0.05 * span
    mujoco.mj_kinematics(model, data)
    norm = float(np.linalg.norm(step))
    if norm < 1e-9:
        return None
    rot = data.xmat[body].reshape(3, 3)
    d = rot.T @ (step / norm)  # body frame, as `approach`
    return None if abs(d @ approach) > 0.7 else d


def _push_room_hit(model: mujoco.MjModel, data: mujoco.MjData, name: str, approach: np.ndarray, push: np.ndarray,
                   radius: float) -> str | None:
    """The name of the first geom of another body where the fingers go to push the handle along `push`."""
    site = model.site(f"{name}/handle").id
    body = model.site_bodyid[site]
    rot = data.xmat[body].reshape(3, 3)
    a, d = rot @ approach, rot @ push
    d = d - (d @ a) * a
    d /= np.linalg.norm(d)
    e = np.cross(a, d)
    handle = data.site_xpos[site]
    for back in np.linspace(radius + 0.004, radius + PUSH_ROOM, 3):
        for across in _GRID:
            start = handle - a * CORRIDOR_LENGTH - d * back + e * across * PUSH_HALF_WIDTH
            hit = _ray(model, data, start, a, CORRIDOR_LENGTH, exclude_body=body)
            if hit is not None:
                return model.geom(hit).name or f"geom {hit}"
    return None


def _unseen(model: mujoco.MjModel, data: mujoco.MjData, name: str, cameras: tuple[str, ...]) -> str | None:
    """None if one of `cameras` sees marker `name` whole, else why the best one does not."""
    geom = model.geom(f"{name}/marker").id
    axes = data.geom_xmat[geom].reshape(3, 3)
    half = model.geom_size[geom]
    normal = axes[:, 2]
    face = data.geom_xpos[geom] + normal * (half[2] + 5e-4)
    plate = [face + axes[:, 0] * u * half[0] + axes[:, 1] * v * half[1] for u in (-1, 1) for v in (-1, 1)]
    black = markers.black_square_side(2 * half[0]) / 2
    inner = SIGHT_GRID_EXTENT * black
    square = [face + axes[:, 0] * u * inner + axes[:, 1] * v * inner for u in _GRID for v in _GRID]
    reasons = []
    for cam in cameras:
        why = _camera_misses(model, data, model.camera(cam).id, plate, square, normal, geom)
        if why is None:
            return None
        reasons.append(f"{cam}: {why}")
    return "is not seen (" + "; ".join(reasons) + ")"


def _camera_misses(model, data, cam: int, plate, square, normal: np.ndarray, marker_geom: int) -> str | None:
    pos = data.cam_xpos[cam]
    rot = data.cam_xmat[cam].reshape(3, 3)
    width, height = model.vis.global_.offwidth, model.vis.global_.offheight
    focal = 0.5 * height / np.tan(np.radians(model.cam_fovy[cam]) / 2)
    to_cam = pos - np.mean(plate, axis=0)
    if np.dot(normal, to_cam) < np.cos(np.radians(MAX_VIEW_ANGLE_DEG)) * np.linalg.norm(to_cam):
        return "faces away"
    pixels = []
    for p in plate:
        c = rot.T @ (p - pos)
        if c[2] >= 0:
            return "behind the camera"
        pixels.append((width / 2 + focal * c[0] / -c[2], height / 2 - focal * c[1] / -c[2]))
    px = np.array(pixels)
    if (px.min() < FRAME_MARGIN_PX or px[:, 0].max() > width - FRAME_MARGIN_PX
            or px[:, 1].max() > height - FRAME_MARGIN_PX):
        return "out of frame"
    e1, e2 = px[1] - px[0], px[2] - px[0]
    side = 0.75 * np.sqrt(abs(e1[0] * e2[1] - e1[1] * e2[0]))
    if side < MIN_MARKER_PIXELS:
        return f"too small ({side:.0f} px)"
    for p in square:
        hit = _ray(model, data, pos, p - pos, np.linalg.norm(p - pos) - 1e-3)
        if hit is not None and hit != marker_geom:
            return f"hidden by geom {model.geom(hit).name or hit!r}"
    return None


def _corridor_hit(model: mujoco.MjModel, data: mujoco.MjData, name: str, approach: np.ndarray) -> str | None:
    """The name of the first geom of another body in the hand's corridor to part `name`'s handle."""
    site = model.site(f"{name}/handle").id
    body = model.site_bodyid[site]
    a = data.xmat[body].reshape(3, 3) @ approach
    side = np.cross(a, [0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.cross(a, [1.0, 0.0, 0.0])
    side /= np.linalg.norm(side)
    up = np.cross(side, a)
    handle = data.site_xpos[site]
    base = model.body("base").id
    for u in _GRID:
        for v in _GRID:
            start = handle - a * CORRIDOR_LENGTH + (side * u + up * v) * CORRIDOR_HALF_WIDTH
            hit = _ray(model, data, start, a, CORRIDOR_LENGTH, exclude_body=body)
            if hit is not None:
                return model.geom(hit).name or f"geom {hit}"
            # a few millimetres on, past the face: another part's solid flush with it (a bolt slid
            # to the end of its slot stood with its rod in a button's face, and the finger pressed
            # the rod). Marker plates and lock tabs never touch the hand, and the base's panel
            # behind a handle is where a press ends anyway.
            hit = _ray(model, data, start + a * (CORRIDOR_LENGTH - 1e-3), a, FACE_DEPTH + 1e-3, exclude_body=body)
            if hit is not None and model.geom_bodyid[hit] != base and (model.geom_contype[hit]
                                                                       or model.geom_conaffinity[hit]):
                return model.geom(hit).name or f"geom {hit}"
    return None


def _ray(model: mujoco.MjModel, data: mujoco.MjData, start: np.ndarray, direction: np.ndarray, length: float,
         exclude_body: int = -1) -> int | None:
    """The id of the first geom within `length` along the ray, or None."""
    geomid = np.array([-1], dtype=np.int32)
    vec = np.asarray(direction, dtype=float)
    vec = vec / np.linalg.norm(vec)
    dist = mujoco.mj_ray(model, data, np.asarray(start, dtype=float), vec, None, 1, exclude_body, geomid)
    if geomid[0] < 0 or dist > length:
        return None
    return int(geomid[0])
