"""A whole model-building session through the lockstep emulator, scored against the hidden truth."""

import json

import mujoco
import numpy as np
import pytest

from puzzlebot.agent.affordances import marker_sheet
from puzzlebot.agent.explorer import ExplorerConfig
from puzzlebot.agent.fitted_model import FittedModel
from puzzlebot.agent.model_building import part_articulation
from puzzlebot.agent.perception.tracker import PartTrack
from puzzlebot.agent.probing import Interaction
from puzzlebot.agent.scoring import graph_f1, score_model, true_joints, true_lock_graph
from puzzlebot.agent.session import SessionConfig, run_session
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig
from puzzlebot.sim.spec import load_spec
from tests.agent.test_affordances import PUZZLES


@pytest.mark.slow
def test_bolt_drawer_model_from_interaction(tmp_path) -> None:
    spec = load_spec(next(p for p in PUZZLES if p.stem == "bolt_drawer"))
    emulator = EmulatorBackend(EmulatorConfig(puzzle=spec, robot="gripper", seed=11, cameras=("closeup",),
                                              image_size=(480, 640), realtime=False, lockstep=True))
    result = run_session(emulator, marker_sheet(spec), tmp_path,
                         SessionConfig(explorer=ExplorerConfig(max_probes=20), cameras=("closeup",),
                                       record_episode=False))
    exploration = result.exploration
    assert graph_f1(exploration.result.graph, true_lock_graph(spec))["exact"]
    assert exploration.result.confident or exploration.result.exhausted  # stopped by a rule, not the budget
    assert exploration.probes < 20
    opened = {i.part for i in exploration.interactions if i.moved and i.direction == "open"}
    assert opened == {"bolt", "drawer"}  # the second phase opened the drawer once the bolt was known
    rows = {row["part"]: row for row in score_model(result.model, true_joints(spec, result.gap))}
    for part in ("bolt", "drawer"):
        assert rows[part]["kind_correct"], rows[part]
        assert rows[part]["axis_error_deg"] < 2.0, rows[part]
    # A held handle's dynamics are well identified; a side-pushed bolt's are not yet (the
    # fingertip slides on the knob: 4-42 % friction error over seeds, see the issue notes).
    assert rows["drawer"]["friction_rel_error"] < 0.15, rows["drawer"]
    # the run folder: a model MuJoCo loads, its posterior and lock graph, and the probe log
    model = mujoco.MjModel.from_xml_path(str(tmp_path / "fitted_model.xml"))
    assert model.njnt == 2
    loaded = FittedModel.load(tmp_path)
    assert loaded.blockers("drawer") == ["bolt"]
    drawer = loaded.part("drawer")
    assert drawer.dynamics is not None and np.all(np.isfinite(drawer.dynamics.log_covariance))
    log = json.loads((tmp_path / "exploration.json").read_text())
    assert log["probes"] == exploration.probes and log["lock_graph"]["drawer"] == ["bolt"]


def test_a_part_no_probe_opened_is_fixed_whatever_its_track() -> None:
    """Poses of a still marker half hidden by a pushing hand wobble by degrees: fitted as a joint,
    a locked bolt came out a hinge turning 45 deg."""
    rng = np.random.default_rng(0)
    track = PartTrack("bolt", 3)
    for k in range(60):  # turned back and forth about one axis, as an ambiguous marker pose flips
        track.times.append(0.05 * k)
        track.positions.append(rng.normal(0, 0.002, 3))
        angle = np.deg2rad(10) * np.sin(k / 3)
        track.quaternions.append(np.array([np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0]))
    failed = Interaction("bolt", "push", "open", moved=False)
    assert part_articulation("bolt", [failed], track, np.eye(4)).kind == "fixed"


def test_a_pressed_buttons_short_stroke_is_a_slide_along_the_press() -> None:
    """A fingertip pressing a cap 8 mm in, with the emulated arm's sensor noise (0.5 mm): a slide along the
    press, not a still part (at a grasp's 2 mm of play, the stroke scored "fixed")."""
    rng = np.random.default_rng(1)
    press = np.array([0.6, 0.0, -0.8])
    stroke = np.concatenate([np.linspace(0.0, 0.008, 40), np.full(20, 0.008)])  # in, then held at the stop
    points = np.array([0.3, 0.1, 0.2]) + stroke[:, None] * press + rng.normal(0, 0.0005, (60, 3))
    pressed = Interaction("button", "push", "open", moved=True, contact="press")
    for k, point in enumerate(points):
        pressed.times.append(0.02 * k)
        pressed.tcp_positions.append(point)
    articulation = part_articulation("button", [pressed], PartTrack("button", 4), np.eye(4))
    assert articulation.kind == "prismatic"
    assert np.degrees(np.arccos(abs(articulation.axis @ press))) < 3.0
    assert articulation.observed_range[1] - articulation.observed_range[0] == pytest.approx(0.008, abs=0.003)


def _held_pull(part: str, points: np.ndarray) -> Interaction:
    pull = Interaction(part, "grasp", "open", moved=True, contact="grasp")
    for k, point in enumerate(points):
        pull.times.append(10.0 + 0.02 * k)
        pull.tcp_positions.append(point)
    return pull


