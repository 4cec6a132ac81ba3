"""From an exploration to a `FittedModel`: articulations, dynamics and the lock graph.

Per part:
- **Articulation.** A grasped or pressed handle moves with the hand, so the hand's measured
  path (100 Hz, millimetre-accurate) is the handle's: a line or an arc, fitted from
  positions alone (`infer_articulation(..., None)`). A part pushed from the side slides
  along the fingers, so its own tracked marker poses (cameras) are used instead.
- **Dynamics.** While the hand drives a part, the wrist sensor measures the force the part
  pushes back with; projected on the fitted joint, that is the generalized effort, and the
  hand's path gives the joint coordinate. `sysid.fit_driven` replays the hand's motion in
  one-joint MuJoCo candidates, compares the effort each needs with the measured one, and
  returns a posterior (warm-started from the previous model's fit).
- **Locks.** The lock beliefs' marginal blocker probabilities.

Frames: the tracker's base frame is base marker 0's; the hand's world poses are brought into
it with the camera registration `RobotIO.T_world_base`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.transform import Rotation

from puzzlebot.agent.affordances import MarkerSheet
from puzzlebot.agent.articulation import Articulation, NoiseModel, infer_articulation
from puzzlebot.agent.fitted_model import FittedModel, FittedPart, lock_graph_from
from puzzlebot.agent.locks import OPEN, LockBeliefs
from puzzlebot.agent.perception.tracker import PartTrack
from puzzlebot.agent.probing import Interaction
from puzzlebot.agent.sysid import DrivenMotion, fit_driven, gravity_columns
from puzzlebot.sim.frames import quat_from_matrix

if TYPE_CHECKING:  # the explorer uses this module's fits to steer its probes
    from puzzlebot.agent.explorer import Exploration

HAND_NOISE = NoiseModel(position=0.002)  # the hand's path: sensor noise is far lower; grasp play is not
PRESS_NOISE = NoiseModel(position=0.0008)  # a fingertip pressing a cap straight in has no play to roll in (the
# emulated arm reads 0.5 mm of noise):
# at 2 mm a button's 8-12 mm stroke scored "fixed" (BIC 102 against 111 for a line)
ENDSTOP_MARGIN = {"prismatic": 1.0, "revolute": 0.1}  # N or N·m above 3x the typical effort: a stop
MIN_SAMPLES = 20
MIN_PATH_TURN = 0.15  # rad: a hand's path turning more than this must be seen on the part's marker
NOT_TURNED = 0.1  # rad: a marker turned less than this did not turn (its rotation noise is about 1.5 deg)


def _to_base(points: np.ndarray, T_world_base: np.ndarray) -> np.ndarray:
    return (np.asarray(points) - T_world_base[:3, 3]) @ T_world_base[:3, :3]


def _kinesthetic(interaction: Interaction) -> bool:
    """Whether the hand's path is the handle's: held in the fingers, or pressed straight in."""
    return interaction.contact in ("grasp", "press")


def marker_turn(track: PartTrack, opened: list[Interaction], views: int = 5) -> float | None:
    """How far (rad, about any axis) the part's marker was seen turned once the first of `opened`
    began, from where it stood before: the 75th percentile over every later sighting (one
    misread pose does not make a turn, and a lid that fell shut again was seen open on the
    way), each against the last `views` sightings before. None without `views` on both sides."""
    times = np.asarray(track.times)
    if len(times) == 0:
        return None
    start = min(i.times[0] for i in opened)
    before, after = np.flatnonzero(times < start)[-views:], np.flatnonzero(times >= start)
    if len(before) < views or len(after) < views:
        return None
    quats = np.asarray(track.quaternions)
    turns = np.median(2.0 * np.arccos(np.clip(np.abs(quats[before] @ quats[after].T), 0.0, 1.0)), axis=0)
    return float(np.percentile(turns, 75))


def part_articulation(part: str, interactions: list[Interaction], track: PartTrack,
                      T_world_base: np.ndarray) -> Articulation:
    """The articulation of one part from the probes that opened it (fixed if none did).

    A held handle's path is the hand's (the grasp offset, a centimetre or so, shifts a hinge's
    fitted axis point by about as much; correcting it with the camera's rest handle made it
    worse in practice, as the bar rolls in the fingers while the part turns). A path read as an
    arc must be seen on the marker too: a stiff drawer's 5 cm pull bowed 3 mm in the fingers,
    fitted as a 0.49 rad turn (BIC 297 against 311 for a line), while its marker turned 0.05 rad
    (`marker_turn`); the part then counted as opened 0.09 "rad" and its goal as met at 5 cm.
    """
    # Opened by the cameras' word too: a knob the hand pushed every way without feeling it give,
    # seen turned 29 mm at its crank once the hand was away, keeps no hand record, only its track.
    opened = [i for i in interactions if i.part == part and i.moved and i.direction == OPEN]
    if not opened:  # a still part's track is noise (and poses half hidden by a pushing hand)
        return Articulation(kind="fixed")
    paths = [i for i in opened if _kinesthetic(i) and i.tcp_positions]
    if paths:
        points = np.concatenate([_to_base(np.array(i.tcp_positions), T_world_base) for i in paths])
        noise = PRESS_NOISE if all(i.contact == "press" for i in paths) else HAND_NOISE
        articulation = infer_articulation(points, None, noise)
        if articulation.kind == "revolute":
            path_turn = float(np.ptp(articulation.coordinates))
            seen = marker_turn(track, paths)
            if path_turn > MIN_PATH_TURN and seen is not None and seen < min(NOT_TURNED, path_turn / 4):
                # The hand's path bowed (grasp play on a stiff pull) but the part did not turn.
                return infer_articulation(points, None, noise, kinds=("fixed", "prismatic"))
        return articulation
    _, positions, quaternions = track.arrays()
    if len(positions) >= 3:
        return infer_articulation(positions, quaternions)
    return Articulation(kind="fixed")


def driven_motion(interaction: Interaction, articulation: Articulation,
                  T_world_base: np.ndarray) -> DrivenMotion | None:
    """The joint coordinate the hand drove a part through, and the effort it took (one probe).

    Returns None when the probe's hand path is not the part's (a side push on a hinge) or too short.
    """
    if articulation.kind == "fixed" or len(interaction.times) < MIN_SAMPLES:
        return None
    if not _kinesthetic(interaction) and articulation.kind != "prismatic":
        return None
    R = T_world_base[:3, :3]
    times = np.asarray(interaction.times) - interaction.times[0]
    points = _to_base(np.array(interaction.tcp_positions), T_world_base)
    wrench = np.array(interaction.wrenches)
    force_on_part = -wrench[:, :3] @ R  # base frame: the hand pushes the part as hard as it is pushed back
    torque_on_part = -wrench[:, 3:] @ R
    axis = articulation.axis
    if articulation.kind == "prismatic":
        coordinate = (points - points[0]) @ axis
        effort = force_on_part @ axis
    else:
        arm = points - articulation.origin
        coordinate = _angles_about(arm, axis)
        effort = np.cross(arm, force_on_part) @ axis + torque_on_part @ axis
    start = 0
    if not _kinesthetic(interaction):  # a side push: from the first touch on
        touching = np.flatnonzero(effort > max(0.5, 3 * np.median(np.abs(effort[:5]))))
        if not len(touching):
            return None
        start = touching[0]
    # The end: where the part met its stop (or a lock) and the effort shot up.
    typical = np.median(np.abs(effort[start:]))
    spikes = np.flatnonzero(np.abs(effort) > 3 * typical + 2 * ENDSTOP_MARGIN[articulation.kind])
    spikes = spikes[spikes > start + MIN_SAMPLES]
    stop = spikes[0] if len(spikes) else len(effort)
    if stop - start < MIN_SAMPLES:
        return None
    sl = slice(start, stop)
    # Across the motion, in two fixed directions: an error in the fitted axis leaks it into the effort
    # (a hinge's offset through axis x force, a slide's tilt through the force itself). Only a held
    # handle is pushed across by the hand; a fingertip's across force is its contact friction, in
    # proportion to the push (fitted as a leak, it took a button's friction: 12 % -> 63 % off).
    across = None
    if interaction.contact == "grasp":
        leaking = force_on_part if articulation.kind == "prismatic" else np.cross(axis, force_on_part)
        across = leaking[sl] @ _perpendiculars(axis).T
    down = np.array([0.0, 0.0, -1.0]) @ R  # gravity in the base frame
    arms = points - articulation.origin if articulation.kind == "revolute" else points
    gravity = gravity_columns(articulation.kind, axis, down, arms[sl])
    return DrivenMotion(kind=articulation.kind, times=times[sl] - times[start],
                        positions=coordinate[sl] - coordinate[start], efforts=effort[sl], across=across,
                        gravity=gravity)


def _perpendiculars(axis: np.ndarray) -> np.ndarray:
    """(2, 3) two unit vectors perpendicular to `axis` and to each other."""
    helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
    first = np.cross(axis, helper)
    first /= np.linalg.norm(first)
    return np.stack([first, np.cross(axis, first)])


def _angles_about(arm: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Unwrapped rotation of each lever arm about `axis`, relative to the first."""
    planar = arm - np.outer(arm @ axis, axis)
    e1 = planar[0] / max(np.linalg.norm(planar[0]), 1e-12)
    e2 = np.cross(axis, e1)
    return np.unwrap(np.arctan2(planar @ e2, planar @ e1))


