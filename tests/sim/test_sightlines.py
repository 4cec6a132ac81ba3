"""Sight lines and reach corridors: the ray checks agree with what a rendered camera detects.

The three fixtures in `data/` were generated before the checks existed; each was unplayable
in a benchmark run (a marker the tracker never saw, a press the fingers could not reach).
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
    assert [o.part for o in obstructions(spec) if o.what == "marker"] == [marker]
    detected = _detected_ids(spec)
    assert ids[marker] not in detected
    assert set(ids.values()) - {ids[marker]} <= detected  # the others are seen: the check is not blanket


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_every_marker_of_a_generated_puzzle_is_detected(depth):
    spec = generate(GeneratorConfig(depth=depth, seed=depth))
    assert obstructions(spec) == []
    expected = {p.marker_id for p in spec.parts} | {BASE_FRONT_ID, BASE_TOP_ID}
    assert expected <= _detected_ids(spec)
