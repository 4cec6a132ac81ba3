"""Where a part stands, by the agent's own estimate: how far it is open, and whether it went
back on its own (knocked by another part's probe). Read from the markers once the hand is
away; the hand's path where the cameras have nothing fresh."""

from __future__ import annotations

import numpy as np

from puzzlebot.agent.articulation import infer_articulation
from puzzlebot.agent.locks import OPEN
from puzzlebot.agent.model_building import part_articulation
from puzzlebot.agent.probing import Interaction, Prober


def opening(prober: Prober, interactions: list[Interaction], part: str) -> float:
    """How far `part` is open by the agent's estimate (m or rad from its start; 0 if never opened).

    The joint is fitted to the hand's path; where the part stands now is read from its marker
    once the hand is away (the turn of a door's marker about the fitted axis, a drawer's
    marker's travel along it), since a hand that slid along a door face went on round the arc
    without it (1.95 rad believed, 1.10 true). Without a fresh view, the hand's path says.
    """
    io = prober.io
    if io.T_world_base is None:
        return 0.0
    track = io.tracker.tracks[part]
    articulation = part_articulation(part, interactions, track, io.T_world_base)
    if articulation.kind == "fixed" or len(articulation.coordinates) < 2:
        return 0.0
    by_hand = float(abs(articulation.coordinates[-1] - articulation.coordinates[0]))
    ended = max((i.times[-1] for i in interactions if i.part == part and i.times), default=None)
    if ended is None or not track.times or track.times[-1] <= ended or len(track.times) < 2:
        return by_hand
    if articulation.kind == "prismatic":
        return float(abs((track.positions[-1] - track.positions[0]) @ articulation.axis))
    return _turn_about(track.quaternions[0], track.quaternions[-1], articulation.axis)


def slid_back(prober: Prober, interactions: list[Interaction], part: str) -> bool:
    """Whether a part opened by a side push or a grasp is seen, with the hand away, to have gone
    back a good part of the way it opened: its marker's opening now is short of the furthest
    it was seen at (a running median over `SLID_BACK_WINDOW` sightings) by `SLID_BACK` of that
    and by more than the markers' noise. Both are the markers' word: a hand that slid along a
    door face went on round the arc without it.

    In the emulator a door tugged and brought back knocks the bolt that locked it 13 mm back of
    its 46, and a bolt opened 35 mm locked the door again: the lock abstraction's "an open part
    stays open" is the puzzle's to break, and the cameras see it. A press is left out: a cap's
    travel is along the cameras' line of sight, their noisiest."""
    io = prober.io
    mine = [i for i in interactions if i.part == part and i.direction == OPEN and i.moved and i.times]
    if io.T_world_base is None or not mine or all(i.contact == "press" for i in mine):
        return False
    track = io.tracker.tracks[part]
    last_probe = max(i.times[-1] for i in interactions if i.times)
    if len(track.times) < SLID_BACK_WINDOW or track.times[-1] <= last_probe:
        return False  # not seen since the last probe (of any part) ended
    articulation = part_articulation(part, interactions, track, io.T_world_base)
    if articulation.kind == "fixed":
        return False
    seen = _seen_openings(track, articulation)
    fresh = seen[np.asarray(track.times) > last_probe]
    now = float(np.median(fresh[-SLID_BACK_WINDOW:]))
    furthest = _furthest(seen)
    return now < furthest - max(SLID_BACK_NOISE[articulation.kind], SLID_BACK * furthest)


def furthest_opening(prober: Prober, interactions: list[Interaction], part: str) -> float | None:
    """The furthest the cameras have seen `part` open (m or rad; a running median over
    `SLID_BACK_WINDOW` sightings): where a knocked-back part is put back to. None if it has no
    fitted joint or too few sightings."""
    io = prober.io
    if io.T_world_base is None:
        return None
    track = io.tracker.tracks[part]
    if len(track.times) < SLID_BACK_WINDOW:
        return None
    articulation = part_articulation(part, interactions, track, io.T_world_base)
    if articulation.kind == "fixed":
        return None
    return _furthest(_seen_openings(track, articulation))


def hinge_radius(prober: Prober, interactions: list[Interaction], part: str) -> float | None:
    """The radius a hand holding `part`'s handle goes round its hinge on: the median distance of
    the last grasp's path from the hinge the cameras see (the axis of its marker's turns). None
    if the cameras see no hinge turned `HINGE_RADIUS_MIN_TURN` or more, or no grasp turned it.

    Not a circle fitted to the hand's path: on a door's 0.46 rad first open its centre came out
    4 cm off (0.076 m for 0.110). Not the chord over the marker's turn either: a door let go of
    swings back a little (0.46 rad held, 0.35 seen at rest after), which read 0.143 m, and doors
    paced by it overshot by 8-11 mm. The marker's hinge put that hand 0.109 m from it.
    """
    io = prober.io
    held = [i for i in interactions if i.part == part and i.moved and i.contact == "grasp" and len(i.times) >= 2]
    if io.T_world_base is None or not held:
        return None
    _, positions, quaternions = io.tracker.tracks[part].arrays()
    if len(positions) < 3:
        return None
    seen = infer_articulation(positions, quaternions)
    if seen.kind != "revolute" or seen.observed_range[1] - seen.observed_range[0] < HINGE_RADIUS_MIN_TURN:
        return None
    R, t = io.T_world_base[:3, :3], io.T_world_base[:3, 3]
    axis, origin = R @ seen.axis, R @ seen.origin + t
    offsets = np.asarray(held[-1].tcp_positions) - origin
    offsets -= np.outer(offsets @ axis, axis)
    return float(np.median(np.linalg.norm(offsets, axis=1)))


HINGE_RADIUS_MIN_TURN = 0.15  # rad: under this the marker's turn is mostly its noise


def _seen_openings(track, articulation) -> np.ndarray:
    """The part's opening at each sighting of its marker, along (or about) the fitted axis."""
    _, positions, quaternions = track.arrays()
    if articulation.kind == "prismatic":
        return np.abs((positions - positions[0]) @ articulation.axis)
    return np.array([_turn_about(quaternions[0], q, articulation.axis) for q in quaternions])


def _furthest(seen: np.ndarray) -> float:
    window = np.lib.stride_tricks.sliding_window_view(seen, SLID_BACK_WINDOW)
    return float(np.max(np.median(window, axis=1)))


SLID_BACK = 0.25  # of a part's furthest opening
SLID_BACK_NOISE = {"prismatic": 0.006, "revolute": 0.15}  # m, rad: a marker's travel noise, and more
SLID_BACK_WINDOW = 5  # sightings in the running median (one flipped pose is not a part moving)


def _turn_about(q_from: np.ndarray, q_to: np.ndarray, axis: np.ndarray) -> float:
    """Angle (rad, >= 0) of the rotation from `q_from` to `q_to` (wxyz, same frame) about `axis`."""
    w1, v1 = q_from[0], np.asarray(q_from[1:])
    w2, v2 = q_to[0], np.asarray(q_to[1:])
    # relative rotation q_to * conj(q_from), swung-twist: its twist about the axis
    w = w2 * w1 + v2 @ v1
    v = -w2 * v1 + w1 * v2 - np.cross(v2, v1)
    return float(abs(2.0 * np.arctan2(v @ axis, w)))
