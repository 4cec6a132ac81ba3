"""Compile a PuzzleSpec into MuJoCo with MjSpec: base, parts, markers, locks, scene.

Naming (every element is named): the base body is ``base``; part P has body ``P``, joint
``P/joint``, geoms ``P/<shape>``, sites ``P/handle`` and ``P/marker``; a lock of A on B has
geoms ``lock/A/B/pin`` (on A) and ``lock/A/B/keeper`` (on B) and the contact pair
``lock/A/B``. The world frame's z = 0 is the table top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from puzzlebot.sim import markers
from puzzlebot.sim.external import ExternalPuzzleSpec, add_external
from puzzlebot.sim.frames import quat_from_matrix
from puzzlebot.sim.locks import LockGeometry, Tab, build_lock
from puzzlebot.sim.mechanisms import PartLayout, Shape, layout
from puzzlebot.sim.robots.base import PART_BIT, ROBOT_BIT, STATIC_BIT
from puzzlebot.sim.spec import PuzzleSpec

_GEOM_TYPES = {
    "box": mujoco.mjtGeom.mjGEOM_BOX,
    "capsule": mujoco.mjtGeom.mjGEOM_CAPSULE,
    "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
}
# Pin/keeper contact: stiff (time constant 2.5 timesteps at 2 ms) so a 40 N pull does not
# push through; low friction, as between two greased steel tabs.
LOCK_SOLREF = (0.005, 1.0)
LOCK_SOLIMP = (0.95, 0.99, 0.001, 0.5, 2.0)
LOCK_FRICTION = (0.2, 0.2, 0.005, 0.0001, 0.0001)  # MuJoCo pair: 2 sliding, spin, 2 rolling
PART_FRICTION = (0.9, 0.01, 0.001)  # wood/metal against rubber fingertips
# MuJoCo's soft constraints scale with the effective mass: light parts need stiff limits,
# and dry friction must be nearly hard or a vertical bolt creeps down under its weight.
LIMIT_SOLREF = (0.005, 1.0)
FRICTION_SOLREF = (0.005, 1.0)
STIFF_SOLIMP = (0.99, 0.999, 0.001, 0.5, 2.0)


@dataclass(frozen=True)
class Placement:
    """Where the puzzle stands on the table: position of its base centre and yaw (rad)."""

    pos: tuple[float, float] = (0.0, 0.0)
    yaw: float = 0.0

    def quat(self) -> np.ndarray:
        return np.array([np.cos(self.yaw / 2), 0.0, 0.0, np.sin(self.yaw / 2)])


@dataclass(frozen=True)
class CameraSpec:
    """A fixed world camera looking at a point."""

    name: str
    pos: tuple[float, float, float]
    target: tuple[float, float, float] = (0.0, 0.0, 0.15)
    fovy: float = 45.0


DEFAULT_CAMERAS = (
    CameraSpec("front", (-0.62, 0.28, 0.55)),  # front-left and high: clear of the arm behind the puzzle
    CameraSpec("top", (-0.25, 0.0, 0.95)),
    CameraSpec("side", (-0.35, -0.65, 0.40)),
    # Half a metre square in front of the front face, below the gripper's home: the only view in
    # which the small part markers (3-5 cm plates) are big enough to detect (agent/perception).
    CameraSpec("closeup", (-0.65, 0.0, 0.15), (-0.15, 0.0, 0.14)),
)


@dataclass
class CompiledPuzzle:
    """A puzzle laid out and checked: what the scene builder, oracle and skills share."""

    spec: PuzzleSpec
    layouts: dict[str, PartLayout]
    locks: list[LockGeometry] = field(default_factory=list)


def lay_out(spec: PuzzleSpec) -> CompiledPuzzle:
    """Lay out every part and build every lock (raises SpecError if a lock cannot work)."""
    layouts = {p.name: layout(p, spec.base) for p in spec.parts}
    locks = []
    for i, part in enumerate(spec.parts):
        for j, lock in enumerate(part.blocked_by):
            field_path = f"puzzle.parts[{i}].blocked_by[{j}]"
            locks.append(build_lock(lock, layouts[part.name], layouts[lock.blocker], field_path))
    return CompiledPuzzle(spec, layouts, locks)


def _quat_z_to(z: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_quatZ2Vec(quat, np.asarray(z, dtype=float))
    return quat


def _add_shape(body: mujoco.MjsBody, name: str, shape: Shape, origin: np.ndarray, bits: tuple[int, int]) -> None:
    geom = body.add_geom(name=name, type=_GEOM_TYPES[shape.kind], rgba=shape.rgba, friction=PART_FRICTION)
    geom.contype, geom.conaffinity = bits
    if shape.fromto is not None:
        a, b = np.array(shape.fromto[:3]) - origin, np.array(shape.fromto[3:]) - origin
        geom.fromto = np.concatenate([a, b])
        geom.size = [shape.size[0], 0, 0]
    else:
        geom.pos = np.array(shape.pos) - origin
        geom.size = list(shape.size) + [0] * (3 - len(shape.size))
        if shape.zaxis is not None:
            geom.quat = _quat_z_to(np.array(shape.zaxis))


def _add_marker(scene: mujoco.MjSpec, body: mujoco.MjsBody, name: str, marker_id: int, center: np.ndarray,
                normal: np.ndarray, up: np.ndarray, size: float) -> None:
    """A thin plate carrying ArUco `marker_id` on its outward face, plus a site at its centre."""
    image = markers.marker_image(marker_id)
    tex_name = f"aruco_{marker_id}"
    if scene.texture(tex_name) is None:
        scene.add_texture(name=tex_name, type=mujoco.mjtTexture.mjTEXTURE_CUBE, width=image.shape[1],
                          height=image.shape[0], nchannel=3, data=image.reshape(-1))
        mat = scene.add_material(name=tex_name)
        mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tex_name
    right = np.cross(up, normal)  # image x axis seen from the outside
    axes = np.column_stack([right, up, normal])
    quat = quat_from_matrix(axes)
    half_t = 0.001
    geom = body.add_geom(name=f"{name}/marker", type=mujoco.mjtGeom.mjGEOM_BOX, material=tex_name,
                         pos=center + normal * half_t, quat=quat, size=[size / 2, size / 2, half_t],
                         contype=0, conaffinity=0, mass=0, group=1)
    geom.rgba = [1, 1, 1, 1]
    body.add_site(name=f"{name}/marker", pos=center + normal * 2 * half_t, quat=quat, size=[0.004, 0, 0],
                  group=4)


def _add_tab(body: mujoco.MjsBody, name: str, tab: Tab, origin: np.ndarray, rgba) -> None:
    body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, pos=tab.center - origin,
                  quat=quat_from_matrix(tab.axes), size=tab.half, rgba=rgba, contype=0, conaffinity=0, mass=0)


def add_puzzle(scene: mujoco.MjSpec, compiled: CompiledPuzzle, placement: Placement = Placement()) -> None:
    """Add the puzzle's bodies, joints, markers and lock pairs to `scene`."""
    spec = compiled.spec
    if any(p.marker_id is None for p in spec.parts):
        raise ValueError(f"puzzle {spec.name!r} has parts without marker ids: validate it first "
                         "(puzzlebot.sim.validate.validate assigns free ids)")
    depth, width, height = spec.base.size
    base = scene.worldbody.add_body(name="base", pos=[*placement.pos, 0.0], quat=placement.quat())
    static_bits = (STATIC_BIT, ROBOT_BIT)
    base.add_geom(name="base/box", type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0, 0, height / 2],
                  size=[depth / 2, width / 2, height / 2], rgba=spec.base.rgba, contype=static_bits[0],
                  conaffinity=static_bits[1], friction=PART_FRICTION)
    front, side = markers.base_front_plate(spec.base.size)
    _add_marker(scene, base, "base_front", markers.BASE_FRONT_ID, front, np.array([-1.0, 0, 0]),
                np.array([0, 0, 1.0]), side)
    inset = markers.BASE_PLATE_INSET
    top = np.array([depth / 2 - inset, -width / 2 + inset, height])
    _add_marker(scene, base, "base_top", markers.BASE_TOP_ID, top, np.array([0, 0, 1.0]), np.array([-1.0, 0, 0]),
                markers.BASE_PLATE_SIDE)

    for part in spec.parts:
        lay = compiled.layouts[part.name]
        for shape in lay.static_shapes:
            _add_shape(base, f"{part.name}/{shape.name}", shape, np.zeros(3), static_bits)
        q0 = lay.joint.q0
        rot, trans = lay.transform(q0)
        body = base.add_body(name=part.name, pos=rot @ lay.anchor + trans, quat=quat_from_matrix(rot))
        origin = lay.anchor
        joint = body.add_joint(name=f"{part.name}/joint", axis=lay.axis, pos=[0, 0, 0], ref=q0, range=lay.joint.range,
                               limited=mujoco.mjtLimited.mjLIMITED_TRUE, frictionloss=lay.joint.friction,
                               damping=lay.joint.damping, armature=lay.joint.armature,
                               stiffness=lay.joint.stiffness)
        joint.solref_limit, joint.solimp_limit = LIMIT_SOLREF, STIFF_SOLIMP
        joint.solref_friction, joint.solimp_friction = FRICTION_SOLREF, STIFF_SOLIMP
        joint.type = mujoco.mjtJoint.mjJNT_SLIDE if lay.kind == "slide" else mujoco.mjtJoint.mjJNT_HINGE
        joint.springref = q0 if lay.joint.springref is None else lay.joint.springref
        for shape in lay.shapes:
            _add_shape(body, f"{part.name}/{shape.name}", shape, origin, (PART_BIT, ROBOT_BIT))
        # Inertia of the whole part from its first (main) shape, with the declared mass.
        main = lay.shapes[0]
        body.explicitinertial = True
        body.mass = lay.mass
        body.ipos = np.array(main.pos) - origin if main.fromto is None else (
            0.5 * (np.array(main.fromto[:3]) + np.array(main.fromto[3:])) - origin)
        extent = np.array(main.size[:3]) if main.kind == "box" else np.full(3, max(main.size[0], 0.01) * 2)
        body.inertia = lay.mass / 3 * np.array([extent[1] ** 2 + extent[2] ** 2, extent[0] ** 2 + extent[2] ** 2,
                                                extent[0] ** 2 + extent[1] ** 2]) + 1e-6
        handle = lay.handle
        body.add_site(name=f"{part.name}/handle", pos=handle.pos - origin,
                      quat=quat_from_matrix(np.column_stack([np.cross(handle.grip_axis, handle.approach),
                                                            handle.grip_axis, handle.approach])),
                      size=[0.006, 0, 0], group=4)
        m = lay.marker
        _add_marker(scene, body, part.name, part.marker_id, m.center - origin, m.normal, m.up, m.size)

    for lock in compiled.locks:
        name = f"lock/{lock.blocker}/{lock.blocked}"
        _add_tab(scene.body(lock.blocker), f"{name}/pin", lock.pin, compiled.layouts[lock.blocker].anchor,
                 (0.25, 0.25, 0.28, 1))
        _add_tab(scene.body(lock.blocked), f"{name}/keeper", lock.keeper, compiled.layouts[lock.blocked].anchor,
                 (0.35, 0.35, 0.40, 1))
        scene.add_pair(name=name, geomname1=f"{name}/pin", geomname2=f"{name}/keeper", condim=3,
                       friction=LOCK_FRICTION,
                       solref=LOCK_SOLREF, solimp=LOCK_SOLIMP)


