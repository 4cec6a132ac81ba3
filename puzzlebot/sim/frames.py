"""Small rotation helpers shared by the compiler, the robots and the skills (MuJoCo's wxyz quaternions)."""

from __future__ import annotations

import mujoco
import numpy as np


def quat_from_matrix(mat: np.ndarray) -> np.ndarray:
    """Quaternion (wxyz) of a 3x3 rotation matrix whose columns are the frame's axes."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(mat, dtype=float).reshape(-1))
    return quat


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, a, b)
    return out


def tool_quat(approach: np.ndarray, grip_axis: np.ndarray) -> np.ndarray:
    """Quaternion of a tool frame with +z = approach and +y = grip axis (robots/base.py's convention)."""
    z = approach / np.linalg.norm(approach)
    y = grip_axis - (grip_axis @ z) * z
    y /= np.linalg.norm(y)
    return quat_from_matrix(np.column_stack([np.cross(y, z), y, z]))
