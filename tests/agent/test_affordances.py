"""The marker sheet puts each handle where the puzzle has it, and says nothing about motion."""

from pathlib import Path

import numpy as np
import pytest

from puzzlebot.agent.affordances import marker_sheet
from puzzlebot.agent.perception.privileged import site_pose
from puzzlebot.sim.spec import load_spec
from puzzlebot.sim.world import PuzzleWorld, WorldConfig

PUZZLES = sorted((Path(__file__).parents[2] / "puzzlebot" / "assets" / "puzzles").glob("*.yaml"))


@pytest.mark.parametrize("path", PUZZLES, ids=lambda p: p.stem)
def test_sheet_handle_lands_on_the_true_handle(path: Path) -> None:
    spec = load_spec(path)
    world = PuzzleWorld(spec, WorldConfig(robot="gripper"))
    sheet = marker_sheet(spec)
    assert set(sheet.affordances) == set(world.part_names)
    for part, aff in sheet.affordances.items():
        # ground truth only to check the sheet: the marker's true pose and the true handle site
        handle, approach, grip = aff.in_world(site_pose(world, f"{part}/marker"))
        true = site_pose(world, f"{part}/handle")
        np.testing.assert_allclose(handle, true[:3, 3], atol=1e-6)
        np.testing.assert_allclose(approach, true[:3, 2], atol=1e-6)
        if aff.mode == "grasp":
            np.testing.assert_allclose(grip, true[:3, 1], atol=1e-6)
        else:  # a push handle's printed frame would give its motion away: not on the sheet
            assert grip is None
        assert sheet.sizes[aff.marker_id] > 0.0
        # the orientation at rest as built, in base marker 0's frame (the tracker's frame)
        base = site_pose(world, "base_front/marker")[:3, :3]
        rest = base.T @ site_pose(world, f"{part}/marker")[:3, :3]
        np.testing.assert_allclose(sheet.rest_rotations[aff.marker_id], rest, atol=1e-6)
