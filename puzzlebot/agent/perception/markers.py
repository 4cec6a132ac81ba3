"""ArUco detection and marker pose by PnP: camera image -> `MarkerObservation`s.

Poses come from OpenCV's `solvePnP` with `SOLVEPNP_IPPE_SQUARE` (both of IPPE's solutions are
scored, the better one is refined with Levenberg-Marquardt) on corners refined to sub-pixel
accuracy: without refinement the corners sit ~0.7 px inside the black square, a 2 % scale
(depth) error on a 60 px marker. The marker frame is the one `sim.build` puts the
``<name>/marker`` site in: x = image right, y = image up, z = out of the face, origin at the
plate's outer face centre; ArUco's corner order (top-left, top-right, bottom-right,
bottom-left) is IPPE_SQUARE's object point order in that frame (checked by rendering).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from puzzlebot.real.interface import CameraIntrinsics, Frame
from puzzlebot.sim import markers as sim_markers
from puzzlebot.sim.build import lay_out
from puzzlebot.sim.spec import PuzzleSpec

BASE_PLATE_SIDE = sim_markers.BASE_PLATE_SIDE
"""Outer side (m) of the base's two marker plates, as printed by `sim.build.add_puzzle`."""


@dataclass(frozen=True)
class MarkerObservation:
    """One marker seen in one image, with its pose in the (OpenCV) camera frame."""

    id: int
    t: float
    camera: str
    T_cam_marker: np.ndarray  # 4x4; OpenCV camera frame: x right, y down, z forward
    corners_px: np.ndarray  # (4, 2): top-left, top-right, bottom-right, bottom-left
    reprojection_error_px: float  # RMS over the four corners
    alternative: np.ndarray | None = None
    """4x4: IPPE's other solution (the marker tilted the other way about the line of sight) when it
    also fits the corners within the reprojection limit. A small marker seen face-on fits both
    about equally, and image noise can pick the wrong one frame after frame; the tracker keeps
    whichever agrees with the part's track."""

    @property
    def side_px(self) -> float:
        """Shortest side of the detected quadrilateral: how well the marker is resolved."""
        edges = self.corners_px - np.roll(self.corners_px, -1, axis=0)
        return float(np.min(np.linalg.norm(edges, axis=1)))


@dataclass(frozen=True)
class DetectorConfig:
    """Acceptance thresholds of `MarkerDetector`."""

    max_reprojection_error_px: float = 1.0
    """RMS corner error above which a pose is dropped (a torn or partly hidden marker)."""
    min_side_px: float = 12.0
    """Markers whose shortest side is shorter give poses too noisy to track (4x4 bits + border)."""
    adaptive_thresh_constant: float = 15.0
    """OpenCV's default (7) loses markers whose quiet zone a grey part crosses (a bolt's lock pin)."""


def intrinsics_from_fovy(width: int, height: int, fovy_deg: float) -> CameraIntrinsics:
    """Pinhole intrinsics of a MuJoCo camera (square pixels, vertical field of view `fovy_deg`).

    The principal point is the image centre in OpenCV's convention (pixel centres at integers),
    ((W - 1) / 2, (H - 1) / 2); `real.emulator.EmulatorCamera` uses (W / 2, H / 2), half a pixel off.
    """
    focal = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2.0)
    matrix = np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    return CameraIntrinsics(width, height, matrix)


def marker_sizes(spec: PuzzleSpec) -> dict[int, float]:
    """Black-square side (m) of every marker on a puzzle: the printed marker sheet, nothing else.

    Args:
        spec: a validated puzzle (its parts have marker ids).
    """
    sizes = {sim_markers.BASE_FRONT_ID: sim_markers.black_square_side(BASE_PLATE_SIDE),
             sim_markers.BASE_TOP_ID: sim_markers.black_square_side(BASE_PLATE_SIDE)}
    for name, lay in lay_out(spec).layouts.items():
        marker_id = lay.part.marker_id
        if marker_id is None:
            raise ValueError(f"part {name!r} has no marker id: validate the spec first")
        sizes[marker_id] = sim_markers.black_square_side(lay.marker.size)
    return sizes


