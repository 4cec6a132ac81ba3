"""Puzzles brought as MJCF: articulated bodies with joints, plus a goal on named joints.

Users who model a puzzle in MuJoCo's own format describe it with a small YAML next to it:

    name: cabinet
    mjcf: cabinet.xml            # relative to the YAML file
    goal:
      - {joint: door_hinge, min: 1.0}

The model is attached under the prefix ``ext/`` at the puzzle's placement; its hinge and
slide joints become the puzzle's parts. Locks inside an external model are whatever its
geometry does: there is no declared lock logic, so the oracle cannot plan for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import yaml

from puzzlebot.sim.spec import GoalSpec, SpecError, _number

PREFIX = "ext/"
_PART_JOINTS = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


@dataclass
class ExternalPuzzleSpec:
    """An MJCF puzzle: the file, the goal (GoalSpec.part names a joint), and where it came from."""

    name: str
    mjcf: Path
    goal: list[GoalSpec]
    description: str = ""
    joints: tuple[str, ...] = field(default=())
    """The model's hinge and slide joints (its parts), filled in by `load_external`."""
    source: str | None = None


def is_external(data: Any) -> bool:
    """Whether a parsed puzzle YAML describes an MJCF puzzle."""
    return isinstance(data, dict) and "mjcf" in data


def load_external(path: str | Path) -> ExternalPuzzleSpec:
    """Read and validate an MJCF puzzle description; errors name the file and the field."""
    path = Path(path)
    src = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError("puzzle", "file not found", src) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError("puzzle", f"cannot read the file ({err.__class__.__name__}: {err})", src) from None
    except yaml.YAMLError as err:
        raise SpecError("puzzle", f"not valid YAML ({err})", src) from None
    if not is_external(data):
        raise SpecError("puzzle.mjcf", "required field is missing", src)
    unknown = sorted(set(data) - {"name", "mjcf", "goal", "description"})
    if unknown:
        raise SpecError(f"puzzle.{unknown[0]}", "unknown field (allowed: name, mjcf, goal, description)", src)
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SpecError("puzzle.name", "must be a non-empty string", src)
    if not isinstance(data["mjcf"], str):
        raise SpecError("puzzle.mjcf", f"expected a file name, got {data['mjcf']!r}", src)
    mjcf = (path.parent / data["mjcf"]).resolve()
    if not mjcf.exists():
        raise SpecError("puzzle.mjcf", f"MJCF file {mjcf} not found", src)
    try:
        model = mujoco.MjSpec.from_file(str(mjcf)).compile()
    except Exception as err:  # MuJoCo raises ValueError or FatalError with its own message
        raise SpecError("puzzle.mjcf", f"MuJoCo cannot load {mjcf.name}: {err}", src) from None
    joints = {model.joint(i).name: i for i in range(model.njnt) if int(model.jnt_type[i]) in _PART_JOINTS}
    if not joints:
        raise SpecError("puzzle.mjcf", "the model has no named hinge or slide joint to act on", src)
    goals = data.get("goal")
    if not isinstance(goals, list) or not goals:
        raise SpecError("puzzle.goal", "a puzzle needs at least one goal condition", src)
    parsed = []
    for i, goal in enumerate(goals):
        where = f"puzzle.goal[{i}]"
        if not isinstance(goal, dict) or "joint" not in goal:
            raise SpecError(where, "expected a mapping with 'joint' and 'min' and/or 'max'", src)
        if set(goal) - {"joint", "min", "max"}:
            raise SpecError(where, f"unknown keys {sorted(set(goal) - {'joint', 'min', 'max'})}", src)
        joint = goal["joint"]
        if not isinstance(joint, str):
            raise SpecError(f"{where}.joint", f"expected a joint name, got {joint!r}", src)
        if joint not in joints:
            raise SpecError(f"{where}.joint", f"no hinge/slide joint {joint!r} in {mjcf.name} "
                                              f"(joints: {', '.join(joints)})", src)
        lo, hi = model.jnt_range[joints[joint]] if model.jnt_limited[joints[joint]] else (-np.inf, np.inf)
        gmin, gmax = (None if goal.get(k) is None else _number(goal[k], f"{where}.{k}", src) for k in ("min", "max"))
        if gmin is None and gmax is None:
            raise SpecError(where, "give min, max or both", src)
        if (gmin is not None and gmin > hi) or (gmax is not None and gmax < lo):
            raise SpecError(where, f"outside joint {joint!r}'s range [{lo}, {hi}]: unreachable goal", src)
        parsed.append(GoalSpec(part=joint, min=gmin, max=gmax))
    return ExternalPuzzleSpec(name=name, mjcf=mjcf, goal=parsed, description=str(data.get("description", "")),
                              joints=tuple(joints), source=src)


def add_external(scene: mujoco.MjSpec, puzzle: ExternalPuzzleSpec, pos: np.ndarray, quat: np.ndarray) -> None:
    """Attach the MJCF's world body contents under ``ext/``, inside a static body ``base``.

    The ``base`` body at the placement is what every puzzle has, so code that places or
    jitters a puzzle (the env's reset) treats both kinds alike.
    """
    child = mujoco.MjSpec.from_file(str(puzzle.mjcf))
    base = scene.worldbody.add_body(name="base", pos=pos, quat=quat)
    frame = base.add_frame(name=f"{PREFIX}frame")
    scene.attach(child, frame=frame, prefix=PREFIX)


def load_puzzle(path: str | Path):
    """Load any puzzle file: a PuzzleSpec YAML, or an MJCF puzzle description (has ``mjcf``)."""
    from puzzlebot.sim.spec import load_spec

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (FileNotFoundError, yaml.YAMLError):
        return load_spec(path)  # raises the SpecError that names the problem
    return load_external(path) if is_external(data) else load_spec(path)
