"""Scripted skills that operate one part with any `ArmController`: grasp-and-move, push, press.

A skill reads the part's handle site and joint axis from the model it is given, so the same
code runs in the true world (the oracle) and in a fitted model (the agent). The handle's
path for a target joint value follows the joint's kinematics: a straight line for a slide,
an arc about the hinge axis (with the tool rotating along) for a hinge.

Everything robot-specific (how far the closed hand reaches, which spot of it pushes, how to
pre-shape it for a grasp, how fast it may move) comes from the controller's `HandGeometry`,
so the same skills drive the floating gripper and the Jaco arm. What an arm adds is handled
without naming it: the hand waits at each stand-off until the measured TCP has caught up,
travels between handles through a via point in front of the puzzle, gives up carrying a
handle when it falls behind (out of reach) and pushes it on with the fist instead, and a
retry of the same part grasps, pushes or presses another way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from puzzlebot.sim.frames import quat_from_matrix, quat_multiply
from puzzlebot.sim.mechanisms import layout, rotation
from puzzlebot.sim.robots.base import HandGeometry
from puzzlebot.sim.world import PuzzleWorld


@dataclass(frozen=True)
class SkillConfig:
    free_speed: float = 0.4  # m/s in free space (NOTES.md: 0.5 worked); capped by the hand's max_speed
    contact_speed: float = 0.08  # m/s while moving a part (NOTES.md: 0.1 worked)
    control_substeps: int = 10  # physics steps per control update (20 ms at 2 ms)
    standoff: float = 0.12  # m in front of a handle before moving in
    clearance: float = 0.006  # m between fingers and what they push before contact
    settle_s: float = 0.3  # s to let a grasp close or a part settle
    overshoot: float = 0.03  # fraction of the joint range commanded past the target (friction)
    push_depth: float = 0.02  # m a pushing hand may reach past a push handle's point towards the
    # face: the handle sits 1.2 cm inside the knob's end and the bolt rod or face is 3 cm further
    retreat: float = 0.06  # m to back off along the current approach before travelling
    via_pullback: float = 0.12  # m towards the robot's base for the via point between two handles
    via_min_height: float = 0.12  # m above the table for that via point (an arm's elbow stays off it)
    settle_tolerance: float = 0.004  # m (+ 0.1 m/rad of orientation) the TCP must be within before moving in
    settle_timeout_s: float = 2.0  # s to wait for it at most
    regrip_speed: float = 0.2  # m/s (and 2 rad/s) while swinging the hand about a handle bar
    stall_distance: float = 0.05  # m the TCP may lag its command while carrying a part before giving up


@dataclass(frozen=True)
class SkillResult:
    part: str
    target: float
    reached: float
    success: bool
    sim_time_s: float


class SkillExecutor:
    """Moves the robot's TCP target smoothly and steps physics; operates parts."""

    def __init__(self, world: PuzzleWorld, config: SkillConfig = SkillConfig(),
                 on_control: Callable[[PuzzleWorld], None] | None = None):
        self.world = world
        self.config = config
        self.on_control = on_control
        self.hand: HandGeometry = world.arm.hand
        self._tries: dict[str, int] = {}  # per part: a retry grasps or pushes another way
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

    def settle(self, tolerance: float | None = None, timeout: float | None = None) -> bool:
        """Hold the commanded pose until the measured TCP is within `tolerance` of it (or time runs out).

        A floating gripper is there at once; an arm's joints lag behind their targets.

        Returns:
            Whether the TCP arrived within the time.
        """
        cfg = self.config
        tolerance = cfg.settle_tolerance if tolerance is None else tolerance
        timeout = cfg.settle_timeout_s if timeout is None else timeout
        dt = cfg.control_substeps * self.world.model.opt.timestep
        for _ in range(int(np.ceil(timeout / dt))):
            pos, quat = self.world.arm.tcp_pose()
            dq = np.zeros(3)
            mujoco.mju_subQuat(dq, quat, self.cmd_quat)
            if np.linalg.norm(pos - self.cmd_pos) + 0.1 * np.linalg.norm(dq) < tolerance:
                return True
            self._control_step()
        return False

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
        joint = model.joint(self.world.joint_name(part))
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
        lo, hi = model.jnt_range[model.joint(self.world.joint_name(part)).id]
        span = hi - lo
        q = self.world.part_position(part)
        commanded = float(np.clip(target + np.sign(target - q) * self.config.overshoot * span, lo, hi))
        if self._mode(part) == "grasp":
            self._grasp_move(part, commanded)
        else:
            self._push_move(part, commanded)
        self._tries[part] = self._tries.get(part, 0) + 1
        reached = self.world.part_position(part)
        tolerance = 0.1 * abs(target - q) + 0.01 * span
        return SkillResult(part, target, reached, abs(reached - target) <= tolerance,
                           self.world.data.time - start_time)

    def _mode(self, part: str) -> str:
        mechanism = self.world.spec.part(part).mechanism
        return "grasp" if mechanism in ("drawer", "door", "lid") else "push"

    def _free_speed(self) -> float:
        return min(self.config.free_speed, self.hand.max_speed)

    def _current_approach(self) -> np.ndarray:
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, self.cmd_quat)
        return mat.reshape(3, 3)[:, 2]

    def _towards_base(self, point: np.ndarray) -> np.ndarray:
        """Horizontal unit vector from `point` towards the robot's mount."""
        away = np.array(self.world.mount.pos, dtype=float) - point
        away[2] = 0.0
        norm = np.linalg.norm(away)
        return away / norm if norm > 1e-6 else np.zeros(3)

    def _approach(self, pos: np.ndarray, quat: np.ndarray, approach: np.ndarray) -> None:
        """Back off, pass a via point pulled back towards the robot, stand off in front of `pos`, move in.

        The via point keeps the hand (and an arm's forearm) in front of the puzzle and off the
        table while the tool turns to its new orientation, instead of sweeping across
        protruding parts; the hand waits at the stand-off until an arm has caught up.
        """
        cfg = self.config
        speed = self._free_speed()
        retreat = self.cmd_pos - self._current_approach() * cfg.retreat
        self.move_to(retreat, self.cmd_quat, speed)
        standoff = pos - approach * cfg.standoff
        middle = 0.5 * (retreat + standoff)
        via = middle + self._towards_base(middle) * cfg.via_pullback
        via[2] = max(via[2], cfg.via_min_height)
        self.move_to(via, quat, speed)
        self.move_to(standoff, quat, speed)
        self.settle()
        self.move_to(pos, quat, cfg.contact_speed * 2)
        self.settle()

    def _leave(self, closure: float | None = None) -> None:
        """Back off along the approach; with `closure`, first open the hand to it (release a grasp)."""
        cfg = self.config
        if closure is not None:
            self.world.arm.set_grip(closure)
            self.wait(cfg.settle_s)
        self.move_to(self.cmd_pos - self._current_approach() * cfg.standoff, self.cmd_quat, self._free_speed())

    def _grasp_move(self, part: str, target: float) -> None:
        """Pre-shape the hand, move in to just short of the handle, close, carry it along its path.

        Where the arm cannot carry the handle any further (a lid swinging up over the box takes
        the hand out of reach), turn the hand about the handle bar and push it on with the fist.
        """
        cfg, hand = self.config, self.hand
        pos, mat = self.handle_frame(part)
        approach = mat[:, 2]
        if self._tries.get(part, 0) % 2:  # a retry grasps the bar the other way round
            mat = mat @ np.diag([-1.0, -1.0, 1.0])
        self.world.arm.set_grip(hand.preshape)
        self._approach(pos - approach * hand.grasp_offset, quat_from_matrix(mat), approach)
        self.world.arm.set_grip(1.0)
        self.wait(cfg.settle_s)
        if not self._follow_handle(part, target) and self._regrip_and_press(part, target):
            return
        self.wait(cfg.settle_s)
        self._leave(closure=hand.preshape)

    def _regrip_and_press(self, part: str, target: float) -> bool:
        """Swing the opened hand about a grasped handle bar until the fist faces the bar's
        motion, then push the bar the rest of the way with the fist (turning with a hinge).

        A lid lifted by its front bar takes an arm's wrist out of reach long before it stands
        open; pushed from behind, the bar stays in reach. Only where the bar then moves away
        from the robot: a hand cannot push a part towards itself.

        Returns:
            Whether it pushed.
        """
        cfg, hand = self.config, self.hand
        pos, mat = self.handle_frame(part)
        tangent = self.handle_path(part, target, 20)[0][0] - pos
        if np.linalg.norm(tangent) < 1e-6:
            return False
        tangent /= np.linalg.norm(tangent)
        if tangent @ self._towards_base(pos) > -0.3:
            return False
        bar = mat[:, 0]
        start_quat = self.cmd_quat.copy()
        approach = self._current_approach()
        angle = float(np.arctan2(np.cross(approach, tangent) @ bar, approach @ tangent))
        reach = hand.press_reach + self._radius(part)
        self.world.arm.set_grip(hand.preshape)
        steps = max(2, int(np.ceil(abs(angle) / 0.1)))
        for s in np.linspace(0, 1, steps + 1)[1:]:
            rot = rotation(bar, s * angle)
            depth = hand.grasp_offset + s * (reach + cfg.clearance - hand.grasp_offset)
            quat = quat_multiply(quat_from_matrix(rot), start_quat)
            self.move_to(pos - rot @ approach * depth, quat, cfg.regrip_speed)
        self.world.arm.set_grip(1.0)
        self.wait(cfg.settle_s)
        self._follow_handle(part, target, offset=-self._current_approach() * reach, push_quat=self.cmd_quat.copy())
        self._leave()
        return True

    def _push_move(self, part: str, target: float) -> None:
        """Push the handle from the side opposite to its motion, or press it with the closed hand."""
        cfg, hand = self.config, self.hand
        pos, mat = self.handle_frame(part)
        approach = mat[:, 2]
        direction = self.handle_path(part, target, 20)[0][0] - pos  # the handle's initial motion
        if np.linalg.norm(direction) < 1e-6:
            return
        direction /= np.linalg.norm(direction)
        if abs(direction @ approach) > 0.7:  # a press: push along the approach with the closed fingertips
            self.world.arm.set_grip(1.0)
            if self._tries.get(part, 0) % 2:  # a retry turns the hand a quarter turn (its other width)
                mat = mat @ np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
            quat = quat_from_matrix(mat)
            offset = -direction * hand.press_reach
        else:  # a side push: the hand's push spot leads, fingertips kept off the face
            push = hand.side_pushes[self._tries.get(part, 0) % len(hand.side_pushes)]
            self.world.arm.set_grip(push.closure)
            axis, point = np.array(push.axis, dtype=float), np.array(push.point, dtype=float)
            # tool rotation taking tool z to the approach and the push axis to the motion
            tool = np.column_stack([np.cross(axis, [0.0, 0.0, 1.0]), axis, [0.0, 0.0, 1.0]])
            world = np.column_stack([np.cross(direction, approach), direction, approach])
            rot = world @ tool.T
            quat = quat_from_matrix(rot)
            # the push spot level with the handle, unless that takes the fingertips too deep
            depth = min(-point[2], cfg.push_depth - hand.press_reach)
            offset = approach * depth - direction * self._radius(part) - rot @ (point * [1.0, 1.0, 0.0])
        self._approach(pos + offset - direction * cfg.clearance, quat, approach)
        self._follow_handle(part, target, offset=offset, push_quat=quat)
        self.settle(timeout=cfg.settle_s)  # an arm lags its command under load
        self.move_to(self.cmd_pos - direction * cfg.clearance * 2, self.cmd_quat, cfg.contact_speed)
        self._leave()

    def _radius(self, part: str) -> float:
        return layout(self.world.spec.part(part), self.world.spec.base).handle.radius

    def _follow_handle(self, part: str, target: float, offset: np.ndarray | None = None,
                       push_quat: np.ndarray | None = None) -> bool:
        """Move the tool along the handle's path, keeping its pose relative to the handle.

        Args:
            part: the part being moved.
            target: joint value to carry it to.
            offset: TCP position relative to the handle at the start (world frame); None keeps
                the current commanded one (a grasp).
            push_quat: tool orientation at the start; None keeps the current commanded one.

        Returns:
            False when the measured TCP fell `stall_distance` behind the command (the arm cannot
            reach further, or the part is stuck) and the tool stopped there; True otherwise.
        """
        cfg = self.config
        pos0, mat0 = self.handle_frame(part)
        tool_quat0 = self.cmd_quat.copy() if push_quat is None else push_quat
        tool_offset = self.cmd_pos - pos0 if offset is None else offset
        inv0 = mat0.T
        travel = np.linalg.norm(self.handle_path(part, target, 1)[0][0] - pos0)
        n = max(2, int(np.ceil(travel / 0.01)))
        for pos, mat in self.handle_path(part, target, n):
            rel = mat @ inv0  # rotation of the handle since the start
            quat = quat_multiply(quat_from_matrix(rel), tool_quat0)
            self.move_to(pos + rel @ tool_offset, quat, cfg.contact_speed)
            if np.linalg.norm(self.world.arm.tcp_pose()[0] - self.cmd_pos) > cfg.stall_distance:
                self.cmd_pos, self.cmd_quat = self.world.arm.tcp_pose()  # stop pulling where it is
                return False
        return True
