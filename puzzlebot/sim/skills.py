"""Scripted skills that operate one part with any `ArmController`: grasp-and-move, push, press.

A skill reads the part's handle site and joint axis from the model it is given, so the same
code runs in the true world (the oracle) and in a fitted model (the agent). The handle's
path for a target joint value follows the joint's kinematics: a straight line for a slide,
an arc about the hinge axis (with the tool rotating along) for a hinge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from puzzlebot.sim.mechanisms import rotation
from puzzlebot.sim.world import PuzzleWorld

FINGER_TIP = 0.015  # m the fingertips reach beyond the TCP along the approach
FINGER_BLOCK = 0.012  # m half width of the closed fingers, seen along the grip axis


@dataclass(frozen=True)
class SkillConfig:
    free_speed: float = 0.4  # m/s in free space (NOTES.md: 0.5 worked)
    contact_speed: float = 0.08  # m/s while moving a part (NOTES.md: 0.1 worked)
    control_substeps: int = 10  # physics steps per control update (20 ms at 2 ms)
    standoff: float = 0.12  # m in front of a handle before moving in
    clearance: float = 0.006  # m between fingers and what they push before contact
    settle_s: float = 0.3  # s to let a grasp close or a part settle
    overshoot: float = 0.03  # fraction of the joint range commanded past the target (friction)


@dataclass(frozen=True)
class SkillResult:
    part: str
    target: float
    reached: float
    success: bool
    sim_time_s: float


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, a, b)
    return out


def _rot_quat(axis: np.ndarray, angle: float) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, axis, angle)
    return quat


class SkillExecutor:
    """Moves the robot's TCP target smoothly and steps physics; operates parts."""

    def __init__(self, world: PuzzleWorld, config: SkillConfig = SkillConfig(),
                 on_control: Callable[[PuzzleWorld], None] | None = None):
        self.world = world
        self.config = config
        self.on_control = on_control
        self.cmd_pos, self.cmd_quat = world.arm.tcp_pose()

    # ------------------------------------------------------------------ primitives
    def _control_step(self) -> None:
        self.world.arm.set_tcp_target(self.cmd_pos, self.cmd_quat)
        self.world.step(self.config.control_substeps)
        if self.on_control is not None:
            self.on_control(self.world)

    def wait(self, seconds: float) -> None:
        dt = self.config.control_substeps * self.world.model.opt.timestep
        for _ in range(max(1, int(round(seconds / dt)))):
            self._control_step()

    def move_to(self, pos: np.ndarray, quat: np.ndarray, speed: float) -> None:
        """Straight-line TCP motion with slerped orientation at `speed` (m/s, and ~rad/s)."""
        start_pos, start_quat = self.cmd_pos.copy(), self.cmd_quat.copy()
        dq = np.zeros(3)
        mujoco.mju_subQuat(dq, quat, start_quat)
        dt = self.config.control_substeps * self.world.model.opt.timestep
        distance = max(np.linalg.norm(pos - start_pos), 0.1 * np.linalg.norm(dq))
        steps = max(1, int(np.ceil(distance / (speed * dt))))
        for i in range(1, steps + 1):
            s = i / steps
            self.cmd_pos = start_pos + s * (pos - start_pos)
            self.cmd_quat = start_quat.copy()
            mujoco.mju_quatIntegrate(self.cmd_quat, dq, s)
            self._control_step()

    def follow(self, poses: list[tuple[np.ndarray, np.ndarray]], speed: float) -> None:
        for pos, quat in poses:
            self.move_to(pos, quat, speed)

    # ------------------------------------------------------------------ part geometry
    def handle_frame(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Handle site position and rotation matrix (columns: x, grip axis, approach)."""
        site = self.world.model.site(f"{part}/handle").id
        return self.world.data.site_xpos[site].copy(), self.world.data.site_xmat[site].reshape(3, 3).copy()

    def handle_path(self, part: str, target: float, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Handle positions and frame rotations from the current joint value to `target`."""
        model, data = self.world.model, self.world.data
        joint = model.joint(f"{part}/joint")
        q = float(data.qpos[joint.qposadr[0]])
        axis = data.xaxis[joint.id].copy()
        anchor = data.xanchor[joint.id].copy()
        pos, mat = self.handle_frame(part)
        path = []
        for s in np.linspace(0, 1, n + 1)[1:]:
            dq = s * (target - q)
            if joint.type[0] == mujoco.mjtJoint.mjJNT_SLIDE:
                path.append((pos + axis * dq, mat))
            else:
                rot = rotation(axis, dq)
                path.append((anchor + rot @ (pos - anchor), rot @ mat))
        return path

    # ------------------------------------------------------------------ skills
    def operate(self, part: str, target: float) -> SkillResult:
        """Bring `part` to joint value `target` with the skill its handle affords."""
        start_time = self.world.data.time
        model = self.world.model
        lo, hi = model.jnt_range[model.joint(f"{part}/joint").id]
        span = hi - lo
        q = self.world.part_position(part)
        commanded = float(np.clip(target + np.sign(target - q) * self.config.overshoot * span, lo, hi))
        mode = self._mode(part)
        if mode == "grasp":
            self._grasp_move(part, commanded)
        else:
            self._push_move(part, commanded)
        reached = self.world.part_position(part)
        tolerance = 0.1 * abs(target - q) + 0.01 * span
        return SkillResult(part, target, reached, abs(reached - target) <= tolerance,
                           self.world.data.time - start_time)

    def _mode(self, part: str) -> str:
        mechanism = self.world.spec.part(part).mechanism
        return "grasp" if mechanism in ("drawer", "door", "lid") else "push"

    def _tool_quat(self, mat: np.ndarray) -> np.ndarray:
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, np.ascontiguousarray(mat).reshape(-1))
        return quat

    def _approach(self, pos: np.ndarray, quat: np.ndarray, approach: np.ndarray) -> None:
        """Back off, travel to a stand-off point in front of `pos`, then move in."""
        cfg = self.config
        retreat = self.cmd_pos - self._current_approach() * 0.06
        self.move_to(retreat, self.cmd_quat, cfg.free_speed)
        self.move_to(pos - approach * cfg.standoff, quat, cfg.free_speed)
        self.move_to(pos, quat, cfg.contact_speed * 2)

    def _current_approach(self) -> np.ndarray:
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, self.cmd_quat)
        return mat.reshape(3, 3)[:, 2]

    def _leave(self, release_first: bool = True) -> None:
        """Open and back off (a grasp), or back off and then open (a push: opening would nudge the part)."""
        cfg = self.config
        if release_first:
            self.world.arm.set_grip(0.0)
            self.wait(cfg.settle_s)
        self.move_to(self.cmd_pos - self._current_approach() * cfg.standoff, self.cmd_quat, cfg.free_speed)
        self.world.arm.set_grip(0.0)

    def _grasp_move(self, part: str, target: float) -> None:
        cfg = self.config
        pos, mat = self.handle_frame(part)
        approach = mat[:, 2]
        self.world.arm.set_grip(0.0)
        self._approach(pos, self._tool_quat(mat), approach)
        self.world.arm.set_grip(1.0)
        self.wait(cfg.settle_s)
        self._follow_handle(part, target, offset=np.zeros(3))
        self.wait(cfg.settle_s)
        self._leave()

    def _push_move(self, part: str, target: float) -> None:
        """Push the handle with closed fingers from the side opposite to its motion."""
        cfg = self.config
        pos, mat = self.handle_frame(part)
        approach = mat[:, 2]
        path = self.handle_path(part, target, 1)
        direction = path[0][0] - pos
        if np.linalg.norm(direction) < 1e-6:
            return
        direction /= np.linalg.norm(direction)
        self.world.arm.set_grip(1.0)
        if abs(direction @ approach) > 0.7:  # a press: push along the approach with the fingertips
            quat = self._tool_quat(mat)
            contact = FINGER_TIP
        else:  # a side push: the grip axis faces the motion
            quat = self._push_quat(approach, direction)
            contact = FINGER_BLOCK + self._radius(part)
        self._approach(pos - direction * (contact + cfg.clearance), quat, approach)
        self._follow_handle(part, target, offset=-direction * contact, push_quat=quat)
        self.move_to(self.cmd_pos - direction * cfg.clearance * 2, self.cmd_quat, cfg.contact_speed)
        self._leave(release_first=False)

    def _push_quat(self, approach: np.ndarray, direction: np.ndarray) -> np.ndarray:
        from puzzlebot.sim.robots.gripper import tool_quat

        return tool_quat(approach, direction)

    def _radius(self, part: str) -> float:
        from puzzlebot.sim.mechanisms import layout

        return layout(self.world.spec.part(part), self.world.spec.base).handle.radius

    def _follow_handle(self, part: str, target: float, offset: np.ndarray,
                       push_quat: np.ndarray | None = None) -> None:
        """Move the tool along the handle's path, keeping its pose relative to the handle."""
        pos0, mat0 = self.handle_frame(part)
        tool_quat0 = self.cmd_quat.copy() if push_quat is None else push_quat
        tool_offset = self.cmd_pos - pos0 if push_quat is None else offset
        inv0 = mat0.T
        travel = np.linalg.norm(self.handle_path(part, target, 1)[0][0] - pos0)
        n = max(2, int(np.ceil(travel / 0.01)))
        for pos, mat in self.handle_path(part, target, n):
            rel = mat @ inv0  # rotation of the handle since the start
            quat = _quat_mul(self._tool_quat(rel), tool_quat0)
            self.move_to(pos + rel @ tool_offset, quat, self.config.contact_speed)
