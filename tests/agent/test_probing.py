"""Probing parts of an emulated lockbox (lockstep) through the driver, judged by ground truth.

The agent side sees only the marker sheet, camera frames and the arm's state (wrench
included); the checks compare with the puzzle's true geometry and the true lock.
"""

import numpy as np
import pytest

from puzzlebot.agent.affordances import marker_sheet
from puzzlebot.agent.perception.privileged import site_pose
from puzzlebot.agent.perception.registration import camera_poses
from puzzlebot.agent.probing import Prober, RobotIO
from puzzlebot.real.driver import Driver
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig
from puzzlebot.real.safety import SafetyConfig
from puzzlebot.sim.robots.gripper import GripperController
from puzzlebot.sim.spec import load_spec
from puzzlebot.sim.world import PuzzleWorld, WorldConfig
from tests.agent.test_affordances import PUZZLES

CAMERAS = ("closeup",)


@pytest.mark.slow
def test_locked_drawer_holds_until_its_bolt_is_slid() -> None:
    spec = load_spec(next(p for p in PUZZLES if p.stem == "bolt_drawer"))
    truth = PuzzleWorld(spec, WorldConfig(robot="gripper"))  # ground truth for the checks only
    emulator = EmulatorBackend(EmulatorConfig(puzzle=spec, robot="gripper", seed=5, cameras=CAMERAS,
                                              image_size=(480, 640), realtime=False, lockstep=True))
    with Driver(emulator, SafetyConfig(), clock=emulator.clock) as driver:
        driver.activate()
        cameras = [emulator.camera(name) for name in CAMERAS]
        for camera in cameras:
            camera.connect()
        io = RobotIO(driver, cameras, marker_sheet(spec), camera_poses(CAMERAS))
        io.hold(0.5)
        assert io.T_world_base is not None
        base_error = np.linalg.norm(io.T_world_base[:3, 3] - site_pose(truth, "base_front/marker")[:3, 3])
        assert base_error < 0.008
        prober = Prober(io, GripperController.hand)

        locked = prober.probe("drawer")
        assert not locked.moved and locked.travel < 0.005
        assert len(locked.tried) == 5  # every direction was tried, none gave

        bolt = prober.probe("bolt")
        assert bolt.moved
        bolt_axis = truth.model.jnt_axis[truth.model.joint(truth.joint_name("bolt")).id]
        motion = bolt.handle_end - bolt.handle_start
        assert np.linalg.norm(motion) > 0.03  # past the 2 cm it locks over, to its stop (4.5 cm)
        assert np.degrees(np.arccos(abs(motion @ bolt_axis) / np.linalg.norm(motion))) < 10.0
        wrenches = np.array(bolt.wrenches)
        assert wrenches.shape[1] == 6 and np.all(np.isfinite(wrenches))

        opened = prober.probe("drawer")
        assert opened.moved and opened.travel > 0.08  # the drawer's range is 12 cm
        assert len(opened.times) > 50  # the followed motion was recorded for model building