def _marker_seen(track: PartTrack, times, angle_of) -> None:
    rng = np.random.default_rng(3)
    for t in times:
        angle = angle_of(t) + rng.normal(0, np.deg2rad(1.0))
        track.times.append(t)
        track.positions.append(np.zeros(3))
        track.quaternions.append(np.array([np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)]))


def test_a_bowed_pull_whose_marker_did_not_turn_is_a_slide() -> None:
    """A stiff drawer's 5.4 cm pull bowed 3.4 mm in the fingers: on the path alone an arc (a hinge
    turning half a radian), but the drawer's marker, seen before and after, did not turn."""
    rng = np.random.default_rng(2)
    radius, chord = 0.11, 0.054
    half = np.arcsin(chord / 2 / radius)
    angles = np.linspace(-half, half, 130)
    points = np.stack([np.zeros_like(angles), radius * np.cos(angles) - radius * np.cos(half),
                       radius * np.sin(angles)], axis=1) + rng.normal(0, 0.0001, (130, 3))
    pull = _held_pull("drawer", points)
    blind = part_articulation("drawer", [pull], PartTrack("drawer", 2), np.eye(4))
    assert blind.kind == "revolute"  # what the path alone says
    track = PartTrack("drawer", 2)
    _marker_seen(track, [*np.arange(5.0, 9.0, 0.5), *np.arange(14.0, 17.0, 0.5)], lambda t: 0.0)
    seen = part_articulation("drawer", [pull], track, np.eye(4))
    assert seen.kind == "prismatic"
    assert np.degrees(np.arccos(abs(seen.axis @ np.array([0.0, 0.0, 1.0])))) < 5.0
    assert np.ptp(seen.coordinates) == pytest.approx(chord, abs=0.004)


def test_a_door_whose_marker_turned_with_the_hand_stays_a_hinge() -> None:
    """The same check leaves a real hinge alone: its marker turns with the arc the hand swept."""
    radius, turn = 0.25, 0.6
    angles = np.linspace(0.0, turn, 130)
    points = np.stack([radius * np.sin(angles), radius * (1 - np.cos(angles)), np.zeros_like(angles)], axis=1)
    pull = _held_pull("door", points + np.random.default_rng(4).normal(0, 0.0003, (130, 3)))
    track = PartTrack("door", 2)
    _marker_seen(track, [*np.arange(5.0, 9.0, 0.5), *np.arange(14.0, 17.0, 0.5)], lambda t: turn if t > 12 else 0.0)
    articulation = part_articulation("door", [pull], track, np.eye(4))
    assert articulation.kind == "revolute"
    assert abs(abs(articulation.axis[2]) - 1.0) < 0.01
    assert np.ptp(articulation.coordinates) == pytest.approx(turn, abs=0.03)


def test_a_lid_that_fell_shut_again_stays_a_hinge() -> None:
    """A lid seen open while it was lifted and shut once let go: the turn seen on the way counts."""
    radius, turn = 0.1, 0.9
    angles = np.linspace(0.0, turn, 130)
    points = np.stack([radius * np.sin(angles), np.zeros_like(angles), radius * (1 - np.cos(angles))], axis=1)
    lift = _held_pull("lid", points + np.random.default_rng(5).normal(0, 0.0003, (130, 3)))
    track = PartTrack("lid", 2)
    _marker_seen(track, [*np.arange(5.0, 9.0, 0.5), *np.arange(10.0, 12.6, 0.2), *np.arange(14.0, 17.0, 0.5)],
                 lambda t: (t - 10.0) / 2.6 * turn if 10.0 <= t < 12.6 else 0.0)
    assert part_articulation("lid", [lift], track, np.eye(4)).kind == "revolute"


def test_a_knob_seen_turned_without_a_felt_push_is_fitted_from_its_marker() -> None:
    """The hand pushed a knob's crank every way and felt none give, but the cameras saw it turned
    once the hand was away: the open keeps no hand record, and the marker's track is the joint's."""
    rng = np.random.default_rng(7)
    turn, radius = 0.8, 0.03
    track = PartTrack("knob", 3)
    for t in np.arange(0.0, 20.0, 0.25):
        angle = turn * min(max((t - 8.0) / 4.0, 0.0), 1.0) + rng.normal(0, np.deg2rad(1.0))
        crank = np.array([0.0, radius * np.cos(angle), radius * np.sin(angle)]) + rng.normal(0, 0.0005, 3)
        track.times.append(t)
        track.positions.append(crank)  # a marker off the axis, turning with the dial about x
        track.quaternions.append(np.array([np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0]))
    seen_open = Interaction("knob", "push", "open", moved=True, contact="side")  # judged by the cameras: no samples
    articulation = part_articulation("knob", [seen_open], track, np.eye(4))
    assert articulation.kind == "revolute"
    assert np.degrees(np.arccos(abs(articulation.axis[0]))) < 3.0
    assert np.ptp(articulation.coordinates) == pytest.approx(turn, abs=0.08)
