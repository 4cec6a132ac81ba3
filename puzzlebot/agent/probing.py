"""Probing a part through the driver: reach its handle, tug it, and follow it wherever it gives.

The agent knows where a handle is (the marker sheet plus the tracked marker), not how the
part moves. A probe reaches the handle, grasps it (a bar) or puts a fingertip against it (a
knob, peg or cap), and tries candidate directions one at a time with a force limit. A
direction the part yields to is followed compliantly until the part stops (a joint limit or
a lock): a grasped handle by admittance on the wrist force sensor (the hand yields to the
constraint force across its path and turns with the torque, so a door's arc or a lid's swing
is traced without knowing the hinge), a pushed handle by servoing on the tracked handle
(the push turns with the handle's motion as the cameras see it). Everything the probe saw
and sent is kept as an `Interaction` for articulation inference and dynamics fitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import mujoco
import numpy as np

from puzzlebot.agent.affordances import Affordance, MarkerSheet
from puzzlebot.agent.perception.markers import MarkerDetector
from puzzlebot.agent.perception.registration import average_pose, base_in_world
from puzzlebot.agent.perception.tracker import PartTracker
from puzzlebot.real.driver import Driver, DriverState
from puzzlebot.real.interface import CameraBackend, Command, ControlMode, RobotState, StaleFrameError
from puzzlebot.sim.frames import quat_from_matrix, tool_quat
from puzzlebot.sim.robots.base import HandGeometry


@dataclass(frozen=True)
class ProbeConfig:
    standoff: float = 0.08  # m in front of a handle before moving in
    free_speed: float = 0.25  # m/s in free space
    tug_speed: float = 0.02  # m/s while trying a direction (slow: a locked part meets a stiff hand)
    follow_speed: float = 0.06  # m/s once a part gives
    tug_distance: float = 0.012  # m a direction is tried for before giving up on it
    moved_threshold: float = 0.006  # m of handle travel that counts as "it moved"
    force_limit: float = 25.0  # N resisting the motion: a lock or a joint limit
    tug_force: float = 12.0  # N resisting a tug: the part does not give this way (hand and grasp
    # are compliant, so the hand alone travels a centimetre or two against a locked part)
    stall_ticks: int = 3  # consecutive control ticks over the force limit that end a motion
    max_travel: float = 0.20  # m of handle travel per probe at most
    admittance: float = 1e-3  # m/(N s): how fast a grasping hand yields to sideways force
    rotational_admittance: float = 0.02  # rad/(N m s): how fast it turns with the torque
    clearance: float = 0.006  # m between a pushing fingertip and the handle before contact
    settle_s: float = 0.3  # s to close a grasp or let a part settle
    max_frame_age: float = 0.3  # s: older camera frames are not used
    speed_step: float = 0.015  # m of travel between the follow's speed changes (slow, fast, slow, ...)
    view_s: float = 0.6  # s parked before judging a probe by the cameras (several frames)
    contact_force: float = 1.5  # N on the wrist that means the hand touches something (noise is ~0.3 N)
    push_contact_force: float = 0.4  # N, low-passed, along a push: touching (sensor noise 0.3 N per axis)
    slip_closure: float = 0.08  # closure jump that means the handle escaped the fingers


    def speed_steps(self, travelled: float) -> float:
        """Follow speed after `travelled` metres: alternating 1x and 2x, so friction and damping
        (force at two speeds) and inertia (the steps) can be told apart."""
        return self.follow_speed * (1.0 if int(travelled / self.speed_step) % 2 == 0 else 1.6)


@dataclass
class Interaction:
    """What one probe of one part did: the commanded and measured hand, forces and the part's track."""

    part: str
    mode: str  # "grasp" | "push"
    direction: str  # "open" | "close"
    moved: bool
    contact: str = ""  # how the motion that worked was made: "grasp", "press" or "side" (a side push)
    attempted: bool = True  # False: the hand never engaged the part (no grasp held, no push felt), or
    # no contact can make this move (pulling a pressed button back): the outcome says nothing
    engaged: bool = False  # the fingers closed on the handle, or a push met it
    tried: list[np.ndarray] = field(default_factory=list)  # candidate directions tried (world)
    times: list[float] = field(default_factory=list)  # from the start of the motion that worked
    commanded: list[np.ndarray] = field(default_factory=list)  # (3,) TCP targets
    tcp_positions: list[np.ndarray] = field(default_factory=list)
    tcp_quaternions: list[np.ndarray] = field(default_factory=list)
    wrenches: list[np.ndarray] = field(default_factory=list)  # (6,) on the hand, world frame
    handle_start: np.ndarray | None = None  # world, when the probe began
    handle_end: np.ndarray | None = None  # world, after it (from the cameras)
    travel: float = 0.0  # m the handle moved: the cameras' verdict once the hand is parked, else the hand's

    def append(self, state: RobotState, commanded: np.ndarray) -> None:
        """One control tick of the motion: the command and what the arm measured with it."""
        self.times.append(state.t)
        self.commanded.append(np.array(commanded, dtype=float))
        self.tcp_positions.append(state.tcp_position.copy())
        self.tcp_quaternions.append(state.tcp_quaternion.copy())
        self.wrenches.append(np.zeros(6) if state.wrench is None else np.asarray(state.wrench, dtype=float).copy())


