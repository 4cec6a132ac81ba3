"""USB camera backend against a fake capture; ChArUco calibration recovers known intrinsics."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from puzzlebot.cli.camera_calib import main as calib_main
from puzzlebot.real.cameras import (
    CameraCalibration,
    CharucoBoardSpec,
    OpenCVCamera,
    OpenCVCameraConfig,
    calibrate_charuco,
)
from puzzlebot.real.interface import NotConnectedError, StaleFrameError

K_TRUE = np.array([[520.0, 0.0, 318.0], [0.0, 515.0, 242.0], [0.0, 0.0, 1.0]])
SIZE = (480, 640)


def _rotation(rx: float, ry: float) -> np.ndarray:
    return cv2.Rodrigues(np.array([rx, ry, 0.0]))[0]


def synthetic_views(spec: CharucoBoardSpec, n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Render the board seen by a pinhole camera K_TRUE from several poses (homography warps)."""
    rng = np.random.default_rng(seed)
    px_per_m = 4000.0
    board_w, board_h = spec.squares_x * spec.square_length, spec.squares_y * spec.square_length
    board_img = spec.board().generateImage((int(board_w * px_per_m), int(board_h * px_per_m)), marginSize=0)
    to_metres = np.array([[1 / px_per_m, 0, -board_w / 2], [0, 1 / px_per_m, -board_h / 2], [0, 0, 1]])
    views = []
    for _ in range(n):
        rot = _rotation(rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5))
        t = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04), rng.uniform(0.45, 0.6)])
        homography = K_TRUE @ np.column_stack([rot[:, 0], rot[:, 1], t]) @ to_metres
        grey = cv2.warpPerspective(board_img, homography, (SIZE[1], SIZE[0]), borderValue=255)
        views.append(np.repeat(grey[:, :, None], 3, axis=2))
    return views


def test_charuco_calibration_recovers_the_camera(tmp_path):
    spec = CharucoBoardSpec()
    calibration = calibrate_charuco(synthetic_views(spec, n=12), spec, camera="cam")
    matrix = np.array(calibration.matrix)
    assert calibration.rms_px < 1.0
    np.testing.assert_allclose(np.diag(matrix)[:2], np.diag(K_TRUE)[:2], rtol=0.02)  # focal lengths
    np.testing.assert_allclose(matrix[:2, 2], K_TRUE[:2, 2], atol=20.0)  # principal point, px
    calibration.save(tmp_path / "cam.yaml")
    assert CameraCalibration.load(tmp_path / "cam.yaml") == calibration


def test_calibration_command_from_images(tmp_path):
    spec = CharucoBoardSpec()
    shots = tmp_path / "shots"
    shots.mkdir()
    for i, image in enumerate(synthetic_views(spec, n=6, seed=1)):
        cv2.imwrite(str(shots / f"{i:02d}.png"), image)
    assert calib_main(["board", "-o", str(tmp_path / "board.png")]) == 0
    assert cv2.imread(str(tmp_path / "board.png")) is not None
    assert calib_main(["calibrate", "--images", str(shots), "-o", str(tmp_path / "cam.yaml")]) == 0
    fx = CameraCalibration.load(tmp_path / "cam.yaml").matrix[0][0]
    assert fx == pytest.approx(520.0, rel=0.03)
    blank = tmp_path / "blank"
    blank.mkdir()
    cv2.imwrite(str(blank / "0.png"), np.full((480, 640, 3), 255, np.uint8))
    assert calib_main(["calibrate", "--images", str(blank), "-o", str(tmp_path / "x.yaml")]) == 1


class FakeCapture:
    """cv2.VideoCapture look-alike: frames until `freeze` is set, then read() fails."""

    def __init__(self, device):
        self.device, self.frozen, self.count = device, False, 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.device != "missing"

    def read(self):
        time.sleep(0.005)
        if self.frozen:
            return False, None
        self.count += 1
        return True, np.full((SIZE[0], SIZE[1], 3), self.count % 255, np.uint8)

    def release(self) -> None:
        pass


@pytest.mark.fault
def test_usb_camera_flags_stale_frames(tmp_path):
    CameraCalibration("usb0", SIZE[1], SIZE[0], tuple(map(tuple, K_TRUE)), (0.0,) * 5, 0.2, 8).save(tmp_path / "c.yaml")
    captures = []

    def factory(device):
        captures.append(FakeCapture(device))
        return captures[-1]

    camera = OpenCVCamera(OpenCVCameraConfig(calibration=str(tmp_path / "c.yaml")), capture_factory=factory)
    with pytest.raises(NotConnectedError):
        camera.read_latest(0.1)
    camera.connect()
    try:
        first = camera.read_latest(max_age=0.1)
        time.sleep(0.03)
        assert camera.read_latest(max_age=0.1).seq > first.seq
        np.testing.assert_allclose(camera.intrinsics.matrix, K_TRUE)
        captures[0].frozen = True  # the camera stops delivering
        time.sleep(0.15)
        with pytest.raises(StaleFrameError, match="old"):
            camera.read_latest(max_age=0.1)
    finally:
        camera.disconnect()
    bad = OpenCVCamera(OpenCVCameraConfig(device="missing", calibration=str(tmp_path / "c.yaml")),
                       capture_factory=factory)
    with pytest.raises(NotConnectedError, match="cannot open"):
        bad.connect()