def new_scene(timestep: float = 0.002) -> mujoco.MjSpec:
    """An empty world with the solver settings every puzzlebot scene uses (see NOTES.md)."""
    scene = mujoco.MjSpec()
    scene.modelname = "puzzlebot"
    scene.compiler.degree = False
    scene.option.timestep = timestep
    scene.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    scene.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    scene.visual.global_.offwidth = 640
    scene.visual.global_.offheight = 480
    scene.add_texture(name="grid", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                      rgb1=[0.32, 0.34, 0.38], rgb2=[0.28, 0.30, 0.34], width=256, height=256)
    grid = scene.add_material(name="grid", texrepeat=[8, 8], reflectance=0.0)
    grid.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "grid"
    scene.worldbody.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[2, 2, 0.05], material="grid",
                             contype=STATIC_BIT, conaffinity=ROBOT_BIT)
    scene.worldbody.add_light(name="key", pos=[-0.6, -0.4, 1.5], dir=[0.4, 0.25, -1], diffuse=[0.7, 0.7, 0.7],
                              castshadow=False)
    scene.worldbody.add_light(name="fill", pos=[0.4, 0.6, 1.2], dir=[-0.3, -0.4, -1], diffuse=[0.35, 0.35, 0.35],
                              castshadow=False)
    return scene


def add_cameras(scene: mujoco.MjSpec, cameras: tuple[CameraSpec, ...] = DEFAULT_CAMERAS) -> None:
    """Fixed world cameras aimed at their targets."""
    for cam in cameras:
        pos, target = np.array(cam.pos), np.array(cam.target)
        forward = target - pos
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        # A MuJoCo camera looks along its -z with +y up.
        axes = np.column_stack([right, up, -forward])
        scene.worldbody.add_camera(name=cam.name, pos=pos, quat=quat_from_matrix(axes), fovy=cam.fovy)


def puzzle_scene(spec: PuzzleSpec | ExternalPuzzleSpec, placement: Placement = Placement(),
                 cameras: tuple[CameraSpec, ...] = DEFAULT_CAMERAS) -> mujoco.MjSpec:
    """The puzzle (a PuzzleSpec or an MJCF puzzle) alone on a table, with lights and cameras."""
    scene = new_scene()
    if isinstance(spec, ExternalPuzzleSpec):
        add_external(scene, spec, np.array([*placement.pos, 0.0]), placement.quat())
    else:
        add_puzzle(scene, lay_out(spec), placement)
    add_cameras(scene, cameras)
    return scene
