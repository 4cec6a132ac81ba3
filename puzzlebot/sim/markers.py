"""ArUco marker textures (OpenCV's DICT_4X4_50), generated in memory.

A marker image has a white quiet zone of one module around the black square, so the black
square's side is 6/8 of the plate's side; perception must use `black_square_side`.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

DICTIONARY = cv2.aruco.DICT_4X4_50
BASE_FRONT_ID = 0  # fixed to the base's front face: poses are expressed relative to the base
BASE_TOP_ID = 1
FIRST_PART_ID = 2
MAX_ID = 49
_MODULES = 6  # 4x4 bits + one black border module on each side
_PIXELS_PER_MODULE = 16


BASE_PLATE_SIDE = 0.05  # m, the two base markers' plates
BASE_PLATE_INSET = 0.04  # m from the base's edges to a base plate's centre


def base_front_plate(base_size: tuple[float, float, float]) -> tuple[np.ndarray, float]:
    """Centre (puzzle frame) and side of base marker 0's plate: upper left of the front face, seen
    from the front. Parts must leave it visible: every relative pose is taken from it."""
    depth, width, height = base_size
    return np.array([-depth / 2, -width / 2 + BASE_PLATE_INSET, height - BASE_PLATE_INSET]), BASE_PLATE_SIDE


def black_square_side(plate_side: float) -> float:
    """Side of the marker's black square on a plate of `plate_side` metres."""
    return plate_side * _MODULES / (_MODULES + 2)


@functools.lru_cache(maxsize=64)
def marker_image(marker_id: int) -> np.ndarray:
    """RGB uint8 image (H, W, 3) of the marker with a one-module white border."""
    if not 0 <= marker_id <= MAX_ID:
        raise ValueError(f"marker id {marker_id} outside DICT_4X4_50 (0..{MAX_ID})")
    dictionary = cv2.aruco.getPredefinedDictionary(DICTIONARY)
    side = _MODULES * _PIXELS_PER_MODULE
    inner = cv2.aruco.generateImageMarker(dictionary, marker_id, side)
    border = _PIXELS_PER_MODULE
    gray = cv2.copyMakeBorder(inner, border, border, border, border, cv2.BORDER_CONSTANT, value=255)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
