"""Command-line tools. Rendering here is offscreen, so default to EGL before MuJoCo is imported.

MuJoCo picks its OpenGL backend when it is first imported; an authoring tool usually runs on a
machine (or CI runner) without a display, where EGL works and GLFW does not. A user's own
MUJOCO_GL still wins.
"""

import os
import sys

if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")
