"""Test-wide setup: render offscreen through EGL (CI machines have no display)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
