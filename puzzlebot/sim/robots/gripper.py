"""A floating parallel gripper driven through a mocap weld: fast, for when arm kinematics are not the point.

Settings from NOTES.md ("Grasping and operating mechanisms physically"): fingers condim 4,
friction 1.5 with priority 1, solref 0.01, solimp 0.95 0.99 0.001; grip kp 2000 with a
+-40 N force limit; mocap weld solref 0.02 (softer welds sag under load).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from puzzlebot.sim.frames import tool_quat
from puzzlebot.sim.robots.base import (
    PART_BIT,
    ROBOT_BIT,
    STATIC_BIT,
    ArmController,
    HandGeometry,
    Mount,
    RobotModel,
    SidePush,
)

PREFIX = "gripper/"
PALM_Z, PALM_HALF = -0.065, (0.025, 0.06, 0.02)  # tool frame, m: the palm box behind the fingers
FINGER_Z, FINGER_HALF = -0.015, (0.012, 0.006, 0.03)  # finger box centre and half sizes, finger frame
WRIST_Z, WRIST_RADIUS, WRIST_HALF_LENGTH = -0.12, 0.03, 0.035  # the wrist cylinder behind the palm


@dataclass(frozen=True)
class GripperConfig:
    finger_travel: float = 0.04  # m per finger; opening 2 x 0.04 + 0.004 clears a 6 cm knob
    grip_kp: float = 2000.0  # N/m, NOTES.md
    grip_force: float = 40.0  # N, NOTES.md
    # Reflected inertia of the finger drive (lead screw + motor rotor). MuJoCo's contact
    # stiffness scales with the effective mass: with bare 50 g fingers a 40 N grip sinks
    # centimetres into a handle, with a geared drive's inertia it sinks about a millimetre.
    finger_armature: float = 1.0  # kg
    palm_mass: float = 0.6  # kg, a small industrial parallel gripper (Robotiq Hand-E is ~1 kg)
    weld_solref: tuple[float, float] = (0.02, 1.0)  # NOTES.md
    home_offset: tuple[float, float, float] = (0.25, 0.0, 0.30)  # m from the mount: above the table


class FloatingGripper(RobotModel):
    """Palm on a free joint welded to a mocap target, two coupled slide fingers."""

    name = "gripper"

    def __init__(self, config: GripperConfig = GripperConfig()):
        self.config = config
        self.mount = Mount()

    def attach(self, scene: mujoco.MjSpec, mount: Mount) -> None:
        cfg = self.config
        self.mount = mount
        home_pos, home_quat = self.home(mount)
        target = scene.worldbody.add_body(name=f"{PREFIX}target", mocap=True, pos=home_pos, quat=home_quat)
        target.add_geom(name=f"{PREFIX}target_marker", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.005, 0, 0],
                        rgba=[0.1, 0.8, 0.1, 0.3], contype=0, conaffinity=0, group=5)
        palm = scene.worldbody.add_body(name=f"{PREFIX}palm", pos=home_pos, quat=home_quat)
        palm.add_freejoint(name=f"{PREFIX}free")
        bits = dict(contype=ROBOT_BIT, conaffinity=STATIC_BIT | PART_BIT)
        palm.add_geom(name=f"{PREFIX}palm", type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0, 0, PALM_Z],
                      size=list(PALM_HALF), mass=cfg.palm_mass, rgba=[0.2, 0.2, 0.22, 1], **bits)
        palm.add_geom(name=f"{PREFIX}wrist", type=mujoco.mjtGeom.mjGEOM_CYLINDER, pos=[0, 0, WRIST_Z],
                      size=[WRIST_RADIUS, WRIST_HALF_LENGTH, 0], mass=0.2, rgba=[0.3, 0.3, 0.33, 1], **bits)
        palm.add_site(name=f"{PREFIX}tcp", size=[0.006, 0, 0], rgba=[1, 0.5, 0, 1], group=4)
        for side, sign in (("left", 1.0), ("right", -1.0)):
            finger = palm.add_body(name=f"{PREFIX}{side}_finger", pos=[0, sign * (cfg.finger_travel + 0.006), 0])
            finger.add_joint(name=f"{PREFIX}{side}_finger", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, -sign, 0],
                             range=[0, cfg.finger_travel], damping=20.0, armature=cfg.finger_armature)
            finger.add_geom(name=f"{PREFIX}{side}_finger", type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0, 0, FINGER_Z],
                            size=list(FINGER_HALF), mass=0.05, rgba=[0.5, 0.5, 0.55, 1], condim=4,
                            friction=[1.5, 0.02, 0.001], priority=1, solref=[0.01, 1],
                            solimp=[0.95, 0.99, 0.001, 0.5, 2.0], **bits)
        scene.add_equality(name=f"{PREFIX}weld", type=mujoco.mjtEq.mjEQ_WELD, name1=f"{PREFIX}palm",
                           name2=f"{PREFIX}target", objtype=mujoco.mjtObj.mjOBJ_BODY,
                           solref=list(cfg.weld_solref),
                           # anchor (3), relative pose (3 + 4: identity), torque scale
                           data=[0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0])
        scene.add_equality(name=f"{PREFIX}finger_coupling", type=mujoco.mjtEq.mjEQ_JOINT,
                           name1=f"{PREFIX}left_finger", name2=f"{PREFIX}right_finger",
                           objtype=mujoco.mjtObj.mjOBJ_JOINT)
        act = scene.add_actuator(name=f"{PREFIX}grip", target=f"{PREFIX}left_finger",
                                 trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=cfg.grip_kp)
        act.ctrlrange = [0, cfg.finger_travel]
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-cfg.grip_force, cfg.grip_force]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE

    def home(self, mount: Mount) -> tuple[np.ndarray, np.ndarray]:
        """Home TCP pose: above the table in front of the mount, approaching along the mount's +x."""
        c, s = np.cos(mount.yaw), np.sin(mount.yaw)
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        pos = np.array(mount.pos) + rot @ np.array(self.config.home_offset)
        return pos, tool_quat(rot @ np.array([1.0, 0, 0]), np.array([0, 0, 1.0]))

    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> GripperController:
        return GripperController(model, data, self)


