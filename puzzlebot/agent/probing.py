"""Probing a part through the driver: reach its handle, tug it, and follow it wherever it gives.

The agent knows where a handle is (the marker sheet plus the tracked marker), not how the
part moves. A probe reaches the handle, grasps it (a bar) or puts a fingertip against it (a
knob, peg or cap), and tries candidate directions one at a time with a force limit. A
direction the part yields to is followed compliantly until the part stops (a joint limit or
a lock): a grasped handle by admittance on the wrist force sensor (the hand yields to the
constraint force across its path and turns with the torque, so a door's arc or a lid's swing
is traced without knowing the hinge), a pushed handle by servoing on the tracked handle
(the push turns with the handle's motion as the cameras see it, within the puzzle's face).
A test stops as soon as the part gives a few millimetres, so it stays where it blocks others.

The hand is turned so its wide palm lies level and pitched up about the handle until its
envelope clears the table; a grasp approaches with the fingers open by the bar plus a margin
and, if something else is in the way, rolls its way in about the bar. A touch on the way in
that is not the handle (the palm on the table) is not taken as lock evidence, and the cameras
check a side push the hand felt give (a press is the hand's to judge: a cap moves along the
cameras' line of sight). Everything the probe saw and sent is kept as an
`Interaction` for articulation inference and dynamics fitting.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from puzzlebot.agent.affordances import Affordance
from puzzlebot.agent.robot_io import RobotIO
from puzzlebot.real.interface import RobotState
from puzzlebot.sim.frames import quat_from_matrix, tool_quat
from puzzlebot.sim.robots.base import HandGeometry

log = logging.getLogger(__name__)

CANONICAL = ("pull or press", "+across", "-across", "+up across", "-up across")
"""The five ways a handle is tried (`canonical_directions`)."""
SHAPE_SEP = " / "  # between a handle class and its shape in a `handle_key`
AVOID_DEG = 60.0  # a try this close to a way to avoid (`Prober.probe`) moves the part that way too
HANDLE_CLASSES = ("grasp, fingers close vertically", "grasp, fingers close across", "push from above",
                  "push from the side")


@dataclass(frozen=True)
class ProbeConfig:
    standoff: float = 0.08  # m in front of a handle before moving in
    free_speed: float = 0.25  # m/s in free space
    tug_speed: float = 0.02  # m/s while trying a direction (slow: a locked part meets a stiff hand)
    follow_speed: float = 0.06  # m/s once a part gives
    tug_distance: float = 0.012  # m a direction is tried for before giving up on it
    moved_threshold: float = 0.006  # m of handle travel that counts as "it moved" (touched, gave)
    opened_threshold: float = 0.012  # m a handle must travel for an open to count: a knob held by its lock
    # gave 6.5 mm at its pin (the lock's play on the knob's lever arm, and the hand's compliance)
    force_limit: float = 25.0  # N resisting the motion: a lock or a joint limit
    tug_force: float = 12.0  # N resisting a tug: the part does not give this way (hand and grasp
    # are compliant, so the hand alone travels a centimetre or two against a locked part)
    stall_ticks: int = 3  # consecutive control ticks over the force limit that end a motion
    max_travel: float = 0.50  # m of handle travel per probe at most: a lid carried past upright (0.42 m of arc)
    admittance: float = 1e-3  # m/(N s): how fast a grasping hand yields to sideways force
    face_admittance: float = 4e-3  # m/(N s): how fast a side push backs off a face pushing its fingertips out
    face_slack: float = 0.02  # m short of its depth a side push's reach may meet the face behind the handle
    # (the cameras see a handle's depth along their line of sight to a centimetre or so)
    face_backoff: float = 0.003  # m a side push backs off that face before pushing
    rotational_admittance: float = 0.02  # rad/(N m s): how fast it turns with the torque
    clearance: float = 0.006  # m between a pushing fingertip and the handle before contact
    settle_s: float = 0.3  # s to close a grasp or let a part settle
    max_frame_age: float = 0.3  # s: older camera frames are not used
    speed_step: float = 0.015  # m of travel between the follow's speed changes (slow, fast, slow, ...)
    speed_ratio: float = 1.6  # fast over slow follow speed
    view_s: float = 0.6  # s parked before judging a probe by the cameras (several frames)
    contact_force: float = 1.5  # N on the wrist that means the hand touches something (noise is ~0.3 N)
    push_contact_force: float = 0.4  # N, low-passed, along a push: touching (sensor noise 0.3 N per axis)
    slip_closure: float = 0.08  # closure jump that means the handle escaped the fingers
    max_turn_deg: float = 30.0  # most a push re-aims per tracked step of its handle
    test_push: float = 0.008  # m a side push gives before a test calls the part free: over a lock's play and
    # give (a locked bolt gave 5 mm under 12 N), within the travel over which a blocker blocks (a third or more)
    park_offsets: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 0.12), (0.0, 0.2, 0.0), (0.0, -0.2, 0.0),
                                                            (0.0, 0.2, 0.12), (0.0, -0.2, 0.12))
    # m from the starting park, tried in turn for a park that hides no marker (`Prober.find_park`)
    park_low: tuple[float, float, float] = (-0.45, -0.28, 0.05)  # m: the parks tried stay in the arm's box
    park_high: tuple[float, float, float] = (0.18, 0.28, 0.53)
    press_drift: float = 0.004  # m across the push a pressing hand may move and still call it a press
    press_seen: float = 0.3  # of the hand's give, the cameras must see the handle go in (parked): a finger
    # that slipped off a knob's pin gave 10 mm beside it; latched buttons were seen 9-14 mm in for 12
    test_seen: float = 0.004  # m the cameras must see a handle moved (parked) after a side test's give:
    # half the test's push, over a blocked part's play (a blocked button's cap sat 1 mm off)
    test_press: float = 0.003  # m a press gives before a test calls it free (a button blocks for >= 3.6 mm)
    press_give_force: float = 4.0  # N: a press's give counts only while the cap pushes back less than this,
    # or than twice its median push so far (a stiff button). A free button goes in under its friction
    # (1 N nominal); a blocked one stops after its lock's 2 mm of play, and the hand then sinks about
    # a millimetre into the cap as the force climbs past 12 N (the low-passed force lags it): counted,
    # that made blocked buttons' tests give 2.97-3.10 mm, over the 3 mm that calls one free
    grasp_margin: float = 0.012  # m of finger opening each side of a bar on the way in
    grasp_pitches_deg: tuple[float, ...] = (0.0, 35.0, -35.0)  # ways in to a bar, rolled about it
    centring_admittance: float = 4e-3  # m/(N s): how fast a closing hand slides to centre on a bar
    grasp_obstruction: float = 0.01  # m: a grasp's way in that stops this short hit something else
    table_z: float = 0.0  # m: height of the work surface in the world (robot) frame, from the cell's set-up
    table_clearance: float = 0.008  # m the hand's envelope keeps above the table
    finger_clearance: float = 0.004  # m closed fingers keep above it, pushing or pressing a low handle
    max_tilt_deg: float = 40.0  # how far the hand pitches up from a handle to clear the table
    direction_order: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """Per `handle_class` (or `handle_key`: a class and a handle's shape, which comes first),
    the order in which to try `canonical_directions` when nothing says
    which way a part gives (e.g. learned over a family of puzzles, `agent.memory`); the default
    order otherwise: pull or press first, then across."""
    guard_spans: tuple[tuple[str, float], ...] = ()
    """Per `handle_class`, the last metres of a reach made at the guarded speed (`tug_speed` x 2):
    the rest of the `standoff` is crossed at `free_speed` x 0.4, still stopping at a touch. Where
    a family showed how short of its target a reach can meet something (`agent.memory`); the
    whole standoff otherwise (the cameras' depth of a handle is not known to a few mm)."""
    near_view_rise: float = 0.10  # m the hand rises once backed off, for a look from near the puzzle (out of
    # a front camera's line of sight: backing off a front handle alone puts the hand right in it)
    near_view: tuple[str, ...] = ()
    """Handle classes whose probes are judged by the cameras from near the puzzle (the hand
    backed off `standoff` along its tool axis and risen `near_view_rise`), not from the park:
    where a family showed the cameras see them there as they see them from the park
    (`agent.memory`). A part not seen there is judged from the park after all. None by default:
    the park is out of every camera's way."""
    compare_views: tuple[str, ...] = ()
    """Handle classes whose probes look from the backed-off hand before parking, and keep how far
    that view put the handle from the parked one (`Interaction.near_view_error`): the evidence
    `near_view` is learned from."""

    def __post_init__(self) -> None:
        for kind, span in self.guard_spans:
            if kind not in HANDLE_CLASSES or not 0.0 < span <= self.standoff:
                raise ValueError(f"ProbeConfig.guard_spans: ({kind!r}, {span}) must be a handle class "
                                 f"{HANDLE_CLASSES} and a span in (0, standoff={self.standoff}] m")
        for field_name in ("near_view", "compare_views"):
            unknown = sorted(set(getattr(self, field_name)) - set(HANDLE_CLASSES))
            if unknown:
                raise ValueError(f"ProbeConfig.{field_name}: {unknown[0]!r} is not a handle class {HANDLE_CLASSES}")
        for kind, order in self.direction_order:
            if kind.split(SHAPE_SEP)[0] not in HANDLE_CLASSES:
                raise ValueError(f"ProbeConfig.direction_order: {kind!r} is not a handle class {HANDLE_CLASSES}")
            if sorted(order) != list(range(len(CANONICAL))):
                raise ValueError(f"ProbeConfig.direction_order[{kind!r}]: {order} must order 0..{len(CANONICAL) - 1}")

    def speed_steps(self, travelled: float) -> float:
        """Follow speed after `travelled` metres: alternating 1x and `speed_ratio`x, so friction and damping
        (force at two speeds) and inertia (the steps) can be told apart."""
        return self.follow_speed * (1.0 if int(travelled / self.speed_step) % 2 == 0 else self.speed_ratio)


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
    handle_class: str = ""  # `handle_class` of the part as the probe saw it
    reach_touches: list[float | None] = field(default_factory=list)  # per guarded reach, m short of its
    # target the hand touched something (None: it got there untouched)
    near_view_error: list[float | None] = field(default_factory=list)  # m between the handle seen from the
    # backed-off hand and from the park, per compared view (None: not seen backed off; `ProbeConfig.compare_views`)

    def append(self, state: RobotState, commanded: np.ndarray) -> None:
        """One control tick of the motion: the command and what the arm measured with it."""
        self.times.append(state.t)
        self.commanded.append(np.array(commanded, dtype=float))
        self.tcp_positions.append(state.tcp_position.copy())
        self.tcp_quaternions.append(state.tcp_quaternion.copy())
        self.wrenches.append(np.zeros(6) if state.wrench is None else np.asarray(state.wrench, dtype=float).copy())


Pace = Callable[[float, float], "float | None"]
"""A follow's speed, from outside: robot time and the handle's travel so far (m) in, the hand's
speed (m/s) out, or None once the part is where it should be (`agent.mpc.MPCPace`)."""


ACTIVITIES = ("free_motion", "guarded_approach", "settling", "camera_view", "held_motion", "push_motion",
              "grasp_closing", "other")
"""What `Prober.robot_s_by_activity` splits the arm's time into: straight moves at a set speed
(through free space, mostly; also taking a tugged part back where the tug began), the slow
approach that stops at a touch, waits for a grasp or a part to settle, parking for the cameras,
moving a held part, pushing a part, closing the fingers on a bar, and anything else."""


def _activity(name: str) -> Callable:
    """Count the robot time a Prober method ticks as `name` (unless a method it calls counts it)."""
    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def counted(self: Prober, *args: Any, **kwargs: Any) -> Any:
            self._doing.append(name)
            try:
                return method(self, *args, **kwargs)
            finally:
                self._doing.pop()
        return counted
    return wrap


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
        self.robot_s_by_activity: Counter[str] = Counter()
        """Robot time, s, by what the arm was doing (`ACTIVITIES`; the innermost one counts): where a
        solve's time goes, so that speeding it up starts where it is spent."""
        self._doing: list[str] = []
        self.reach_touches: list[float | None] = []  # every guarded reach: m short of its target it touched
        self._handle_class = ""  # of the part being probed

    # ------------------------------------------------------------------ motion
    def _tick(self) -> RobotState:
        self.robot_s_by_activity[self._doing[-1] if self._doing else "other"] += self.period
        return self.io.tick(self.cmd_pos, self.cmd_quat, self.grip)

    @_activity("free_motion")
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

    @_activity("guarded_approach")
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

    def _look(self, seconds: float) -> None:
        """Hold still where the hand is while the cameras look (counted as `camera_view`)."""
        start = self.io.state.t
        self.io.hold(seconds, grip=self.grip)
        self.robot_s_by_activity["camera_view"] += self.io.state.t - start

    @_activity("settling")
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
        if abs(approach[2]) < 0.3:  # a face seen a few degrees off vertical: come in level (a stand-off
            # dipped by the estimate's tilt put the fingers of a push under a low knob into the table)
            approach = approach * [1.0, 1.0, 0.0] / np.linalg.norm(approach[:2])
        standoff = pos - approach * cfg.standoff
        self.move_to(standoff, quat, cfg.free_speed)
        if guarded:
            # let the hand come to rest first: right after a fast turn its lag reads as a touch
            self.wait(cfg.settle_s)
            slow = dict(cfg.guard_spans).get(self._handle_class, cfg.standoff)
            touched = slow < cfg.standoff and self.guarded_move(pos - approach * slow, cfg.free_speed * 0.4)
            touched = touched or self.guarded_move(pos, cfg.tug_speed * 2)
            self.reach_touches.append(float((pos - self.io.state.tcp_position) @ approach) if touched else None)
            return touched
        self.move_to(pos, quat, cfg.free_speed * 0.4)
        return False

    def _tool_z(self) -> np.ndarray:
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, self.cmd_quat)
        return mat.reshape(3, 3)[:, 2]

    # ------------------------------------------------------------------ probes
    def probe(self, part: str, direction: str = "open", hint: np.ndarray | None = None,
              handle: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
              avoid: Sequence[np.ndarray] = (), pace: Pace | None = None, hint_only: bool = False) -> Interaction:
        """Try to move `part` away from (open) or back to (close) where it started, or test it.

        A test ("test") finds out whether the part gives without moving it far: a grasped part
        is tugged `tug_distance` and brought back, a pushed one is pushed until it has given
        `test_push` (`test_press` for a press) under `tug_force`, and left there. That stays
        inside the first part of a blocker's travel, over which it still blocks. A press's or a
        tug's verdict is the hand's (the cameras do not resolve a few millimetres along their
        line of sight, and a tugged part is brought back); a side push's give must also be seen
        (`test_seen`) once the hand is away, as a fingertip can slide round a blocked cap.

        Args:
            part: a part on the marker sheet.
            direction: "open", "close" or "test".
            hint: a direction (world) to try first, e.g. the reverse of the motion that opened it.
            handle: the handle's point, approach and grip axis (world) if the caller knows them
                better than the cameras (from the fitted joint); the tracked marker otherwise.
            avoid: directions (world) not to push or pull within `AVOID_DEG` of: one that moved the
                part without opening it, or the way back along the joint of a part already open
                (a knob turned 1.8 rad and pushed "another way" was turned back shut).
            pace: the follow's speed once the part gives, and when to stop (a target opening,
                e.g. the MPC's); without one the follow alternates two speeds until the part stops.
                A paced open that ended at its target counts as moved, however short the travel.
            hint_only: try the hint alone (pushing an open part on along its joint: another way
                says nothing about whether it is at its stop).
        """
        aff = self.io.sheet.affordances[part]
        if not self._seen_well(part):
            self.park()
            self._look(self.config.view_s)
        override = handle
        handle, approach, grip_axis = self.io.handle_world(part)
        if override is not None:
            handle, approach, grip_axis = override
            grip_axis = grip_axis if grip_axis is not None else self.io.handle_world(part)[2]
        record = Interaction(part, aff.mode, direction, moved=False, handle_start=handle.copy(),
                             handle_class=handle_class(aff.mode, approach, grip_axis))
        start_pose = self.io.part_pose_world(part)
        reaches = len(self.reach_touches)
        self._handle_class = record.handle_class
        candidates = candidate_directions(self.config, aff.mode, approach, grip_axis, hint, handle_shape(aff))
        if hint is not None and (hint_only or direction == "close"):
            candidates = candidates[:1]  # back the way it came (or on the way it went), nothing else
        for way in avoid:
            candidates = [d for d in candidates if d @ way < np.cos(np.radians(AVOID_DEG)) * np.linalg.norm(way)]
        if aff.mode == "push":  # a fingertip pushes; it cannot pull a handle towards the hand
            candidates = [d for d in candidates if d @ approach > -0.7]
        if not candidates:
            record.attempted = False
            return record
        test = direction == "test"
        if aff.mode == "grasp":
            self.io.tracker.handled(part)  # it may turn behind the hand: its marker's tilt is read afresh
            self._grasp_probe(part, aff, handle, approach, grip_axis, candidates, record, test, pace)
        else:  # per direction: a press straight in cannot turn it
            self._push_probe(part, aff, handle, approach, candidates, record, test, pace)
        self.io.tracker.handled(part, may_turn=record.contact != "press")  # and once more as the hand lets go
        record.reach_touches = self.reach_touches[reaches:]
        record.attempted = record.attempted and record.engaged  # re-judged by the cameras below
        if self._judging_view(part, record):  # the cameras have the last word once the hand is away
            end_pose = self.io.part_pose_world(part)
            end = aff.in_world(end_pose)[0]
            record.handle_end = end
            seen = _travel(end - handle, approach, record.contact)
            if not record.moved and start_pose is not None:
                # Without the hand's word, only what a misread tilt cannot fake: the marker's move
                # and its turn in its own plane. Its tilt is the ambiguous part of a marker's pose,
                # and a tilt read afresh after the hand let go moved a handle standing out of its
                # marker by over the open threshold: a locked drawer was taken for open and its goal
                # for met (gen_d5_s9505), a locked knob for turned (gen_d5_s9502).
                steady = aff.in_world(untilted(start_pose, end_pose))[0] - aff.in_world(start_pose)[0]
                seen = _travel(steady, approach, record.contact)
            if not test and record.contact != "press":
                record.travel = seen
                record.moved = seen >= self.config.opened_threshold or _paced_to_target(pace, record)
            elif test and record.contact == "side" and record.moved:  # a fingertip that slid round
                record.moved = seen >= self.config.test_seen  # a blocked cap felt give, too
            record.attempted = record.attempted or seen >= self.config.moved_threshold  # slid without a felt push
        return record

    def _seen_well(self, part: str) -> bool:
        """Whether the cameras saw the part lately from where the hand is (the park, or backed
        off from a handle of a class they are known to see well from there)."""
        if not self.io.seen_since(part, self.io.state.t - self.config.view_s):
            return False
        if self._parked():
            return True
        aff = self.io.sheet.affordances[part]
        _, approach, grip_axis = self.io.handle_world(part)
        return handle_class(aff.mode, approach, grip_axis) in self.config.near_view

    @_activity("camera_view")
    def _judging_view(self, part: str, record: Interaction) -> bool:
        """Let go and look: whether the cameras saw the part with the hand away. From the
        backed-off hand where the config trusts that view for the part's class (and the part
        is seen there), from the park otherwise; with `compare_views`, both, keeping how far
        apart they put the handle."""
        cfg = self.config
        near_ok, compare = record.handle_class in cfg.near_view, record.handle_class in cfg.compare_views
        if not (near_ok or compare):
            return self._view_parked(part)
        self._back_off()
        self.move_to(self.cmd_pos + [0.0, 0.0, cfg.near_view_rise], self.cmd_quat, cfg.free_speed)
        backed = self.io.state.t
        self._look(cfg.view_s)
        near = self.io.handle_world(part)[0] if self.io.seen_since(part, backed) else None
        if near is not None and near_ok:
            return True
        parked = self._view_parked(part)
        if compare and parked:
            far = self.io.handle_world(part)[0]
            record.near_view_error.append(None if near is None else float(np.linalg.norm(near - far)))
        return parked

    @_activity("camera_view")
    def _view_parked(self, part: str) -> bool:
        """Park and look: whether the cameras saw the part with the hand away."""
        self.park()
        parked = self.io.state.t
        self._look(self.config.view_s)
        return self.io.seen_since(part, parked)

    def _parked(self) -> bool:
        """Whether the hand is at the park (within a centimetre: the arm settles a little there)."""
        return float(np.linalg.norm(self.cmd_pos - self.io.park_pos)) < 0.01

    def _back_off(self) -> None:
        """Let go and back the hand off `standoff` along its tool axis."""
        self.grip = 0.0
        self.wait(self.config.settle_s)
        self.move_to(self.cmd_pos - self._tool_z() * self.config.standoff, self.cmd_quat, self.config.free_speed)

    def park(self) -> None:
        """Back off the puzzle and return to the parking pose, out of the cameras' view."""
        if self._parked():
            return
        self._back_off()
        via = self.cmd_pos.copy()
        via[2] = max(via[2], self.io.park_pos[2])
        self.move_to(via, self.cmd_quat, self.config.free_speed)
        self.move_to(self.io.park_pos, self.io.park_quat, self.config.free_speed)

    @_activity("camera_view")
    def find_park(self, parts: Sequence[str]) -> list[str]:
        """Move the park until the cameras see `parts` (hidden from the park by the hand itself)
        and return those still unseen from the best park found, which is kept. The hand starts
        where it is out of the cameras' view for most puzzles, but a tall one's top marker sat
        behind it in the closeup view and its button was never explored (gen_d5_s9504)."""
        cfg = self.config
        start = self.io.park_pos.copy()
        best, missing = start, list(parts)
        for offset in cfg.park_offsets:
            target = np.clip(start + np.asarray(offset, dtype=float), cfg.park_low, cfg.park_high)
            self.move_to(target, self.io.park_quat, cfg.free_speed)
            since = self.io.state.t
            self._look(cfg.view_s)
            still = [p for p in missing if not self.io.seen_since(p, since)]
            if len(still) < len(missing):
                best, missing = target, still
            if not missing:
                break
        self.move_to(best, self.io.park_quat, cfg.free_speed)
        self.io.park_pos = best.copy()
        return missing

    def _grasp_probe(self, part: str, aff: Affordance, handle: np.ndarray, approach: np.ndarray,
                     grip_axis: np.ndarray, candidates: list[np.ndarray], record: Interaction,
                     test: bool = False, pace: Pace | None = None) -> None:
        cfg = self.config
        # Where the cameras put the bar first, then a margin to either side across it (a lid's
        # marker seen from above is a centimetre off in depth).
        for shift in (0.0, cfg.grasp_margin, -cfg.grasp_margin):
            held = self._take_hold(aff, handle + grip_axis * shift, approach, grip_axis)
            if held is not None:
                break
        else:
            log.debug("%s: no hold on the bar at %s (grip axis %s)", part, np.round(handle, 3), np.round(grip_axis, 2))
            return  # not engaged: the fingers found no bar, or something else was in the way
        log.debug("%s: held the bar at %s", part, np.round(self.io.state.tcp_position, 3))
        record.engaged = True
        self.slipped = False
        held_quat = self.cmd_quat.copy()
        for d in candidates:
            record.tried.append(d)
            start = self.io.state.tcp_position.copy()
            _clear(record)  # keep only the motion of the direction that works, from rest
            gave = self._comply(d, cfg.tug_distance, cfg.tug_speed, held, record=record, tug=True)
            log.debug("%s: tug along %s held at %s gave %s (slipped %s)", part, np.round(d, 2),
                      np.round(start, 3), gave, self.slipped)
            if self.slipped and not gave:  # lost the handle: later tugs would pull on nothing
                record.engaged = False
                break
            if gave and test:  # it gives this way: bring it back and let go
                record.moved, record.contact = True, "grasp"
                record.travel = float(np.linalg.norm(self.io.state.tcp_position - start))
                self.move_to(start, held_quat, cfg.tug_speed)
                break
            if gave:
                self._comply(d, cfg.max_travel, cfg.follow_speed, held, record=record, start=start, follow=pace)
                record.moved, record.contact = True, "grasp"
                record.travel = float(np.linalg.norm(self.io.state.tcp_position - start))
                mat = np.zeros(9)
                mujoco.mju_quat2Mat(mat, self.io.state.tcp_quaternion)
                mat = mat.reshape(3, 3)
                self.left_at[part] = (self.io.state.tcp_position.copy(), mat[:, 2].copy(), mat[:, 1].copy())
                break
            self.move_to(start, held_quat, cfg.tug_speed)  # back where the tug began, as it was held
        else:
            _clear(record)

    def _take_hold(self, aff: Affordance, handle: np.ndarray, approach: np.ndarray,
                   grip_axis: np.ndarray) -> float | None:
        """Reach a bar with the fingers open around it and close them; the closure they stopped
        at, or None (every way in blocked by something else, or they closed on nothing)."""
        cfg = self.config
        self.grip = self._preshape(aff)
        bar = np.cross(approach, grip_axis)
        bar /= np.linalg.norm(bar)
        for pitch in cfg.grasp_pitches_deg:  # straight in first, then rolled about the bar
            turn = _axis_angle(bar, np.radians(pitch))
            way_in, across = turn @ approach, turn @ grip_axis
            target, quat = self._clear_table(handle - way_in * self.hand.grasp_offset, tool_quat(way_in, across),
                                             handle, way_in)
            touched = self._reach(target, quat, way_in, guarded=True)
            if not touched or float((target - self.io.state.tcp_position) @ way_in) < cfg.grasp_obstruction:
                break  # in place (a fingertip grazing the bar itself is fine)
            self.move_to(self.cmd_pos - way_in * cfg.standoff, self.cmd_quat, cfg.free_speed)
        else:
            return None
        self._close_centred(across)
        held = self.io.state.grip  # closure on the bar: opening past it means the handle escaped
        if held > 1.0 - cfg.slip_closure:  # closed on nothing: open and back off
            self.grip = self._preshape(aff)
            self.wait(cfg.settle_s)
            self.move_to(self.cmd_pos - way_in * cfg.standoff, self.cmd_quat, cfg.free_speed)
            return None
        return held

    @_activity("grasp_closing")
    def _close_centred(self, axis: np.ndarray) -> None:
        """Close the fingers, the hand sliding along their closing `axis` with the force on it.

        A bar off the hand's centre (a lid's handle placed a centimetre low through the top
        camera) meets one finger first; a stiff hand would pin it against that finger, and the
        first strong tug rolls it out. Yielding centres the hand until both fingers hold it.
        """
        cfg = self.config
        self.grip = 1.0
        for _ in range(max(1, int(round(2 * cfg.settle_s / self.period)))):
            state = self._tick()
            force = 0.0 if state.wrench is None else float(np.asarray(state.wrench[:3], dtype=float) @ axis)
            self.cmd_pos = self.cmd_pos + cfg.centring_admittance * force * axis * self.period

    def _preshape(self, aff: Affordance) -> float:
        """Closure to approach a bar with: open by the bar plus a margin each side for the
        handle's uncertainty, no wider (wide-open fingers catch neighbouring parts)."""
        hand = self.hand
        if hand.opening <= 0.0:
            return hand.preshape
        gap = 2 * aff.radius + 2 * self.config.grasp_margin
        return float(np.clip(1.0 - gap / hand.opening, hand.preshape, 1.0))

    @_activity("held_motion")
    def _comply(self, d: np.ndarray, distance: float, speed: float, held: float, record: Interaction | None,
                start: np.ndarray | None = None, tug: bool = False, follow: Pace | None = None) -> bool:
        """Move the grasping hand along `d`, yielding to force across it; True if it travelled `distance`
        (or `follow` said it is done).

        The direction of travel follows the hand's measured motion, so a curved path is traced.
        """
        cfg = self.config
        io = self.io
        tangent = d / np.linalg.norm(d)
        heading = tangent.copy()  # where the path pointed when the hand last turned with it
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
            travelled = float(np.linalg.norm(state.tcp_position - origin))
            if tug:
                pace = speed
            elif follow is not None:
                paced = follow(state.t, travelled)
                if paced is None:  # there: hold it where it is
                    self.cmd_pos = state.tcp_position.copy()
                    return True
                pace = paced
            else:
                pace = cfg.speed_steps(travelled)
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
                if not tug:  # turn the hand as the path turns: a handle on a hinge turns with it
                    self.cmd_quat = _turned(self.cmd_quat, heading, tangent)
                    heading = tangent.copy()
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
                    candidates: list[np.ndarray], record: Interaction, test: bool = False,
                    pace: Pace | None = None) -> None:
        cfg = self.config
        for d in candidates:
            record.tried.append(d)
            # every try starts from the handle as seen from the park: the directions tried so far
            # did not move it, and views taken with the hand beside it can be partly hidden
            pos, quat = self._push_pose(aff, handle, approach, d)
            self.grip = 1.0
            press = abs(d @ approach) > 0.7
            self.io.tracker.handled(part, may_turn=not press)
            # A press stops just short of the handle and the push finds it (a light button gives
            # under less force than a guarded move's touch level); a side push must reach its
            # depth beside the handle untouched (a touch there: the handle is not where the hand
            # thought). A touch on the way in is something else in the hand's way.
            beside = pos - (approach if press else d) * (cfg.clearance + (0.01 if press else 0.0))
            touched = self._reach(beside, quat, approach, guarded=True)
            if touched and not press and self._met_face_behind(beside, approach):
                # the handle stands out less far than it was seen: push from just off the face
                self.move_to(self.cmd_pos - approach * cfg.face_backoff, self.cmd_quat, cfg.tug_speed)
                touched = False
            if touched and not (press and self._touched_handle(pos, approach, aff)):
                log.debug("%s: %s push along %s met something short of the handle at %s",
                          part, "press" if press else "side", np.round(d, 2),
                          np.round(self.io.state.tcp_position, 3))
                # something else is in the hand's way (the table under a low handle, a neighbour):
                # this direction cannot be tried from here, which says nothing about the part
                self.move_to(self.cmd_pos - approach * cfg.standoff, self.cmd_quat, cfg.free_speed)
                continue
            handle_before = handle.copy()
            if test:
                limit = cfg.test_press if press else cfg.test_push
            else:  # a button's whole travel is 12 mm: a press that gave half of it went in
                limit = cfg.moved_threshold if press else cfg.opened_threshold
            pushed = self._servo_push(part, aff, d, record, give_limit=limit if test else None,
                                      follow=None if test else pace)
            if press:
                # A press is judged by the hand: the cap moves along the cameras' line of sight,
                # where a marker's depth is noisiest (several free buttons were seen "not moved").
                record.travel = pushed.gave
                record.moved = pushed.pressed(limit, cfg.press_drift)
            else:
                record.travel = pushed.gave if test else pushed.travelled
                record.moved = record.travel >= limit
            record.contact = "press" if press else "side"
            log.debug("%s: %s along %s gave %.4f m, travelled %.4f m (drift %.4f): moved %s",
                      part, record.contact, np.round(d, 2), pushed.gave, pushed.travelled,
                      pushed.drift, record.moved)
            paced = _paced_to_target(pace, record)
            record.moved = record.moved or paced
            self.move_to(self.cmd_pos - d * cfg.clearance * 2, self.cmd_quat, cfg.follow_speed)  # off the handle
            self.move_to(self.cmd_pos - approach * cfg.standoff, self.cmd_quat, cfg.free_speed)
            if paced:
                break  # it gave and came to rest where it should (the cameras judge it in `probe`)
            if record.moved and not press:
                seen = self._seen_travel(part, handle_before, approach)
                # the hand's own advance while pushing can be a finger riding over the handle or
                # the puzzle's give (a test's fingertip slid 8 mm round a blocked button's cap):
                # where the cameras see the handle after the push, they decide
                log.debug("%s: the cameras see the handle moved %s m", part, seen)
                record.moved = seen is None or seen >= (cfg.test_seen if test else cfg.opened_threshold)
            elif record.moved and not test:
                record.moved = self._press_seen(part, record, handle_before, approach, pushed.gave)
            if record.moved:
                break
        else:
            _clear(record)

    def _touched_handle(self, pos: np.ndarray, approach: np.ndarray, aff: Affordance) -> bool:
        """Whether a press's first touch is the handle: the push back is mostly against the
        approach and came about where the handle's front is (not the palm on the table)."""
        state = self.io.state
        force = np.asarray(state.wrench[:3], dtype=float)
        along = float(-(force @ approach)) / max(float(np.linalg.norm(force)), 1e-9)
        short = float((pos - state.tcp_position) @ approach)
        return along > 0.7 and short < 2 * aff.radius + 0.02

    def _met_face_behind(self, target: np.ndarray, approach: np.ndarray) -> bool:
        """Whether a side push's reach met the face the handle stands out from, a little short of
        its depth: pushed back against the approach, within `face_slack` of the target."""
        state = self.io.state
        force = np.asarray(state.wrench[:3], dtype=float)
        along = float(-(force @ approach)) / max(float(np.linalg.norm(force)), 1e-9)
        short = float((target - state.tcp_position) @ approach)
        return along > 0.7 and short < self.config.face_slack

    def _seen_travel(self, part: str, before: np.ndarray, approach: np.ndarray) -> float | None:
        """How far the cameras see the handle from `before`, across its face, once the hand has
        backed off (None when they do not see it: the hand or the part hides the marker)."""
        since = self.io.state.t
        self._look(self.config.view_s * 0.5)
        if not self.io.seen_since(part, since):
            return None
        now, _, _ = self.io.handle_world(part)
        return _travel(now - before, approach, "side")

    def _press_seen(self, part: str, record: Interaction, before: np.ndarray, approach: np.ndarray,
                    gave: float) -> bool:
        """Whether the cameras, with the hand parked, see the handle gone in along the approach
        by `press_seen` of the hand's give (True when they do not see it: the hand's word
        stands). Depth along the line of sight is a marker's noisiest axis, hence the fraction."""
        if not self._judging_view(part, record):
            return True
        now, _, _ = self.io.handle_world(part)
        seen = float((now - before) @ approach)
        log.debug("%s: the cameras see the press %.4f m in (the hand gave %.4f m)", part, seen, gave)
        return seen >= self.config.press_seen * gave

    def _push_pose(self, aff: Affordance, handle: np.ndarray, approach: np.ndarray,
                   d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP pose that puts the hand's pushing spot against the handle, pushing along `d`.

        The hand is turned so that its wide side lies level (it clears the table under a low
        handle): a press rolls the hand about the approach; a side push uses the pushing spot
        whose pose leaves the hand's wide axis most nearly horizontal.
        """
        hand = self.hand
        wide = np.array(hand.wide_axis, dtype=float)
        if abs(d @ approach) > 0.7:  # a press with the closed fingertips
            level = np.cross([0.0, 0.0, 1.0], approach)
            if np.linalg.norm(level) < 1e-6:  # pressing straight down: any roll is level
                level = np.array([0.0, 1.0, 0.0])
            # tool y along `level` when the hand is widest along y, tool x along it otherwise
            grip = level if abs(wide[1]) >= abs(wide[0]) else np.cross(approach, level)
            return self._clear_table(handle - d * hand.press_reach, tool_quat(approach, grip), handle, approach,
                                     push_from_below=d[2] * (self.config.clearance + 0.01))
        world = np.column_stack([np.cross(d, approach), d, approach])
        best = None
        for push in hand.side_pushes:
            axis, point = np.array(push.axis, dtype=float), np.array(push.point, dtype=float)
            tool = np.column_stack([np.cross(axis, [0.0, 0.0, 1.0]), axis, [0.0, 0.0, 1.0]])
            rot = world @ tool.T
            tilt = abs(float((rot @ wide)[2]))
            if best is None or tilt < best[0] - 1e-6:
                best = (tilt, rot, point)
        _, rot, point = best
        depth = min(-point[2], 0.02 - hand.press_reach)
        offset = approach * depth - d * aff.radius - rot @ (point * [1.0, 1.0, 0.0])
        # the hand comes in `clearance` short of the handle along `d` (below it, pushing up)
        return self._clear_table(handle + offset, quat_from_matrix(rot), handle - d * aff.radius, approach,
                                 push_from_below=d[2] * self.config.clearance)

    def _clear_table(self, pos: np.ndarray, quat: np.ndarray, pivot: np.ndarray, approach: np.ndarray,
                     push_from_below: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`clear_table` with this hand: the palm and wrist keep `table_clearance`. For a push or
        press (`push_from_below` given: how much lower than this pose the hand comes in) the
        closed fingers, which go under or beside the handle, keep `finger_clearance` too."""
        cfg, hand = self.config, self.hand
        points = np.array(hand.envelope, dtype=float).reshape(-1, 3)
        floors = np.full(len(points), cfg.table_z + cfg.table_clearance)
        if push_from_below is not None:
            if hand.closed_fingers:
                fingers = np.array(hand.closed_fingers, dtype=float)
                points = np.vstack([points, fingers])
                floors = np.concatenate([floors, np.full(len(fingers), cfg.table_z + cfg.finger_clearance)])
            floors = floors + max(push_from_below, 0.0)
        return clear_table(pos, quat, pivot, approach, points, floors, cfg.max_tilt_deg)

    @_activity("push_motion")
    def _servo_push(self, part: str, aff: Affordance, d: np.ndarray, record: Interaction,
                    give_limit: float | None = None, follow: Pace | None = None) -> Pushed:
        """Push along `d`, re-aimed at the handle's tracked motion, until it stops.

        Returns the handle's travel and the hand's give (its advance while pushing on the handle
        under `tug_force`); with `give_limit` (a test) it stops once the give reaches the limit.
        With `follow`, its speed sets the push's once the hand touches, until it says stop.

        The push turns ahead along a curved path (the last turn of the tracked motion is
        extrapolated) and yields to force across it in the face's plane, so a crank pushed
        round its arc slides along the fingers instead of jamming against its axle.
        """
        cfg, io = self.config, self.io
        start, approach, _ = io.handle_world(part)
        last_seen, tangent = start.copy(), d.copy()
        last_step: np.ndarray | None = None
        over, travelled, in_contact, pushing, gave = 0, 0.0, 0.0, 0.0, 0.0
        first_touch: int | None = None
        speed = cfg.tug_speed
        previous = io.state.tcp_position.copy()
        hand_start = previous.copy()
        _clear(record)  # keep only the motion of the direction that works
        across_face = np.eye(3) - np.outer(approach, approach)  # keep the push's depth
        side = abs(d @ approach) < 0.7  # a press goes straight in
        press_forces: list[float] = []  # a press's push force at each tick in contact (side pushes: none)
        for _ in range(int(np.ceil(cfg.max_travel / (cfg.tug_speed * self.period))) + 100):
            state = io.state
            force = np.zeros(3) if state.wrench is None else np.asarray(state.wrench[:3], dtype=float)
            across = across_face @ (force - (force @ tangent) * tangent)
            # The face behind a handle seen too deep pushes the fingertips back: yield to it (a knob's
            # crank seen 14 mm deep put the fingertips on the dial, and pressing it stalled the push)
            behind = min(float(force @ approach), 0.0) * approach if side else np.zeros(3)
            self.cmd_pos = (self.cmd_pos + tangent * speed * self.period + cfg.admittance * across * self.period
                            + cfg.face_admittance * behind * self.period)
            state = self._tick()
            wrench = np.zeros(6) if state.wrench is None else np.asarray(state.wrench, dtype=float)
            record.append(state, self.cmd_pos)
            # Low-passed push force along the motion: a free bolt resists with well under a newton.
            pushing = 0.8 * pushing + 0.2 * float(-(wrench[:3] @ tangent))
            if pushing > cfg.push_contact_force:  # the hand advanced while pushing on something
                first_touch = len(record.times) - 1 if first_touch is None else first_touch
                advance = float((state.tcp_position - previous) @ tangent)
                in_contact += advance
                record.engaged = True
                # a press gives only under a light push, read unfiltered: the filter's lag let the
                # hand's sinking into a stopped cap count as give (see `press_give_force`)
                light = True
                if not side:
                    press_forces.append(float(-(wrench[:3] @ tangent)))
                    light = press_forces[-1] < max(cfg.press_give_force, 2.0 * float(np.median(press_forces)))
                if pushing < cfg.tug_force and light:
                    gave += advance
                    if give_limit is not None and gave >= give_limit:
                        self.cmd_pos = state.tcp_position.copy()
                        break
            previous = state.tcp_position.copy()
            now, _, _ = io.handle_world(part)
            travelled = max(float(np.linalg.norm(now - start)), in_contact)
            if follow is not None and first_touch is not None:
                # the pace reads the part's travel off the hand's since it met the handle (the
                # filter lags ~5 ticks): a marker half hidden by the pushing finger was read 9-17 mm
                # along while the bolt had gone 1 mm, and the pace stopped short at its "target"
                touched = record.tcp_positions[max(0, first_touch - 5)]
                paced = follow(state.t, float(np.linalg.norm(state.tcp_position - touched)))
                if paced is None:  # there: stop pushing
                    self.cmd_pos = state.tcp_position.copy()
                    break
                speed = paced
            elif travelled >= cfg.moved_threshold:
                speed = cfg.speed_steps(travelled)
            step = now - last_seen
            if side and np.linalg.norm(across_face @ step) > 0.008:  # re-aim along the handle's own motion
                # in the face's plane (a side push never heads into the puzzle), turning ahead
                # along a curve, by at most `max_turn` per update (a pose half hidden by the hand
                # can be a centimetre or two off)
                step = across_face @ step
                step = step / np.linalg.norm(step)
                ahead = step if last_step is None else step + 0.5 * (step - last_step)
                last_seen, last_step = now, step
                tangent = _turn_towards(tangent, ahead / np.linalg.norm(ahead), np.radians(cfg.max_turn_deg))
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
        drift = 0.0
        if first_touch is not None:  # the record starts as the hand met the handle (the filter lags ~5 ticks)
            touched_at = record.tcp_positions[first_touch]
            sideways = (np.eye(3) - np.outer(d, d)) @ (state.tcp_position - touched_at)
            drift = float(np.linalg.norm(sideways))
            _trim(record, max(0, first_touch - 5))
        return Pushed(travelled, gave, drift)


def handle_class(mode: str, approach: np.ndarray, grip_axis: np.ndarray | None) -> str:
    """What the sheet shows of how a handle sits (`HANDLE_CLASSES`): a bar the fingers close on
    from above and below (a horizontal bar: a drawer's pull) or from the sides (an upright bar:
    a door's), a push handle reached from above (a lid's button) or from the side."""
    if mode == "grasp":
        vertical = grip_axis is not None and abs(float(np.asarray(grip_axis)[2])) > 0.7
        return HANDLE_CLASSES[0] if vertical else HANDLE_CLASSES[1]
    return HANDLE_CLASSES[2] if float(np.asarray(approach)[2]) < -0.7 else HANDLE_CLASSES[3]


def handle_shape(aff: Affordance) -> str:
    """What the marker sheet prints of a handle's shape, to the millimetre: its radius, how far
    it stands out of its marker and how far off the marker's centre it is. A flush cap on its
    marker (a button) and a pin off a dial's centre (a knob's crank) share a `handle_class` but
    give different ways."""
    point = 1000 * np.asarray(aff.point, dtype=float)
    return (f"r{1000 * aff.radius:.0f} out{point[2]:.0f} off{np.hypot(point[0], point[1]):.0f} mm")


def handle_key(kind: str, shape: str) -> str:
    """A handle class narrowed by its shape (`handle_shape`), as the family memory keys it."""
    return f"{kind}{SHAPE_SEP}{shape}"


def candidate_directions(config: ProbeConfig, mode: str, approach: np.ndarray, grip_axis: np.ndarray | None,
                         hint: np.ndarray | None = None, shape: str = "") -> list[np.ndarray]:
    """Directions to try a handle in, most likely first: the hint, then `canonical_directions`
    in the config's learned order for the handle's class and shape (else its class), or pull
    (grasp) or press (push), then across."""
    out = canonical_directions(mode, approach, grip_axis)
    kind = handle_class(mode, approach, grip_axis)
    orders = dict(config.direction_order)
    order = orders.get(handle_key(kind, shape), orders.get(kind))
    if order is not None:
        out = [out[i] for i in order]
    if hint is not None:
        h = hint / np.linalg.norm(hint)
        out = [h] + [d for d in out if d @ h < 0.9]
    return out


def canonical_directions(mode: str, approach: np.ndarray, grip_axis: np.ndarray | None) -> list[np.ndarray]:
    """The five ways to try a handle (`CANONICAL`), in the world: along the approach (pulled if
    grasped, pressed if pushed), then both ways along the bar (or horizontally across a push
    handle), then both ways across both."""
    if grip_axis is not None:
        u = np.asarray(grip_axis, dtype=float)
    else:  # a push handle: any basis of the plane across the approach, horizontal first
        u = np.cross(approach, [0.0, 0.0, 1.0])
        if np.linalg.norm(u) < 1e-6:
            u = np.cross(approach, [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u)
    v = np.cross(approach, u)
    first = -approach if mode == "grasp" else approach
    return [first, u, -u, v, -v]


@dataclass(frozen=True)
class Pushed:
    """What a servo push did: the handle's travel (cameras and hand) and the hand's give."""

    travelled: float  # m: the larger of the tracked handle's displacement and the hand's advance on it
    gave: float  # m the hand advanced pushing on the handle under the tug force (a yielding part)
    drift: float = 0.0  # m the hand moved across the push since it first touched (sliding off a handle)

    def pressed(self, give: float, max_drift: float) -> bool:
        """A press went in: the hand gave `give` straight in. A finger that slid off a knob or
        crank pin also advances, but only by moving across the push round it."""
        return self.gave >= give and self.drift < max_drift


def _paced_to_target(pace: Pace | None, record: Interaction) -> bool:
    """Whether a paced follow ended with the part at rest at its target (it moved as it should)."""
    return bool(pace is not None and record.engaged and getattr(pace, "finished", False))


def untilted(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Marker pose `after` (4x4) with its tilt since `before` taken out: its position, and its
    orientation `before`'s turned only about the marker's normal (the turn in its own plane).
    Of a planar marker's pose, the tilt is what PnP can read two ways; the rest it reads well."""
    rel = before[:3, :3].T @ after[:3, :3]
    twist = float(np.arctan2(rel[1, 0] - rel[0, 1], rel[0, 0] + rel[1, 1]))
    c, s = np.cos(twist), np.sin(twist)
    out = after.copy()
    out[:3, :3] = before[:3, :3] @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return out


def _travel(step: np.ndarray, approach: np.ndarray, contact: str) -> float:
    """A handle's seen travel. After a side push, only its motion across its face counts: a
    marker's depth along the cameras' line of sight is the noisiest part of its pose (two views
    of a bolt held by its lock's 2 mm of play were 7 mm apart), and a push moves it in its face."""
    if contact == "side":
        step = step - (step @ approach) * approach
    return float(np.linalg.norm(step))


def _turned(quat: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """`quat` turned by the smallest rotation taking unit vector `before` to `after`."""
    axis = np.cross(before, after)
    sin = float(np.linalg.norm(axis))
    if sin < 1e-9:
        return quat
    angle = float(np.arctan2(sin, float(before @ after)))
    turn, out = np.zeros(4), np.zeros(4)
    mujoco.mju_axisAngle2Quat(turn, axis / sin, angle)
    mujoco.mju_mulQuat(out, turn, quat)
    return out


def _turn_towards(current: np.ndarray, target: np.ndarray, max_angle: float) -> np.ndarray:
    """Unit vector from `current` towards `target`, turned by at most `max_angle` (rad)."""
    angle = float(np.arccos(np.clip(current @ target, -1.0, 1.0)))
    if angle <= max_angle:
        return target
    axis = np.cross(current, target)
    if np.linalg.norm(axis) < 1e-9:
        return current
    return _axis_angle(axis / np.linalg.norm(axis), max_angle) @ current


def _trim(record: Interaction, start: int) -> None:
    for series in (record.times, record.commanded, record.tcp_positions, record.tcp_quaternions, record.wrenches):
        del series[:start]


def _clear(record: Interaction) -> None:
    for series in (record.times, record.commanded, record.tcp_positions, record.tcp_quaternions, record.wrenches):
        series.clear()


def clear_table(pos: np.ndarray, quat: np.ndarray, pivot: np.ndarray, approach: np.ndarray,
                envelope: np.ndarray, floor: float | np.ndarray, max_tilt_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """A TCP pose pitched about `pivot` (where the hand touches the handle), back end up, until
    the hand's `envelope` (tool-frame points) is above `floor` (world z, one for all points or one
    per point); a handle high enough keeps the pose as it is, one too low gets the pose that
    clears most."""
    axis = np.cross(approach, [0.0, 0.0, 1.0])
    if len(envelope) == 0 or np.linalg.norm(axis) < 1e-6:
        return pos, quat
    axis /= np.linalg.norm(axis)
    rot = _matrix(quat)

    def margin(p: np.ndarray, r: np.ndarray) -> float:
        return float(np.min((p + envelope @ r.T)[:, 2] - floor))

    best = (margin(pos, rot), pos, quat)
    for tilt in np.radians(np.arange(5.0, max_tilt_deg + 1e-9, 5.0)):
        if best[0] >= 0.0:
            break
        for sign in (1.0, -1.0):
            turn = _axis_angle(axis, sign * tilt)
            p, r = pivot + turn @ (pos - pivot), turn @ rot
            low = margin(p, r)
            if low > best[0]:
                best = (low, p, quat_from_matrix(r))
    return best[1], best[2]


def _matrix(quat: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, axis, angle)
    return _matrix(quat)


def _world_to_local(quat: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """A world-frame rotation vector expressed in the frame of `quat` (for mju_quatIntegrate)."""
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3).T @ omega
