"""Labelled preview montages of a puzzle from its scene cameras, for authors to eyeball.

Each view is rendered offscreen with shadows off (so markers stay readable) and every part's
name is drawn next to its handle site, projected with the camera's pinhole model. A handle
hidden behind other geometry (checked against the rendered depth) gets a hollow dot, so an
author can tell "behind the box" from "on the face".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import mujoco
import numpy as np

from puzzlebot.sim.build import puzzle_scene
from puzzlebot.sim.external import PREFIX as EXTERNAL_PREFIX
from puzzlebot.sim.external import ExternalPuzzleSpec
from puzzlebot.sim.spec import PuzzleSpec

DEFAULT_VIEWS = ("front", "top", "side")
DEFAULT_SIZE = (480, 640)  # (height, width) of each view, px
FONT = cv2.FONT_HERSHEY_SIMPLEX
OCCLUSION_TOLERANCE = 0.03  # m: a handle bar is 8 mm thick, so closer surfaces within 3 cm are the handle itself
LABEL_RGB = (255, 236, 140)
HIDDEN_RGB = (170, 170, 170)


@dataclass(frozen=True)
class Label:
    """A part name anchored at a pixel (u right, v down)."""

    text: str
    u: float
    v: float
    visible: bool


def project(model: mujoco.MjModel, data: mujoco.MjData, camera: str, points: np.ndarray, height: int,
            width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) and depths along the view axis (N,) of world points.

    MuJoCo cameras look along their -z with +y up, and `fovy` (degrees) spans the image
    height; pixels are square, so one focal length serves both axes.

    Args:
        model: compiled model holding the camera.
        data: data after `mj_forward`, for the camera pose.
        camera: camera name.
        points: (N, 3) world points.
        height: image height, px.
        width: image width, px.
    """
    cam = model.camera(camera)
    pos = data.cam_xpos[cam.id]
    rot = data.cam_xmat[cam.id].reshape(3, 3)
    local = (np.asarray(points, dtype=float) - pos) @ rot  # rows are rot.T @ (p - pos)
    depth = -local[:, 2]
    focal = 0.5 * height / np.tan(np.deg2rad(model.cam_fovy[cam.id]) / 2)
    safe = np.where(depth > 1e-6, depth, np.nan)  # points behind the camera have no pixel
    uv = np.column_stack([width / 2 + focal * local[:, 0] / safe, height / 2 - focal * local[:, 1] / safe])
    return uv, depth


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_labels(image: np.ndarray, labels: Sequence[Label], scale: float = 0.5,
                keep_clear: Sequence[tuple[int, int, int, int]] = ()) -> None:
    """Draw each label beside its anchor, trying nearby slots so labels cover no other label or dot.

    Args:
        image: RGB image, drawn on in place.
        labels: names and their anchor pixels.
        scale: OpenCV font scale.
        keep_clear: pixel boxes (x0, y0, x1, y1) labels should not cover, such as marker plates.
    """
    height, width = image.shape[:2]
    thickness = max(1, round(2 * scale))
    pad = max(2, round(4 * scale))
    radius = max(3, round(5 * scale))
    taken: list[tuple[int, int, int, int]] = [tuple(int(c) for c in box) for box in keep_clear]
    taken += [(int(lb.u) - radius, int(lb.v) - radius, int(lb.u) + radius, int(lb.v) + radius)
              for lb in labels if np.isfinite(lb.u) and np.isfinite(lb.v)]
    for label in sorted(labels, key=lambda lb: (lb.v, lb.u)):
        if not (np.isfinite(label.u) and np.isfinite(label.v)) or not (0 <= label.u < width and 0 <= label.v < height):
            continue  # outside this view
        (tw, th), base = cv2.getTextSize(label.text, FONT, scale, thickness)
        bw, bh = tw + 2 * pad, th + base + 2 * pad
        u, v = int(round(label.u)), int(round(label.v))
        gap = round(10 * scale)
        # Right-above first (reads naturally), then left, then further up/down steps.
        slots = [(u + gap, v - gap - bh), (u - gap - bw, v - gap - bh), (u + gap, v + gap), (u - gap - bw, v + gap)]
        for step in range(1, 6):
            slots += [(u + gap, v - gap - bh - step * bh), (u + gap, v + gap + step * bh),
                      (u - gap - bw, v - gap - bh - step * bh), (u - gap - bw, v + gap + step * bh)]
        box = None
        for x, y in slots:
            cand = (x, y, x + bw, y + bh)
            if cand[0] >= 0 and cand[1] >= 0 and cand[2] <= width and cand[3] <= height and \
                    not any(_overlaps(cand, t) for t in taken):
                box = cand
                break
        if box is None:  # crowded: accept an overlap rather than drop a name
            x = min(max(u + gap, 0), width - bw)
            y = min(max(v - gap - bh, 0), height - bh)
            box = (x, y, x + bw, y + bh)
        taken.append(box)
        colour = LABEL_RGB if label.visible else HIDDEN_RGB
        # Leader line to the nearest point of the box, then the dot on top of it.
        near = (min(max(u, box[0]), box[2]), min(max(v, box[1]), box[3]))
        cv2.line(image, (u, v), near, colour, 1, cv2.LINE_AA)
        region = image[box[1]:box[3], box[0]:box[2]]
        region[:] = (0.35 * region).astype(image.dtype)  # darken behind the text for contrast
        cv2.putText(image, label.text, (box[0] + pad, box[3] - pad - base), FONT, scale, colour, thickness,
                    cv2.LINE_AA)
        cv2.circle(image, (u, v), radius, colour, -1 if label.visible else 1, cv2.LINE_AA)