def _envelope() -> tuple[tuple[float, float, float], ...]:
    """Corners of the palm box and of the wrist cylinder's bounding box, tool frame."""
    slabs = ((PALM_Z + PALM_HALF[2], PALM_HALF[0], PALM_HALF[1]), (PALM_Z - PALM_HALF[2], PALM_HALF[0], PALM_HALF[1]),
             (WRIST_Z - WRIST_HALF_LENGTH, WRIST_RADIUS, WRIST_RADIUS))
    return tuple((sx * hx, sy * hy, z) for z, hx, hy in slabs for sx in (1.0, -1.0) for sy in (1.0, -1.0))


def _closed_fingers() -> tuple[tuple[float, float, float], ...]:
    """Corners of the two closed finger boxes together, tool frame."""
    half_x, half_y = FINGER_HALF[0], 2 * FINGER_HALF[1]
    ends = (FINGER_Z - FINGER_HALF[2], FINGER_Z + FINGER_HALF[2])
    return tuple((sx * half_x, sy * half_y, z) for z in ends for sx in (1.0, -1.0) for sy in (1.0, -1.0))


class GripperController(ArmController):
    joint_names = (f"{PREFIX}left_finger", f"{PREFIX}right_finger")
    # Closed fingers: box tips reach 1.5 cm past the TCP and are 2 x 6 mm thick around it, so
    # their +y face pushes sideways (the finger geoms in `FloatingGripper.attach`); grasps
    # start fully open; NOTES.md: 0.5 m/s in free space worked.
    # The fingers' 1.2 cm faces across (tool x) push too, 5 mm from their tips (which then go
    # under a low knob, the hand pitched up behind them): the palm (12 cm along tool y) then
    # lies level while pushing a low handle up or down.
    hand = HandGeometry(press_reach=0.015,
                        side_pushes=(SidePush(point=(0.0, 0.012, 0.0)),
                                     SidePush(point=(0.012, 0.0, 0.01), axis=(1.0, 0.0, 0.0))),
                        preshape=0.0, grasp_offset=0.0, max_speed=0.5, wide_axis=(0.0, 1.0, 0.0),
                        opening=2 * GripperConfig().finger_travel,
                        envelope=_envelope(), closed_fingers=_closed_fingers())

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, robot: FloatingGripper):
        self.model, self.data, self.robot = model, data, robot
        self._mocap = model.body(f"{PREFIX}target").mocapid[0]
        self._site = model.site(f"{PREFIX}tcp").id
        self._free_qpos = model.joint(f"{PREFIX}free").qposadr[0]
        self._free_dof = model.joint(f"{PREFIX}free").dofadr[0]
        self._finger_qpos = np.array([model.joint(n).qposadr[0] for n in self.joint_names])
        self._finger_dof = np.array([model.joint(n).dofadr[0] for n in self.joint_names])
        self._act = model.actuator(f"{PREFIX}grip").id
        self._travel = robot.config.finger_travel
        palm = model.body(f"{PREFIX}palm").id
        bodies = {palm} | {model.body(f"{PREFIX}{s}_finger").id for s in ("left", "right")}
        self._geoms = np.array([g for g in range(model.ngeom) if model.geom_bodyid[g] in bodies])

    def reset(self, data: mujoco.MjData) -> None:
        pos, quat = self.robot.home(self.robot.mount)
        data.mocap_pos[self._mocap], data.mocap_quat[self._mocap] = pos, quat
        data.qpos[self._free_qpos:self._free_qpos + 7] = np.concatenate([pos, quat])
        data.qvel[self._free_dof:self._free_dof + 6] = 0
        data.qpos[self._finger_qpos] = 0
        data.ctrl[self._act] = 0

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[self._site])
        return self.data.site_xpos[self._site].copy(), quat

    def set_tcp_target(self, pos: np.ndarray, quat: np.ndarray) -> None:
        self.data.mocap_pos[self._mocap] = pos
        self.data.mocap_quat[self._mocap] = quat

    def set_grip(self, closure: float) -> None:
        self.data.ctrl[self._act] = float(np.clip(closure, 0.0, 1.0)) * self._travel

    def grip(self) -> float:
        return float(self.data.qpos[self._finger_qpos[0]] / self._travel)

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._finger_qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._finger_dof].copy()

    def set_joint_targets(self, q: np.ndarray) -> None:
        raise NotImplementedError("the floating gripper has no arm joints: use end-effector actions "
                                  "(robot=gripper supports control=ee only)")

    def geom_ids(self) -> np.ndarray:
        return self._geoms