class RobotIO:
    """One control tick at a time: send a TCP target, read the arm, feed camera frames to the tracker."""

    def __init__(self, driver: Driver, cameras: list[CameraBackend], sheet: MarkerSheet,
                 T_world_cam: dict[str, np.ndarray], max_frame_age: float = 0.3):
        self.driver, self.cameras, self.sheet = driver, cameras, sheet
        self.T_world_cam = T_world_cam
        self.max_frame_age = max_frame_age
        self.detectors = {c.name: MarkerDetector(cv2.aruco.DICT_4X4_50, sheet.sizes, c.intrinsics, camera=c.name)
                          for c in cameras}
        self.tracker = PartTracker(sheet.part_of_marker())
        self._last_seq: dict[str, int] = {}
        self._base_samples: list[np.ndarray] = []
        self.T_world_base: np.ndarray | None = None
        self.state: RobotState = driver.read_state()
        self.ticks = 0
        self.park_pos = self.state.tcp_position.copy()  # where the hand started: out of the cameras' view
        self.park_quat = self.state.tcp_quaternion.copy()

    def tick(self, pos: np.ndarray, quat: np.ndarray, grip: float) -> RobotState:
        driver = self.driver
        if driver.state is not DriverState.ACTIVE:
            raise RuntimeError(f"the arm stopped: {driver.fault.kind.value if driver.fault else driver.state.value}"
                               f" ({driver.fault.message if driver.fault else ''})")
        driver.send(Command(ControlMode.EE, np.concatenate([pos, quat]), grip=grip, t=driver.clock()))
        driver.tick()
        self.state = driver.read_state()
        self.ticks += 1
        self.poll_cameras()
        return self.state

    def poll_cameras(self) -> None:
        observations = []
        for camera in self.cameras:
            try:
                frame = camera.read_latest(self.max_frame_age)
            except StaleFrameError:
                continue
            if frame.seq == self._last_seq.get(camera.name):
                continue
            self._last_seq[camera.name] = frame.seq
            if self.driver.recorder is not None and hasattr(self.driver.recorder, "log_frame"):
                self.driver.recorder.log_frame(frame)  # each frame once, with the states around it
            observations += self.detectors[camera.name].detect_frame(frame)
        if not observations:
            return
        t = max(o.t for o in observations)
        self.tracker.update(observations, t)
        base = base_in_world(observations, self.T_world_cam)
        if base is not None and len(self._base_samples) < 50:  # the base is fixed: average its first views
            self._base_samples.append(base)
            self.T_world_base = average_pose(self._base_samples)
        self._track_through_calibration(observations, t)

    def _track_through_calibration(self, observations: list, t: float) -> None:
        """Part markers seen by a camera that shows no base marker (a lid from above): placed
        relative to the base through the camera's calibrated pose instead."""
        if self.T_world_base is None:
            return
        base_ids = set(self.tracker.base_ids)
        framed = {o.camera for o in observations if o.id in base_ids}
        T_base_world = np.linalg.inv(self.T_world_base)
        part_of = self.sheet.part_of_marker()
        for obs in observations:
            part = part_of.get(obs.id)
            if part is not None and obs.camera not in framed and obs.camera in self.T_world_cam:
                self.tracker.add_pose(part, t, T_base_world @ self.T_world_cam[obs.camera] @ obs.T_cam_marker)

    def part_pose_world(self, part: str) -> np.ndarray | None:
        """Latest tracked world pose of a part's marker (None until the base and the part were seen)."""
        pose = self.tracker.tracks[part].latest()
        if pose is None or self.T_world_base is None:
            return None
        return self.T_world_base @ pose.matrix()

    def handle_world(self, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        T = self.part_pose_world(part)
        if T is None:
            raise RuntimeError(f"part {part!r}: its marker (id {self.sheet.affordances[part].marker_id}) "
                               "has not been seen with the base marker: no handle position")
        return self.sheet.affordances[part].in_world(T)

    def seen_since(self, part: str, t: float) -> bool:
        """Whether the part's marker was tracked (relative to the base) at or after time `t`."""
        track = self.tracker.tracks[part]
        return bool(track.times) and track.times[-1] >= t

    def hold(self, seconds: float, grip: float | None = None) -> None:
        pos, quat = self.state.tcp_position.copy(), self.state.tcp_quaternion.copy()
        g = self.state.grip if grip is None else grip
        period = 1.0 / self.driver.capabilities.control_hz
        for _ in range(max(1, int(round(seconds / period)))):
            self.tick(pos, quat, g)


class Prober:
    """Opens (or closes) one part by trial and compliance; see the module docstring."""

    def __init__(self, io: RobotIO, hand: HandGeometry, config: ProbeConfig = ProbeConfig()):
        if not io.driver.capabilities.has_wrench:
            raise ValueError(f"probing needs a wrist force/torque sensor: {io.driver.capabilities.name} "
                             "reports none (Capabilities.has_wrench is False)")
        self.io, self.hand, self.config = io, hand, config
        self.period = 1.0 / io.driver.capabilities.control_hz
        self.cmd_pos = io.state.tcp_position.copy()
        self.cmd_quat = io.state.tcp_quaternion.copy()
        self.grip = 0.0
        self.slipped = False  # the last grasp lost its handle
        self.left_at: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        """Per grasped part: handle point, approach and grip axis where the hand last let go of it."""

    # ------------------------------------------------------------------ motion
    def _tick(self) -> RobotState:
        return self.io.tick(self.cmd_pos, self.cmd_quat, self.grip)

    def move_to(self, pos: np.ndarray, quat: np.ndarray, speed: float) -> None:
        start_pos, start_quat = self.cmd_pos.copy(), self.cmd_quat.copy()
        dq = np.zeros(3)
        mujoco.mju_subQuat(dq, quat, start_quat)
        distance = max(float(np.linalg.norm(pos - start_pos)), 0.1 * float(np.linalg.norm(dq)))
        steps = max(1, int(np.ceil(distance / (speed * self.period))))
        for i in range(1, steps + 1):
            self.cmd_pos = start_pos + (i / steps) * (pos - start_pos)
            self.cmd_quat = start_quat.copy()
            mujoco.mju_quatIntegrate(self.cmd_quat, dq, i / steps)
            self._tick()

    def guarded_move(self, pos: np.ndarray, speed: float) -> bool:
        """Straight TCP motion that stops at the first touch (wrist force over the contact level)."""
        start = self.cmd_pos.copy()
        steps = max(1, int(np.ceil(np.linalg.norm(pos - start) / (speed * self.period))))
        touching = 0
        for i in range(1, steps + 1):
            self.cmd_pos = start + (i / steps) * (pos - start)
            state = self._tick()
            force = 0.0 if state.wrench is None else float(np.linalg.norm(state.wrench[:3]))
            touching = touching + 1 if force > 2 * self.config.contact_force else 0
            if touching >= 2:
                self.cmd_pos = state.tcp_position.copy()
                return True
        return False

    def wait(self, seconds: float) -> None:
        for _ in range(max(1, int(round(seconds / self.period)))):
            self._tick()

    def _reach(self, pos: np.ndarray, quat: np.ndarray, approach: np.ndarray, guarded: bool = False) -> bool:
        """Back off, go to a stand-off in front of `pos` and move in along `approach`.

        Returns whether the hand touched something on the way in (only watched when `guarded`).
        """
        cfg = self.config
        current = self.cmd_pos - self._tool_z() * cfg.standoff * 0.5
        self.move_to(current, self.cmd_quat, cfg.free_speed)
        standoff = pos - approach * cfg.standoff
        self.move_to(standoff, quat, cfg.free_speed)
        if guarded:
            return self.guarded_move(pos, cfg.tug_speed * 2)
        self.move_to(pos, quat, cfg.free_speed * 0.4)
        return False

    def _tool_z(self) -> np.ndarray:
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, self.cmd_quat)
        return mat.reshape(3, 3)[:, 2]

    # ------------------------------------------------------------------ probes
    def probe(self, part: str, direction: str = "open", hint: np.ndarray | None = None,
              handle: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None) -> Interaction:
        """Try to move `part` away from (open) or back to (close) where it started.

        Args:
            part: a part on the marker sheet.
            direction: "open" or "close".
            hint: a direction (world) to try first, e.g. the reverse of the motion that opened it.
            handle: the handle's point, approach and grip axis (world) if the caller knows them
                better than the cameras (from the fitted joint); the tracked marker otherwise.
        """
        aff = self.io.sheet.affordances[part]
        if not self.io.seen_since(part, self.io.state.t - self.config.view_s):
            self.park()
            self.io.hold(self.config.view_s, grip=self.grip)
        override = handle
        handle, approach, grip_axis = self.io.handle_world(part)
        if override is not None:
            handle, approach, grip_axis = override
            grip_axis = grip_axis if grip_axis is not None else self.io.handle_world(part)[2]
        record = Interaction(part, aff.mode, direction, moved=False, handle_start=handle.copy())
        candidates = self._candidates(aff, approach, grip_axis, hint)
        if direction == "close" and hint is not None:
            candidates = candidates[:1]  # back the way it came, nothing else
        if aff.mode == "push":  # a fingertip pushes; it cannot pull a handle towards the hand
            candidates = [d for d in candidates if d @ approach > -0.7]
        if not candidates:
            record.attempted = False
            return record
        if aff.mode == "grasp":
            self._grasp_probe(part, aff, handle, approach, grip_axis, candidates, record)
        else:
            self._push_probe(part, aff, handle, approach, candidates, record)
        record.attempted = record.attempted and record.engaged  # re-judged by the cameras below
        self.park()
        parked = self.io.state.t
        self.io.hold(self.config.view_s, grip=self.grip)
        if self.io.seen_since(part, parked):  # the cameras have the last word once the hand is away
            end, _, _ = self.io.handle_world(part)
            record.handle_end = end
            record.travel = float(np.linalg.norm(end - handle))
            record.moved = record.travel >= self.config.moved_threshold
            record.attempted = record.attempted or record.moved  # a light part slides without a felt push
        return record

    def park(self) -> None:
        """Back off the puzzle and return to the parking pose, out of the cameras' view."""
        cfg = self.config
        self.grip = 0.0
        self.wait(cfg.settle_s)
        up = self.cmd_pos - self._tool_z() * cfg.standoff
        self.move_to(up, self.cmd_quat, cfg.free_speed)
        via = up.copy()
        via[2] = max(via[2], self.io.park_pos[2])
        self.move_to(via, self.cmd_quat, cfg.free_speed)
        self.move_to(self.io.park_pos, self.io.park_quat, cfg.free_speed)

    def _candidates(self, aff: Affordance, approach: np.ndarray, grip_axis: np.ndarray | None,
                    hint: np.ndarray | None) -> list[np.ndarray]:
        """Directions to try, most likely first: pull (grasp) or press (push), then across."""
        if grip_axis is not None:
            u = grip_axis
        else:  # a push handle: any basis of the plane across the approach, horizontal first
            u = np.cross(approach, [0.0, 0.0, 1.0])
            if np.linalg.norm(u) < 1e-6:
                u = np.cross(approach, [0.0, 1.0, 0.0])
            u /= np.linalg.norm(u)
        v = np.cross(approach, u)
        first = -approach if aff.mode == "grasp" else approach
        out = [first, u, -u, v, -v]
        if hint is not None:
            h = hint / np.linalg.norm(hint)
            out = [h] + [d for d in out if d @ h < 0.9]
        return out

    def _grasp_probe(self, part: str, aff: Affordance, handle: np.ndarray, approach: np.ndarray,
                     grip_axis: np.ndarray, candidates: list[np.ndarray], record: Interaction) -> None:
        cfg = self.config
        quat = tool_quat(approach, grip_axis)
        self.grip = self.hand.preshape
        self._reach(handle - approach * self.hand.grasp_offset, quat, approach)
        self.grip = 1.0
        self.wait(cfg.settle_s)
        held = self.io.state.grip  # closure on the bar: opening past it means the handle escaped
        if held > 1.0 - cfg.slip_closure:
            return  # the fingers closed on nothing: the handle is not where we thought (not engaged)
        record.engaged = True
        self.slipped = False
        for d in candidates:
            record.tried.append(d)
            start = self.io.state.tcp_position.copy()
            _clear(record)  # keep only the motion of the direction that works, from rest
            gave = self._comply(d, cfg.tug_distance, cfg.tug_speed, held, record=record, tug=True)
            if self.slipped and not gave:  # lost the handle: later tugs would pull on nothing
                record.engaged = False
                break
            if gave:
                self._comply(d, cfg.max_travel, cfg.follow_speed, held, record=record, start=start)
                record.moved, record.contact = True, "grasp"
                record.travel = float(np.linalg.norm(self.io.state.tcp_position - start))
                mat = np.zeros(9)
                mujoco.mju_quat2Mat(mat, self.io.state.tcp_quaternion)
                mat = mat.reshape(3, 3)
                self.left_at[part] = (self.io.state.tcp_position.copy(), mat[:, 2].copy(), mat[:, 1].copy())
                break
            self.move_to(start, quat, cfg.tug_speed)  # back where the tug began, as it was held
        else:
            _clear(record)

    def _comply(self, d: np.ndarray, distance: float, speed: float, held: float, record: Interaction | None,
                start: np.ndarray | None = None, tug: bool = False) -> bool:
        """Move the grasping hand along `d`, yielding to force across it; True if it travelled `distance`.

        The direction of travel follows the hand's measured motion, so a curved path is traced.
        """
        cfg = self.config
        io = self.io
        tangent = d / np.linalg.norm(d)
        origin = io.state.tcp_position.copy() if start is None else start
        anchor = io.state.tcp_position.copy()
        self.cmd_pos = io.state.tcp_position.copy()
        over = 0
        max_ticks = int(np.ceil(distance / (speed * self.period) * 3)) + 50
        for _ in range(max_ticks):
            state = io.state
            wrench = np.zeros(6) if state.wrench is None else np.asarray(state.wrench, dtype=float)
            force, torque = wrench[:3], wrench[3:]
            across = force - (force @ tangent) * tangent
            pace = speed if tug else cfg.speed_steps(
                float(np.linalg.norm(state.tcp_position - origin)))
            self.cmd_pos = self.cmd_pos + tangent * pace * self.period + cfg.admittance * across * self.period
            # turn with the torque: the handle's rotation is the part's
            rot = cfg.rotational_admittance * torque * self.period
            mujoco.mju_quatIntegrate(self.cmd_quat, _world_to_local(self.cmd_quat, rot), 1.0)
            state = self._tick()
            if record is not None:
                record.append(state, self.cmd_pos)
            moved = state.tcp_position - anchor
            if np.linalg.norm(moved) > 0.006:  # re-aim along the motion actually made
                tangent = 0.5 * tangent + 0.5 * moved / np.linalg.norm(moved)
                tangent /= np.linalg.norm(tangent)
                anchor = state.tcp_position.copy()
            if state.grip > held + cfg.slip_closure:
                self.cmd_pos = state.tcp_position.copy()  # the handle escaped: stop here
                self.slipped = True
                break
            resisting = -(force @ tangent)
            over = over + 1 if resisting > cfg.force_limit else 0
            if over >= cfg.stall_ticks or (tug and resisting > cfg.tug_force):
                self.cmd_pos = state.tcp_position.copy()  # stop pushing into it
                break
            if np.linalg.norm(state.tcp_position - origin) >= distance:
                return True
        return False

    def _push_probe(self, part: str, aff: Affordance, handle: np.ndarray, approach: np.ndarray,
                    candidates: list[np.ndarray], record: Interaction) -> None:
        cfg = self.config
        for d in candidates:
            record.tried.append(d)
            handle, approach, _ = self.io.handle_world(part)
            pos, quat = self._push_pose(aff, handle, approach, d)
            self.grip = 1.0
            press = abs(d @ approach) > 0.7
            # A press goes in until it touches; a side push must reach its depth beside the handle
            # untouched (a touch there means the handle is not where the hand thought).
            touched = self._reach(pos + (approach * cfg.standoff * 0.5 if press else -d * cfg.clearance), quat,
                                  approach, guarded=True)
            if touched and not press:
                self.move_to(self.cmd_pos - approach * cfg.standoff, self.cmd_quat, cfg.free_speed)
                continue
            travel = self._servo_push(part, aff, d, record)
            record.moved = travel >= cfg.moved_threshold
            record.contact = "press" if press else "side"
            self.move_to(self.cmd_pos - d * cfg.clearance * 2, self.cmd_quat, cfg.tug_speed)
            self.move_to(self.cmd_pos - approach * cfg.standoff, self.cmd_quat, cfg.free_speed)
            if record.moved:
                break
        else:
            _clear(record)

    def _push_pose(self, aff: Affordance, handle: np.ndarray, approach: np.ndarray,
                   d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP pose that puts the hand's pushing spot against the handle, pushing along `d`."""
        hand = self.hand
        if abs(d @ approach) > 0.7:  # a press with the closed fingertips
            quat = tool_quat(approach, np.cross(approach, np.cross([0.0, 0.0, 1.0], approach)) + 1e-9)
            return handle - d * hand.press_reach, quat
        push = hand.side_pushes[0]
        axis, point = np.array(push.axis, dtype=float), np.array(push.point, dtype=float)
        tool = np.column_stack([np.cross(axis, [0.0, 0.0, 1.0]), axis, [0.0, 0.0, 1.0]])
        world = np.column_stack([np.cross(d, approach), d, approach])
        rot = world @ tool.T
        depth = min(-point[2], 0.02 - hand.press_reach)
        offset = approach * depth - d * aff.radius - rot @ (point * [1.0, 1.0, 0.0])
        return handle + offset, quat_from_matrix(rot)

    def _servo_push(self, part: str, aff: Affordance, d: np.ndarray, record: Interaction) -> float:
        """Push along `d`, re-aimed at the handle's tracked motion; returns the handle's travel (m)."""
        cfg, io = self.config, self.io
        start, _, _ = io.handle_world(part)
        last_seen, tangent = start.copy(), d.copy()
        over, travelled, in_contact, pushing = 0, 0.0, 0.0, 0.0
        speed = cfg.tug_speed
        previous = io.state.tcp_position.copy()
        hand_start = previous.copy()
        _clear(record)  # keep only the motion of the direction that works
        for _ in range(int(np.ceil(cfg.max_travel / (cfg.tug_speed * self.period))) + 100):
            self.cmd_pos = self.cmd_pos + tangent * speed * self.period
            state = self._tick()
            wrench = np.zeros(6) if state.wrench is None else np.asarray(state.wrench, dtype=float)
            record.append(state, self.cmd_pos)
            # Low-passed push force along the motion: a free bolt resists with well under a newton.
            pushing = 0.8 * pushing + 0.2 * float(-(wrench[:3] @ tangent))
            if pushing > cfg.push_contact_force:  # the hand advanced while pushing on something
                in_contact += float((state.tcp_position - previous) @ tangent)
                record.engaged = True
            previous = state.tcp_position.copy()
            now, _, _ = io.handle_world(part)
            travelled = max(float(np.linalg.norm(now - start)), in_contact)
            if travelled >= cfg.moved_threshold:
                speed = cfg.speed_steps(travelled)
            step = now - last_seen
            if np.linalg.norm(step) > 0.008:  # re-aim along the handle's own motion
                tangent = 0.5 * tangent + 0.5 * step / np.linalg.norm(step)
                tangent /= np.linalg.norm(tangent)
                last_seen = now
            resisting = -(wrench[:3] @ tangent)
            over = over + 1 if resisting > cfg.force_limit else 0
            record.engaged = record.engaged or over > 0
            pushed = float((self.cmd_pos - state.tcp_position) @ tangent)
            if over >= cfg.stall_ticks or pushed > 0.01:
                self.cmd_pos = state.tcp_position.copy()
                break
            if np.linalg.norm(state.tcp_position - hand_start) > cfg.max_travel:
                break
            if travelled < cfg.moved_threshold and np.linalg.norm(state.tcp_position - hand_start) > 0.03:
                break  # pushed 3 cm without the handle following: missed it, or it does not go this way
        return travelled


def _clear(record: Interaction) -> None:
    for series in (record.times, record.commanded, record.tcp_positions, record.tcp_quaternions, record.wrenches):
        series.clear()


def _world_to_local(quat: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """A world-frame rotation vector expressed in the frame of `quat` (for mju_quatIntegrate)."""
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3).T @ omega
