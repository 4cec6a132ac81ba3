"""The hand's pose against a handle: pitched clear of the table under a low handle, as it was above a high one."""

import mujoco
import numpy as np

from puzzlebot.agent.probing import clear_table
from puzzlebot.sim.frames import tool_quat
from puzzlebot.sim.robots.gripper import GripperController

ENVELOPE = np.array(GripperController.hand.envelope)
APPROACH = np.array([1.0, 0.0, 0.0])  # the puzzle's front face, from the robot
FLOOR = 0.008  # table top plus clearance


def _matrix(quat: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


def _lowest(pos: np.ndarray, quat: np.ndarray) -> float:
    return float(np.min((pos + ENVELOPE @ _matrix(quat).T)[:, 2]))


def test_under_a_low_handle_the_hand_pitches_up_about_it_until_it_clears_the_table() -> None:
    # pushing a knob 4.5 cm above the table upwards with the fingers' edge, the palm level
    handle = np.array([-0.18, 0.0, 0.045])
    pos, quat = handle - np.array([0.0, 0.0, 0.022]), tool_quat(APPROACH, np.array([0.0, 1.0, 0.0]))
    assert _lowest(pos, quat) < 0.0  # as posed, the wrist is in the table
    new_pos, new_quat = clear_table(pos, quat, handle, APPROACH, ENVELOPE, FLOOR, max_tilt_deg=40.0)
    assert _lowest(new_pos, new_quat) >= FLOOR
    # the spot on the hand that touches the handle stays on it
    spot_in_tool = _matrix(quat).T @ (handle - pos)
    assert np.linalg.norm(new_pos + _matrix(new_quat) @ spot_in_tool - handle) < 1e-9
    tilt = np.degrees(np.arccos(_matrix(new_quat)[:, 2] @ APPROACH))
    assert 0.0 < tilt <= 40.0


def test_a_high_handle_keeps_the_pose() -> None:
    handle = np.array([-0.18, 0.0, 0.25])
    pos, quat = handle.copy(), tool_quat(APPROACH, np.array([0.0, 0.0, 1.0]))
    new_pos, new_quat = clear_table(pos, quat, handle, APPROACH, ENVELOPE, FLOOR, max_tilt_deg=40.0)
    assert np.array_equal(new_pos, pos) and np.array_equal(new_quat, quat)
