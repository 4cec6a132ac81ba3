"""Where the puzzle is in the robot's world: calibrated camera poses and the base marker.

Part tracks are relative to the base (`tracker.py`), which is all model building needs; to
reach a handle the arm needs it in its own frame. A fixed camera whose extrinsics were
calibrated against the robot (hand-eye calibration: `puzzlebot-camera-calib`) gives the
base marker's world pose, ``T_world_base = T_world_cam @ T_cam_base``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import mujoco
import numpy as np

from puzzlebot.agent.perception.markers import MarkerObservation
from puzzlebot.sim.build import DEFAULT_CAMERAS, CameraSpec, add_cameras, new_scene
from puzzlebot.sim.frames import quat_from_matrix
from puzzlebot.sim.markers import BASE_FRONT_ID

# OpenCV's camera frame (x right, y down, z forward) from MuJoCo's (x right, y up, z back).
_CV_FROM_MJ = np.diag([1.0, -1.0, -1.0])


def camera_poses(names: Iterable[str], cameras: Sequence[CameraSpec] = DEFAULT_CAMERAS) -> dict[str, np.ndarray]:
    """World pose (4x4, OpenCV camera convention) of each named camera as mounted.

    The emulator's cameras stand where `cameras` puts them; on hardware these come from a
    hand-eye calibration instead.
    """
    wanted = list(names)
    known = {c.name: c for c in cameras}
    missing = [n for n in wanted if n not in known]
    if missing:
        raise ValueError(f"no calibration for camera {missing[0]!r}; known: {sorted(known)}")
    scene = new_scene()
    add_cameras(scene, tuple(known[n] for n in wanted))
    model = scene.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    poses = {}
    for name in wanted:
        cam = model.camera(name).id
        T = np.eye(4)
        T[:3, :3] = data.cam_xmat[cam].reshape(3, 3) @ _CV_FROM_MJ
        T[:3, 3] = data.cam_xpos[cam]
        poses[name] = T
    return poses


def base_in_world(observations: Sequence[MarkerObservation], T_world_cam: dict[str, np.ndarray],
                  base_id: int = BASE_FRONT_ID) -> np.ndarray | None:
    """World pose of the base marker, averaged over the observations that show it (None if none do).

    Each observation is weighted by its apparent size (bigger markers give better poses).
    """
    poses, weights = [], []
    for obs in observations:
        if obs.id == base_id and obs.camera in T_world_cam:
            poses.append(T_world_cam[obs.camera] @ obs.T_cam_marker)
            weights.append(obs.side_px**2)
    if not poses:
        return None
    return average_pose(poses, np.asarray(weights))


def average_pose(poses: Sequence[np.ndarray], weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted mean of rigid poses (positions averaged, rotations by the sign-aligned quaternion mean)."""
    w = np.ones(len(poses)) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    quats = np.array([quat_from_matrix(T[:3, :3]) for T in poses])
    quats *= np.sign(quats @ quats[0])[:, None]
    q = (w[:, None] * quats).sum(axis=0)
    q /= np.linalg.norm(q)
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, q)
    T = np.eye(4)
    T[:3, :3] = mat.reshape(3, 3)
    T[:3, 3] = (w[:, None] * np.array([T_[:3, 3] for T_ in poses])).sum(axis=0)
    return T