def marker_boxes(model: mujoco.MjModel, data: mujoco.MjData, camera: str, height: int,
                 width: int) -> list[tuple[int, int, int, int]]:
    """Pixel bounding boxes of every ArUco plate (geoms named ``*/marker``), so labels avoid them."""
    boxes = []
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=float)
    for g in range(model.ngeom):
        if not model.geom(g).name.endswith("/marker"):
            continue
        rot = data.geom_xmat[g].reshape(3, 3)
        corners = data.geom_xpos[g] + (signs * model.geom_size[g][:2]) @ rot[:, :2].T
        uv, depth = project(model, data, camera, corners, height, width)
        if np.all(depth > 0):
            lo, hi = np.floor(uv.min(0)).astype(int), np.ceil(uv.max(0)).astype(int)
            boxes.append((int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])))
    return boxes


def _title(image: np.ndarray, text: str, scale: float) -> None:
    thickness = max(1, round(2 * scale))
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    image[: th + base + 12, : tw + 12] = 0
    cv2.putText(image, text, (6, th + 6), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def render_views(spec: PuzzleSpec, views: Sequence[str] = DEFAULT_VIEWS,
                 size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """Side-by-side RGB montage (H, W * len(views), 3) of the puzzle in its initial state, labelled.

    Args:
        spec: a validated puzzle.
        views: camera names of `sim.build.DEFAULT_CAMERAS` (or any camera in the scene).
        size: (height, width) of each view in pixels.
    """
    height, width = size
    model = puzzle_scene(spec).compile()
    known = [model.camera(i).name for i in range(model.ncam)]
    unknown = [v for v in views if v not in known]
    if unknown or not views:
        raise ValueError(f"unknown view(s) {unknown} (cameras: {', '.join(known)})")
    # The offscreen buffer must hold the requested view size.
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    names, handles = label_points(spec, model, data)
    scale = 0.55 * height / DEFAULT_SIZE[0]
    panels = []
    with mujoco.Renderer(model, height, width) as renderer:
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        for view in views:
            renderer.update_scene(data, camera=view)
            rgb = renderer.render().copy()
            renderer.enable_depth_rendering()
            renderer.update_scene(data, camera=view)
            depth_image = renderer.render().copy()
            renderer.disable_depth_rendering()
            uv, depth = project(model, data, view, handles, height, width)
            labels = []
            for name, (u, v), d in zip(names, uv, depth, strict=True):
                inside = np.isfinite(u) and np.isfinite(v) and 0 <= u < width and 0 <= v < height
                visible = bool(inside and depth_image[int(v), int(u)] >= d - OCCLUSION_TOLERANCE)
                labels.append(Label(name, float(u), float(v), visible))
            draw_labels(rgb, labels, scale, marker_boxes(model, data, view, height, width))
            _title(rgb, f"{spec.name}: {view}" if not panels else view, scale)
            panels.append(rgb)
    return np.concatenate(panels, axis=1)


def save_preview(spec: PuzzleSpec, path: str | Path, views: Sequence[str] = DEFAULT_VIEWS,
                 size: tuple[int, int] = DEFAULT_SIZE) -> Path:
    """Render `render_views` to a PNG file (parent folders created) and return its path."""
    path = Path(path)
    image = render_views(spec, views, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path} (is the suffix an image format OpenCV knows?)")
    return path


def label_points(spec, model: mujoco.MjModel, data: mujoco.MjData) -> tuple[list[str], np.ndarray]:
    """Part names and where to label them: handle sites, or an MJCF puzzle's joint anchors."""
    if isinstance(spec, ExternalPuzzleSpec):
        names = list(spec.joints)
        points = [data.xanchor[model.joint(f"{EXTERNAL_PREFIX}{n}").id] for n in names]
        return names, np.array(points)
    names = [p.name for p in spec.parts]
    return names, np.array([data.site(f"{n}/handle").xpos for n in names])
