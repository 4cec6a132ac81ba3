"""Kinova Jaco arm with its 3-finger hand, from dm_control's offline MJCF files.

`JacoArm.attach` loads `jaco_arm.xml` and `jaco_hand.xml` with MjSpec, puts the hand on the
wrist, adds position actuators, gravity compensation, collision bits and a TCP site, and
attaches the result to a scene under the prefix "jaco/". `JacoController` drives it in
Cartesian space with damped-least-squares IK solved on its own kinematic `MjData`, so the
physics state is never touched by the solver; the arm's position actuators track the IK angles.

TCP frame (see `base.py`): the site "jaco/tcp" sits 0.16 m out of the palm on the hand's axis,
where the pads of a half-closed hand meet. Tool +z is the approach direction (out of the palm);
tool +y points from the thumb (finger 1) towards the pair of fingers (2 and 3), the axis
along which the pads close; tool +x = y × z, the axis joining fingers 2 and 3. Open
fingertips reach only 1.3 cm past the TCP and span ~20 cm along y, so an open hand engulfs
small parts; closed (a fist) they curl 3.8 cm past it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dm_control
import mujoco
import numpy as np

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

KINOVA_DIR = os.path.join(os.path.dirname(dm_control.__file__), "third_party", "kinova")
PREFIX = "jaco/"
ARM_JOINTS = tuple(f"joint_{i}" for i in range(1, 7))  # names in jaco_arm.xml
FINGER_JOINTS = tuple(f"hand/finger_{i}" for i in range(1, 4))  # jaco_hand.xml, under "hand/"
TCP_SITE = "tcp"
BASE_BODY = "b_base"


@dataclass(frozen=True)
class JacoConfig:
    """Gains, limits and IK settings; each default says where it came from."""

    arm_kp: float = 500.0
    """Arm position gain, N·m/rad (tuned here, see NOTES.md)."""
    arm_kv: float = 60.0
    """Arm velocity gain of the position actuators, N·m·s/rad (tuned here, see NOTES.md)."""
    arm_torque: float = 40.0
    """Arm torque limit, N·m (tuned here, see NOTES.md; Kinova's datasheet peak is 30.5 for
    joints 1-3 and 6.8 for joints 4-6, as in dm_control's jaco_arm.py)."""
    finger_kp: float = 10.0
    """Finger position gain, N·m/rad (tuned here, see NOTES.md; dm_control's jaco_hand.py uses
    10 as its velocity-actuator gain)."""
    finger_torque: float = 2.0
    """Finger torque limit, N·m (tuned here, see NOTES.md: ±0.5 cannot hold a handle)."""
    finger_friction: tuple[float, float, float] = (1.5, 0.02, 0.001)
    """Sliding, torsional, rolling friction of finger geoms (tuned here, see NOTES.md)."""
    tcp_offset: float = 0.16
    """TCP distance out of the palm along the approach axis, m (measured here on dm_control's
    finger meshes: pad centres meet at 0.16-0.17; dm_control's gripsite is at 0.159)."""
    ik_damping: float = 0.05
    """Damped-least-squares λ (tuned here, see NOTES.md)."""
    ik_rot_weight: float = 0.3
    """Metres of position error one radian of orientation error counts as (tuned here)."""
    ik_max_step: float = 0.05
    """Largest joint change per IK iteration, rad (tuned here, see NOTES.md)."""
    ik_iters: int = 5
    """IK iterations per `set_tcp_target` call, warm-started from the last solution."""
    ik_tol: float = 1e-4
    """Weighted task-space error below which an IK call stops early."""
    ik_max_lead: float = 0.3
    """Largest lead of the IK angles over the measured ones, rad (tuned here). Without it the
    solver runs ahead of a lagging arm (through a wrist flip, say) and the actuators then take
    an unplanned joint-space path, sweeping the hand through the scene."""
    home: tuple[float, ...] = (0.17, 3.04, 5.24, -0.59, -0.23, 0.82)
    """Arm home angles, rad: the elbow-up IK solution for the TCP 0.45 m in front of the base,
    0.40 m up, tool 45° down towards +x (chosen here; see `JacoController.reset`)."""


def _yaw_quat(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


class JacoArm(RobotModel):
    """Builds the Jaco arm + hand into a scene and binds controllers to compiled models."""

    name = "jaco"
    # 20 cm further back than Mount()'s default (chosen here): from x = -0.55 the hand cannot
    # pull a drawer 12 cm towards the base, nor reach low front parts with a horizontal
    # approach (multi-start IK over generated puzzles); from -0.75 it reaches every front part
    # and a lid's handle up to ~1.5 rad open. Off-centre mounts lose doors swinging away.
    default_mount = Mount(pos=(-0.75, 0.0, 0.0))

    def __init__(self, config: JacoConfig | None = None):
        self.config = config or JacoConfig()

    def attach(self, scene: mujoco.MjSpec, mount: Mount) -> None:
        """Attach arm and hand at `mount`; the scene keeps its own options (timestep, solver).

        Args:
            scene: root spec of the puzzle scene; gains elements prefixed "jaco/".
            mount: base position on the table and yaw about world z (0 faces +x).
        """
        cfg = self.config
        arm = mujoco.MjSpec.from_file(os.path.join(KINOVA_DIR, "jaco_arm.xml"))
        hand = mujoco.MjSpec.from_file(os.path.join(KINOVA_DIR, "jaco_hand.xml"))
        for spec in (arm, hand):  # absolute mesh paths: the scene's meshdir must not matter
            for mesh in spec.meshes:
                mesh.file = os.path.join(spec.modelfiledir, spec.meshdir, mesh.file)
        # dm_control attaches the hand at the wrist site; prefix "hand/" keeps the two files'
        # materials (both include common.xml) apart.
        arm.site("wristsite").attach_body(hand.body("hand"), "hand/", "")
        hand_body = arm.body("hand/hand")
        # Hand frame: fingers point along -z, the thumb sits at +y; a half turn about x gives
        # tool +z out of the palm and tool +y from the thumb towards fingers 2 and 3.
        hand_body.add_site(
            name=TCP_SITE,
            pos=[0, 0, -cfg.tcp_offset],
            quat=[0, 1, 0, 0],
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[0.005, 0, 0],
            group=4,
        )
        finger_bodies = {f"hand/b_finger{s}_{i}" for i in range(1, 4) for s in ("", "_tip")}
        for body in arm.bodies:
            if body.name == "world":
                continue
            body.gravcomp = 1.0  # the real Jaco's firmware compensates gravity
            for geom in body.geoms:
                geom.contype = ROBOT_BIT  # collide with table and puzzle, never with itself
                geom.conaffinity = STATIC_BIT | PART_BIT
                if body.name in finger_bodies:
                    geom.friction = list(cfg.finger_friction)
                    geom.priority = 1  # else the other geom's friction may win (NOTES.md)
                    geom.condim = 4
        for i, exclude in enumerate(arm.excludes):  # dm_control's, unnamed in its XML
            exclude.name = f"exclude_{i}"
        for jname in ARM_JOINTS:
            joint = arm.joint(jname)
            act = arm.add_actuator(name=f"act_{jname}", target=jname, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=cfg.arm_kp, kv=cfg.arm_kv)
            if joint.range[0] < joint.range[1]:  # joints 2 and 3; 1, 4-6 turn endlessly
                act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
                act.ctrlrange = joint.range
            else:
                act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
            act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
            act.forcerange = [-cfg.arm_torque, cfg.arm_torque]
        for jname in FINGER_JOINTS:
            act = arm.add_actuator(name=f"act_{jname.split('/')[-1]}", target=jname, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=cfg.finger_kp)
            act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
            act.ctrlrange = arm.joint(jname).range
            act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
            act.forcerange = [-cfg.finger_torque, cfg.finger_torque]
        frame = scene.worldbody.add_frame(name=f"{PREFIX}mount", pos=list(mount.pos), quat=_yaw_quat(mount.yaw))
        scene.attach(arm, frame=frame, prefix=PREFIX)

    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> JacoController:
        """Return a controller for the "jaco/" robot in a model compiled from the scene."""
        return JacoController(self.config).bind(model, data)


class JacoController(ArmController):
    """Cartesian and joint-space control of one attached Jaco, all ids resolved by name."""

    joint_names = tuple(PREFIX + j for j in ARM_JOINTS)
    # Measured here on dm_control's finger meshes (tool frame). Closed, the fingertips curl
    # 3.8 cm past the TCP and fingers 2 and 3 leave a 1.4 cm slot between them (x = +-0.7 cm)
    # that a knob slides into, so a fist pushes sideways with the back of the thumb (centred
    # at x = +1 cm, y = -2.8 cm just past the TCP). Pre-shaped (fingers at 1.0 rad of their
    # 0.15..1.35 rad range) the hand straddles a knob and pushes it with the thumb's inner face
    # (y = -2.5 cm); the thumb's back is then only 2.3 cm further out, so it fits under a low
    # knob where a fist does not. The same pre-shape approaches a handle bar without the open
    # hand's 20 cm span catching panel edges; stop 1 cm short (NOTES.md). 0.3 m/s in free space
    # (chosen here): the position actuators lag their targets by kv/kp = 0.12 s.
    hand = HandGeometry(
        press_reach=0.038,
        side_pushes=(
            SidePush(point=(0.01, -0.025, 0.0), axis=(0.0, 1.0, 0.0), closure=(1.0 - 0.15) / 1.2),
            SidePush(point=(0.01, -0.028, 0.01), axis=(0.0, -1.0, 0.0), closure=1.0),
        ),
        preshape=(1.0 - 0.15) / 1.2,
        grasp_offset=0.01,
        max_speed=0.3,
    )

    def __init__(self, config: JacoConfig | None = None):
        self.config = config or JacoConfig()

    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> JacoController:
        """Resolve joint, actuator, site and geom ids; allocate the IK's kinematic MjData.

        Args:
            model: compiled scene containing a robot attached by `JacoArm.attach`.
            data: the physics state this controller reads and writes `ctrl` into.
        """
        self._model, self._data = model, data
        joints = [model.joint(n) for n in self.joint_names]
        fingers = [model.joint(PREFIX + n) for n in FINGER_JOINTS]
        self._qadr = np.array([j.qposadr[0] for j in joints])
        self._dadr = np.array([j.dofadr[0] for j in joints])
        limited = np.array([bool(j.limited[0]) for j in joints])
        rng = np.array([j.range for j in joints])
        self._lo = np.where(limited, rng[:, 0], -np.inf)
        self._hi = np.where(limited, rng[:, 1], np.inf)
        self._f_qadr = np.array([j.qposadr[0] for j in fingers])
        self._f_dadr = np.array([j.dofadr[0] for j in fingers])
        self._f_lo = np.array([j.range[0] for j in fingers])
        self._f_hi = np.array([j.range[1] for j in fingers])
        self._act = np.array([model.actuator(f"{PREFIX}act_{j}").id for j in ARM_JOINTS])
        self._f_act = np.array([model.actuator(f"{PREFIX}act_{j.split('/')[-1]}").id for j in FINGER_JOINTS])
        self._site = model.site(PREFIX + TCP_SITE).id
        base = model.body(PREFIX + BASE_BODY).id
        self._geoms = np.flatnonzero(model.body_rootid[model.geom_bodyid] == base)
        # IK scratch: a private MjData so solving never disturbs the simulated state.
        self._kin = mujoco.MjData(model)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._quat = np.zeros(4)
        self._qerr = np.zeros(4)
        self._qneg = np.zeros(4)
        self._rot = np.zeros(3)
        self._damp = self.config.ik_damping**2 * np.eye(6)
        self._jac, self._gram, self._sol = np.zeros((6, 6)), np.zeros((6, 6)), np.zeros(6)
        # Warm-start the IK from where the arm is now (reset() moves both to home).
        self._q_ik = np.clip(data.qpos[self._qadr], self._lo, self._hi)
        return self

    def reset(self, data: mujoco.MjData) -> None:
        """Home pose: hand above/behind the workspace, tilted forward-down, fingers open.

        The TCP is 0.45 m in front of the base and 0.40 m up (at the default mount ≈(-0.30, 0,
        0.40)), pointing 45° down towards +x, so approaches along +x and -z are both 45° of
        rotation away and the elbow stays up and behind the workspace.

        Args:
            data: state to write; `mj_forward` is run on it so `tcp_pose` is current.
        """
        home = np.clip(np.array(self.config.home), self._lo, self._hi)
        data.qpos[self._qadr] = home
        data.qvel[self._dadr] = 0.0
        data.ctrl[self._act] = home
        data.qpos[self._f_qadr] = self._f_lo
        data.qvel[self._f_dadr] = 0.0
        data.ctrl[self._f_act] = self._f_lo
        self._q_ik = home.copy()
        mujoco.mj_forward(self._model, data)

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Measured TCP position and wxyz quaternion in the world frame."""
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self._data.site_xmat[self._site])
        return self._data.site_xpos[self._site].copy(), quat

    def _site_error(self, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """Weighted 6D error (position, world-frame rotation vector) of the kinematic TCP."""
        kin = self._kin
        mujoco.mju_mat2Quat(self._quat, kin.site_xmat[self._site])
        mujoco.mju_negQuat(self._qneg, self._quat)
        mujoco.mju_mulQuat(self._qerr, quat, self._qneg)
        if self._qerr[0] < 0:  # shortest way round
            self._qerr *= -1
        mujoco.mju_quat2Vel(self._rot, self._qerr, 1.0)
        err = np.empty(6)
        err[:3] = pos - kin.site_xpos[self._site]
        err[3:] = self.config.ik_rot_weight * self._rot
        return err

    def controller_state(self) -> dict[str, np.ndarray]:
        return {"q_ik": self._q_ik.copy()}

    def restore_controller_state(self, state: dict[str, np.ndarray]) -> None:
        self._q_ik = np.array(state["q_ik"], dtype=float)

    def set_tcp_target(self, pos: np.ndarray, quat: np.ndarray) -> None:
        """Run a few damped-least-squares IK steps towards the pose; actuators track them.

        The solution is warm-started from the previous call's, so a target held over several
        control steps converges while each call stays cheap; steps are capped so the
        commanded angles never jump.

        Args:
            pos: TCP target position (3,), world frame.
            quat: TCP target orientation, wxyz (4,), world frame.
        """
        cfg, model, kin = self.config, self._model, self._kin
        pos = np.asarray(pos, dtype=float)
        quat = np.asarray(quat, dtype=float) / np.linalg.norm(quat)
        q = self._q_ik
        for _ in range(cfg.ik_iters):
            kin.qpos[self._qadr] = q
            mujoco.mj_kinematics(model, kin)
            mujoco.mj_comPos(model, kin)  # mj_jacSite needs cdof and subtree_com
            err = self._site_error(pos, quat)
            if err @ err < cfg.ik_tol**2:
                break
            mujoco.mj_jacSite(model, kin, self._jacp, self._jacr, self._site)
            jac, gram, sol = self._jac, self._gram, self._sol
            np.take(self._jacp, self._dadr, axis=1, out=jac[:3])
            np.take(self._jacr, self._dadr, axis=1, out=jac[3:])
            jac[3:] *= cfg.ik_rot_weight
            # dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e, by Cholesky (np.linalg.solve is slower on 6x6)
            np.add(jac @ jac.T, self._damp, out=gram)
            mujoco.mju_cholFactor(gram, 0.0)
            mujoco.mju_cholSolve(sol, gram, err)
            dq = jac.T @ sol
            peak = np.abs(dq).max()
            if peak > cfg.ik_max_step:
                dq *= cfg.ik_max_step / peak
            q = np.clip(q + dq, self._lo, self._hi)
        # Stay on a path the arm can follow: scale the lead over the measured angles down.
        lead = q - self._data.qpos[self._qadr]
        peak = np.abs(lead).max()
        if peak > cfg.ik_max_lead:
            q = self._data.qpos[self._qadr] + lead * (cfg.ik_max_lead / peak)
        self._q_ik = q
        self._data.ctrl[self._act] = q

    def set_grip(self, closure: float) -> None:
        """Map closure 0 (open) .. 1 (closed) onto the finger joint range; force-limited."""
        c = float(np.clip(closure, 0.0, 1.0))
        self._data.ctrl[self._f_act] = self._f_lo + c * (self._f_hi - self._f_lo)

    def grip(self) -> float:
        """Mean measured finger closure in [0, 1]."""
        q = self._data.qpos[self._f_qadr]
        return float(np.clip(np.mean((q - self._f_lo) / (self._f_hi - self._f_lo)), 0.0, 1.0))

    def joint_positions(self) -> np.ndarray:
        """Measured arm joint angles (rad), in `joint_names` order."""
        return self._data.qpos[self._qadr].copy()

    def joint_velocities(self) -> np.ndarray:
        """Measured arm joint velocities (rad/s), in `joint_names` order."""
        return self._data.qvel[self._dadr].copy()

    def set_joint_targets(self, q: np.ndarray) -> np.ndarray:
        """Command arm angles, clipped to the limited joints' ranges; IK restarts from them.

        Returns:
            The targets actually sent, after clipping.
        """
        q = np.clip(np.asarray(q, dtype=float), self._lo, self._hi)
        self._q_ik = q.copy()
        self._data.ctrl[self._act] = q
        return q

    def geom_ids(self) -> np.ndarray:
        """Ids of every geom on the robot's kinematic tree (arm, hand and fingers)."""
        return self._geoms.copy()
