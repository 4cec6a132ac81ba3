"""USB cameras through OpenCV, with intrinsics from a saved ChArUco calibration.

`OpenCVCamera` grabs frames on a background thread and keeps only the newest one with its
monotonic timestamp, so `read_latest(max_age)` never hands out a stale frame silently.
`calibrate_charuco` turns images of a ChArUco board into a versioned `CameraCalibration`
file (the `puzzlebot-camera-calib` command wraps it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from puzzlebot.files import write_text_atomic
from puzzlebot.real.interface import CameraBackend, CameraIntrinsics, Frame, NotConnectedError, StaleFrameError

CALIBRATION_SCHEMA = 1


@dataclass(frozen=True)
class CharucoBoardSpec:
    """The printed board: squares across and down, their side, the markers' side (m)."""

    squares_x: int = 7
    squares_y: int = 5
    square_length: float = 0.04
    marker_length: float = 0.03
    dictionary: int = cv2.aruco.DICT_4X4_50

    def board(self) -> cv2.aruco.CharucoBoard:
        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_length, self.marker_length,
                                      cv2.aruco.getPredefinedDictionary(self.dictionary))


@dataclass(frozen=True)
class CameraCalibration:
    camera: str
    width: int
    height: int
    matrix: tuple[tuple[float, ...], ...]
    distortion: tuple[float, ...]
    rms_px: float
    """Reprojection error of the calibration, pixels."""
    views: int
    schema_version: int = CALIBRATION_SCHEMA

    def intrinsics(self) -> CameraIntrinsics:
        return CameraIntrinsics(self.width, self.height, np.array(self.matrix), np.array(self.distortion))

    def save(self, path: str | Path) -> None:
        """Atomic YAML write."""
        path = Path(path)
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["matrix"] = [[float(v) for v in row] for row in self.matrix]
        data["distortion"] = [float(v) for v in self.distortion]
        data["rms_px"] = float(self.rms_px)
        write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> CameraCalibration:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: camera calibration not found; run puzzlebot-camera-calib") from None
        if not isinstance(data, dict) or data.get("schema_version") != CALIBRATION_SCHEMA:
            raise ValueError(f"{path}: not a camera calibration of schema {CALIBRATION_SCHEMA}")
        matrix = tuple(tuple(float(v) for v in row) for row in data["matrix"])
        if len(matrix) != 3 or any(len(row) != 3 for row in matrix):
            raise ValueError(f"{path}: matrix must be 3x3")
        return cls(camera=str(data["camera"]), width=int(data["width"]), height=int(data["height"]), matrix=matrix,
                   distortion=tuple(float(v) for v in data["distortion"]), rms_px=float(data["rms_px"]),
                   views=int(data["views"]))


def calibrate_charuco(images: Sequence[np.ndarray], board: CharucoBoardSpec, camera: str = "camera",
                      min_corners: int = 6) -> CameraCalibration:
    """Calibrate intrinsics from images of a ChArUco board (RGB or grey, all the same size).

    Raises:
        ValueError: fewer than 4 images show the board well enough to use.
    """
    if not images:
        raise ValueError("no images given")
    charuco = board.board()
    detector = cv2.aruco.CharucoDetector(charuco)
    height, width = images[0].shape[:2]
    object_points, image_points = [], []
    for image in images:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        corners, ids, _, _ = detector.detectBoard(grey)
        if ids is None or len(ids) < min_corners:
            continue
        obj, img = charuco.matchImagePoints(corners, ids)
        object_points.append(obj.astype(np.float32))
        image_points.append(img.astype(np.float32))
    if len(object_points) < 4:
        raise ValueError(f"only {len(object_points)} of {len(images)} images show at least {min_corners} board "
                         "corners; need 4 or more views at different angles")
    rms, matrix, distortion, _, _ = cv2.calibrateCamera(object_points, image_points, (width, height), None, None)
    return CameraCalibration(camera=camera, width=width, height=height,
                             matrix=tuple(tuple(float(v) for v in row) for row in matrix),
                             distortion=tuple(float(v) for v in distortion.ravel()), rms_px=float(rms),
                             views=len(object_points))


@dataclass(frozen=True)
class OpenCVCameraConfig:
    name: str = "usb0"
    device: int | str = 0
    """cv2.VideoCapture source: a device index or a path/URL."""
    calibration: str | None = None
    """Path of a CameraCalibration YAML (intrinsics); required to connect."""
    open_timeout_s: float = 3.0


class OpenCVCamera(CameraBackend):
    """A USB camera; the newest frame is kept with the monotonic time it was grabbed."""

    def __init__(self, config: OpenCVCameraConfig,
                 capture_factory: Callable[[int | str], Any] = cv2.VideoCapture):
        self.name = config.name
        self.config = config
        self._factory = capture_factory
        self._capture: Any = None
        self._calibration: CameraCalibration | None = None
        self._latest: Frame | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0

    @property
    def intrinsics(self) -> CameraIntrinsics:
        if self._calibration is None:
            raise NotConnectedError(f"camera {self.name!r}: connect() first (it loads the calibration)")
        return self._calibration.intrinsics()

    def connect(self) -> None:
        if self.config.calibration is None:
            raise ValueError(f"camera {self.name!r}: OpenCVCameraConfig.calibration is required (intrinsics)")
        self._calibration = CameraCalibration.load(self.config.calibration)
        self._capture = self._factory(self.config.device)
        if not self._capture.isOpened():
            raise NotConnectedError(f"camera {self.name!r}: cannot open device {self.config.device!r}")
        self._stop.clear()
        self._thread = threading.Thread(target=self._grab_loop, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.config.open_timeout_s
        while self._latest is None:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.disconnect()
                raise NotConnectedError(f"camera {self.name!r}: no frame within {self.config.open_timeout_s} s")
            time.sleep(0.005)
        frame = self._latest
        cal = self._calibration
        if frame.image.shape[:2] != (cal.height, cal.width):
            size = f"{frame.image.shape[1]}x{frame.image.shape[0]}"
            self.disconnect()
            raise ValueError(f"camera {self.name!r}: frames are {size}, calibration is for {cal.width}x{cal.height}")

    def _grab_loop(self) -> None:
        while not self._stop.is_set():
            ok, bgr = self._capture.read()
            stamp = time.monotonic()
            if not ok:
                time.sleep(0.002)
                continue
            self._seq += 1
            frame = Frame(self.name, self._seq, stamp, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            with self._lock:
                self._latest = frame

    def read_latest(self, max_age: float) -> Frame:
        if self._thread is None:
            raise NotConnectedError(f"camera {self.name!r} is not connected")
        with self._lock:
            frame = self._latest
        age = time.monotonic() - frame.t
        if age > max_age:
            raise StaleFrameError(f"camera {self.name!r}: newest frame is {age * 1000:.0f} ms old "
                                  f"(max {max_age * 1000:.0f} ms)")
        return frame

    def disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None