def build_model(exploration: Exploration, tracks: dict[str, PartTrack], sheet: MarkerSheet,
                T_world_base: np.ndarray, previous: FittedModel | None = None,
                fit_dynamics: bool = True) -> FittedModel:
    """The fitted model after an exploration (a refit when `previous` is given: warm starts)."""
    return fit_model(exploration.beliefs, exploration.interactions, tracks, sheet, T_world_base, previous,
                     fit_dynamics)


DynamicsPrior = Callable[[str, str], "tuple[np.ndarray, np.ndarray] | None"]
"""(handle mode, joint kind) -> (mean, std) of the log of each of `sysid.PARAMS`, or None: a
family's prior over its parts' dynamics (`memory.FamilyMemory.dynamics_prior`)."""


def fit_model(beliefs: LockBeliefs, interactions: list[Interaction], tracks: dict[str, PartTrack],
              sheet: MarkerSheet, T_world_base: np.ndarray, previous: FittedModel | None = None,
              fit_dynamics: bool = True, dynamics_prior: DynamicsPrior | None = None) -> FittedModel:
    """The fitted model of `beliefs.parts` from the probes so far (a refit when `previous` is
    given: dynamics warm-started from its fits; under `dynamics_prior` where it has one for a
    part's handle and joint kind, else under `sysid.cold_prior`)."""
    parts = []
    for name in beliefs.parts:
        track = tracks[name]
        _, positions, quaternions = track.arrays()
        if not len(positions):
            raise ValueError(f"part {name!r} was never seen by the cameras: no rest pose to build it at")
        aff = sheet.affordances[name]
        articulation = part_articulation(name, interactions, track, T_world_base)
        T_rest = track_pose(positions[0], quaternions[0])
        handle, _, _ = aff.in_world(T_rest)
        dynamics = None
        if fit_dynamics and articulation.kind != "fixed":
            prior = dynamics_prior(aff.mode, articulation.kind) if dynamics_prior is not None else None
            dynamics = _fit_part(name, interactions, articulation, T_world_base, previous, prior)
        parts.append(FittedPart(name=name, marker_id=aff.marker_id, articulation=articulation,
                                rest_position=positions[0], rest_quaternion=quaternions[0], handle=handle,
                                dynamics=dynamics))
    return FittedModel(parts=parts, base_position=T_world_base[:3, 3].copy(),
                       base_quaternion=quat_from_matrix(T_world_base[:3, :3]),
                       lock_graph=lock_graph_from(beliefs))


def _fit_part(name: str, interactions: list[Interaction], articulation: Articulation, T_world_base: np.ndarray,
              previous: FittedModel | None, prior: tuple[np.ndarray, np.ndarray] | None = None):
    """Fit every usable motion of the part together (warm start: the previous model's fit)."""
    candidates = []
    for interaction in interactions:
        if interaction.part == name and interaction.moved:
            data = driven_motion(interaction, articulation, T_world_base)
            if data is not None:
                candidates.append(data)
    if not candidates:
        return None
    initial = None
    if previous is not None:
        old = next((p for p in previous.parts if p.name == name), None)
        if old is not None and old.dynamics is not None and old.articulation.kind == articulation.kind:
            initial = dict(old.dynamics.values)
    return fit_driven(candidates, initial=initial, prior=prior)


def track_pose(position: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    """4x4 pose from a position and a wxyz quaternion."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(np.asarray(quaternion)[[1, 2, 3, 0]]).as_matrix()
    T[:3, 3] = position
    return T