def _square_points(side: float) -> np.ndarray:
    h = side / 2.0
    return np.array([[-h, h, 0.0], [h, h, 0.0], [h, -h, 0.0], [-h, -h, 0.0]])


def _pose_matrix(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rvec, dtype=float))[0]
    T[:3, 3] = np.asarray(tvec, dtype=float).ravel()
    return T


class MarkerDetector:
    """Finds ArUco markers of known size in one camera's images and estimates their poses."""

    def __init__(self, dictionary: int, marker_sizes: Mapping[int, float], intrinsics: CameraIntrinsics,
                 camera: str = "camera", config: DetectorConfig = DetectorConfig()):
        """Args:
            dictionary: an OpenCV predefined dictionary, e.g. `cv2.aruco.DICT_4X4_50`.
            marker_sizes: marker id -> black-square side (m); ids not listed are ignored
                (without a size there is no metric pose).
            intrinsics: the camera's pinhole model and distortion.
            camera: name stamped on every observation.
            config: acceptance thresholds.
        """
        self.marker_sizes = dict(marker_sizes)
        self.intrinsics = intrinsics
        self.camera = camera
        self.config = config
        params = cv2.aruco.DetectorParameters()
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        params.adaptiveThreshConstant = config.adaptive_thresh_constant
        self._detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(dictionary), params)
        self._K = np.asarray(intrinsics.matrix, dtype=float)
        self._dist = np.asarray(intrinsics.distortion, dtype=float)
        self.rejected: dict[str, int] = {"unknown_id": 0, "too_small": 0, "reprojection": 0}
        """Running counts of detections dropped, by reason."""

    def detect_frame(self, frame: Frame) -> list[MarkerObservation]:
        """`detect` on a `Frame` from a camera backend."""
        return self.detect(frame.image, frame.t)

    def detect(self, image: np.ndarray, t: float) -> list[MarkerObservation]:
        """Markers in an RGB (H, W, 3) or grey (H, W) uint8 image taken at time `t`."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        corners, ids, _ = self._detector.detectMarkers(gray)
        if ids is None:
            return []
        out = []
        for quad, marker_id in zip(corners, ids.ravel().tolist(), strict=True):
            obs = self._observe(int(marker_id), quad.reshape(4, 2).astype(float), t)
            if obs is not None:
                out.append(obs)
        return out

    def _observe(self, marker_id: int, corners: np.ndarray, t: float) -> MarkerObservation | None:
        side = self.marker_sizes.get(marker_id)
        if side is None:
            self.rejected["unknown_id"] += 1
            return None
        edges = np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)
        if edges.min() < self.config.min_side_px:
            self.rejected["too_small"] += 1
            return None
        solutions = self._solve(_square_points(side), corners)
        if not solutions or solutions[0][0] > self.config.max_reprojection_error_px:
            self.rejected["reprojection"] += 1
            return None
        (error, pose), others = solutions[0], solutions[1:]
        alternative = next((T for e, T in others if e <= self.config.max_reprojection_error_px), None)
        return MarkerObservation(marker_id, t, self.camera, pose, corners, error, alternative)

    def _solve(self, object_points: np.ndarray, corners: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """IPPE's square solutions in front of the camera, LM-refined, best first: (RMS px error, T_cam_marker)."""
        _, rvecs, tvecs, _ = cv2.solvePnPGeneric(object_points, corners, self._K, self._dist,
                                                 flags=cv2.SOLVEPNP_IPPE_SQUARE)
        out = []
        for rvec, tvec in zip(rvecs, tvecs, strict=True):
            rvec, tvec = cv2.solvePnPRefineLM(object_points, corners, self._K, self._dist, rvec.copy(), tvec.copy())
            if tvec.ravel()[2] > 0:
                out.append((self._rms(object_points, corners, rvec, tvec), _pose_matrix(rvec, tvec)))
        return sorted(out, key=lambda solution: solution[0])

    def _rms(self, object_points: np.ndarray, corners: np.ndarray, rvec: np.ndarray, tvec: np.ndarray) -> float:
        projected, _ = cv2.projectPoints(object_points, rvec, tvec, self._K, self._dist)
        return float(np.sqrt(np.mean(np.sum((projected.reshape(4, 2) - corners) ** 2, axis=1))))
