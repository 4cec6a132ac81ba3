"""Export a puzzle's scene as a standalone MJCF file, for tools outside puzzlebot.

`MjSpec.to_xml()` cannot write the ArUco textures, which `sim.build` creates from in-memory
buffers ("no support for buffer textures"). Export therefore writes each buffer texture as a
PNG beside the XML and points the texture's `file` at it (a relative path, so the folder can
be moved), then serialises. The XML loads with `mujoco.MjModel.from_xml_path`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import mujoco
import numpy as np

from puzzlebot.sim.build import puzzle_scene
from puzzlebot.sim.spec import PuzzleSpec


def _texture_image(tex: mujoco.MjsTexture) -> np.ndarray:
    """The texture's buffer as an (H, W, C) uint8 image; a cube texture's one face is replicated."""
    data = np.frombuffer(bytes(tex.data), dtype=np.uint8)
    return data.reshape(tex.height, tex.width, tex.nchannel)


def export_mjcf(spec: PuzzleSpec, out_dir: str | Path) -> Path:
    """Write ``out_dir/<name>.xml`` and one PNG per buffer texture; return the XML's path.

    Args:
        spec: a validated puzzle.
        out_dir: destination folder (created if missing). Texture PNGs are named after the
            texture (``aruco_<id>.png``), so puzzles exported to one folder share them.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = puzzle_scene(spec)
    for tex in scene.textures:
        if len(tex.data) == 0:
            continue  # builtin (the table's checker) or already file-backed
        image = _texture_image(tex)
        png = out_dir / f"{tex.name}.png"
        if image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
        if not cv2.imwrite(str(png), image):
            raise OSError(f"could not write texture {png}")
        tex.file = png.name
        tex.data = b""
        tex.width = tex.height = 0  # taken from the PNG when the XML is loaded
    # to_xml() compiles the spec, which resolves texture files relative to the model's folder.
    scene.modelfiledir = str(out_dir)
    xml_path = out_dir / f"{spec.name}.xml"
    tmp = xml_path.with_suffix(".xml.tmp")
    tmp.write_text(scene.to_xml())
    tmp.replace(xml_path)
    return xml_path
