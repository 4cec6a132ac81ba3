"""Sight lines and reach corridors: the ray checks agree with what a rendered camera detects.

The fixtures in `data/` were made before the checks existed; each was unplayable in a
benchmark run (a marker the tracker never saw, a press the fingers could not reach, a marker
half covered once a bolt opened).
"""

from pathlib import Path

import cv2
import mujoco
import pytest

import puzzlebot.sim.validate as validate_module
from puzzlebot.sim.generator import GeneratorConfig, generate
from puzzlebot.sim.markers import BASE_FRONT_ID, BASE_TOP_ID
from puzzlebot.sim.sightlines import obstructions
from puzzlebot.sim.spec import PuzzleSpec, SpecError, load_spec
from puzzlebot.sim.world import PuzzleWorld

DATA = Path(__file__).parent / "data"


def _unchecked(name: str, monkeypatch) -> PuzzleSpec:
    """A fixture loaded with every check but the sight lines (markers get their ids)."""
    with monkeypatch.context() as patch:
        patch.setattr(validate_module, "_check_sightlines", lambda spec: None)
        return load_spec(DATA / f"{name}.yaml")


def _detected_ids(spec: PuzzleSpec, cameras=("closeup", "top")) -> set[int]:
    world = PuzzleWorld(spec)
    renderer = mujoco.Renderer(world.model, 480, 640)
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50),
                                       cv2.aruco.DetectorParameters())
    found: set[int] = set()
    try:
        for cam in cameras:
            renderer.update_scene(world.data, camera=cam)
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            gray = cv2.cvtColor(renderer.render(), cv2.COLOR_RGB2GRAY)
            _, ids, _ = detector.detectMarkers(gray)
            found |= set() if ids is None else {int(i) for i in ids.ravel()}
    finally:
        renderer.close()
    return found


@pytest.mark.parametrize("name, field, words", [
    ("hidden_drawer_marker", "puzzle.parts[0]", ["'drawer''s marker", "lock/knob/drawer/pin"]),
    ("base_marker_out_of_frame", "puzzle.base", ["'base_front''s marker", "out of frame"]),
    ("rod_across_button", "puzzle.parts[3]", ["'button''s handle is blocked", "'bolt' open"]),
    ("rod_over_drawer_marker", "puzzle.parts[0]", ["'drawer''s marker", "bolt/rod", "'bolt' open"]),
    # a bolt slid to the end of its slot stands with its rod flush with the button's face: the
    # finger pressed the rod (the corridor up to the face is clear; the press goes 12 mm further)
    ("rod_flush_with_button", "puzzle.parts[1]", ["'button''s handle is blocked", "bolt/rod", "'bolt' open"]),
])
def test_unplayable_puzzle_is_rejected_naming_the_part_and_the_cause(name, field, words):
    with pytest.raises(SpecError) as err:
        load_spec(DATA / f"{name}.yaml")
    assert err.value.field_path == field
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("name, marker", [("hidden_drawer_marker", "drawer"),
                                          ("base_marker_out_of_frame", "base_front")])
def test_a_marker_called_unseen_is_not_detected_in_the_rendered_images(name, marker, monkeypatch):
    spec = _unchecked(name, monkeypatch)
    ids = {p.name: p.marker_id for p in spec.parts} | {"base_front": BASE_FRONT_ID, "base_top": BASE_TOP_ID}
    closed = [o.part for o in obstructions(spec) if o.what == "marker" and o.pose == "every part closed"]
    assert closed == [marker]
    detected = _detected_ids(spec)
    assert ids[marker] not in detected
    assert set(ids.values()) - {ids[marker]} <= detected  # the others are seen: the check is not blanket


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_every_marker_of_a_generated_puzzle_is_detected(depth):
    spec = generate(GeneratorConfig(depth=depth, seed=depth))
    assert obstructions(spec) == []
    expected = {p.marker_id for p in spec.parts} | {BASE_FRONT_ID, BASE_TOP_ID}
    assert expected <= _detected_ids(spec)


def test_a_part_where_the_fingers_go_to_push_a_knob_leaves_no_room_to_push_it():
    import numpy as np

    from puzzlebot.sim import sightlines
    from puzzlebot.sim.build import lay_out, puzzle_scene

    spec = load_spec(DATA / "push_room.yaml")  # playable: the button is 5 cm along from the knob
    handle = lay_out(spec).layouts["bolt"].handle
    model = puzzle_scene(spec).compile()
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    push = sightlines._side_push(model, data, "bolt", handle.approach, span=0.045)
    np.testing.assert_allclose(push, [0.0, -1.0, 0.0], atol=1e-4)  # the knob opens towards -y: pushed from +y
    assert sightlines._push_room_hit(model, data, "bolt", handle.approach, push, handle.radius) is None
    # the button's cap moved to 3 cm beside the knob, on the side the push comes from
    knob = data.site_xpos[model.site("bolt/handle").id]
    cap = data.geom_xpos[model.geom("button/cap").id]
    model.body("button").pos += knob + np.array([0.0, 0.03, 0.0]) - cap
    mujoco.mj_kinematics(model, data)
    assert sightlines._push_room_hit(model, data, "bolt", handle.approach, push, handle.radius).startswith("button/")
    # the approach and the knob's own pull along it are not side pushes
    assert sightlines._side_push(model, data, "drawer", lay_out(spec).layouts["drawer"].handle.approach, 0.12) is None
