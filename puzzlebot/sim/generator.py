"""Procedural lockbox generator: seeded, verified solvable, with a chosen depth.

Depth d is the length of the shortest solving sequence: the goal part plus the d - 1
blockers it transitively depends on (a tree whose nodes each have at most `branching`
blockers). Extra parts are distractors that block nothing the goal needs. Dimensions,
placements, axes and dynamics are drawn within the documented ranges below; every candidate
is placed by rejection sampling and must pass full validation (lock geometry included) and
have exactly depth d under the lock logic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from puzzlebot.sim.locks import build_lock
from puzzlebot.sim.logic import PuzzleLogic
from puzzlebot.sim.mechanisms import DEFAULTS, layout
from puzzlebot.sim.spec import BaseSpec, GoalSpec, JointSpec, LockSpec, PartSpec, PuzzleSpec, SpecError
from puzzlebot.sim.validate import covers_base_marker, shape_bounds, validate

GOAL_MECHANISMS = ("drawer", "door", "lid")
# Which mechanisms can block which: the blocker must move across the blocked part's motion.
BLOCKERS = {
    "drawer": ("bolt", "lever", "knob"),
    "door": ("bolt", "lever", "knob"),
    "lid": ("bolt", "button"),
    "bolt": ("button", "lever", "knob", "bolt"),
    "lever": ("button", "bolt"),
    "knob": ("button", "bolt"),
    "button": ("bolt", "lever", "knob"),
}
DISTRACTORS = ("knob", "button", "lever", "bolt")


@dataclass(frozen=True)
class GeneratorConfig:
    depth: int = 3
    """Length of the shortest solving sequence (1..6)."""
    n_parts: int | None = None
    """Total parts; None means depth + 1 (one distractor). Must be >= depth."""
    branching: int = 1
    """Most blockers any one part has (1 = a chain)."""
    seed: int = 0
    dynamics_scale: tuple[float, float] = (0.6, 1.6)
    """Range of factors on each default friction, damping, armature and mass."""
    base_depth: tuple[float, float] = (0.26, 0.34)
    base_width: tuple[float, float] = (0.42, 0.56)
    base_height: tuple[float, float] = (0.24, 0.32)
    max_tries: int = 400


PRESETS = Path(__file__).resolve().parents[1] / "assets" / "presets"


def load_preset(name_or_path: str, **overrides: object) -> GeneratorConfig:
    """A GeneratorConfig from a preset YAML (a name in assets/presets or a path), with overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESETS / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise FileNotFoundError(f"generator preset {name_or_path!r} not found (shipped: {known})")
    data = yaml.safe_load(path.read_text()) or {}
    fields = {f.name for f in dataclasses.fields(GeneratorConfig)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{path}: unknown generator field {unknown[0]!r} (allowed: {', '.join(sorted(fields))})")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return dataclasses.replace(GeneratorConfig(**data), **overrides)


def generate(config: GeneratorConfig) -> PuzzleSpec:
    """Generate one solvable lockbox; deterministic for a given config (seed included)."""
    if not 1 <= config.depth <= 6:
        raise ValueError(f"depth must be in 1..6, got {config.depth}")
    n_parts = config.depth + 1 if config.n_parts is None else config.n_parts
    if n_parts < config.depth:
        raise ValueError(f"n_parts ({n_parts}) must be >= depth ({config.depth})")
    if config.branching < 1:
        raise ValueError(f"branching must be >= 1, got {config.branching}")
    rng = np.random.default_rng(config.seed)
    for attempt in range(config.max_tries):
        spec = _attempt(config, n_parts, rng, attempt)
        if spec is not None:
            return spec
    raise RuntimeError(f"no valid puzzle for {config} after {config.max_tries} tries: "
                       "lower the depth or the number of parts")


def _attempt(config: GeneratorConfig, n_parts: int, rng: np.random.Generator, attempt: int) -> PuzzleSpec | None:
    base = BaseSpec(size=(float(rng.uniform(*config.base_depth)), float(rng.uniform(*config.base_width)),
                          float(rng.uniform(*config.base_height))))
    name = f"gen_d{config.depth}_s{config.seed}"
    goal_mech = str(rng.choice(GOAL_MECHANISMS))
    goal_part = _place_goal(goal_mech, base, rng, config)
    spec = PuzzleSpec(name=name, parts=[goal_part], goal=[_goal_for(goal_part)], base=base,
                      description=f"Generated lockbox, depth {config.depth}, seed {config.seed}.")
    # Grow the dependency tree of the goal part to `depth` nodes.
    open_nodes = [goal_part]
    counts = {"drawer": 0, "door": 0, "lid": 0, "bolt": 0, "lever": 0, "knob": 0, "button": 0}
    counts[goal_mech] += 1
    while len(spec.parts) < config.depth:
        candidates = [p for p in open_nodes if len(p.blocked_by) < config.branching]
        if not candidates:
            return None
        # Prefer the newest node (chains) but sometimes branch.
        blocked = candidates[-1] if rng.random() < 0.7 else candidates[int(rng.integers(len(candidates)))]
        blocker = _place_blocker(spec, blocked, rng, counts, config)
        if blocker is None:
            return None
        open_nodes.append(blocker)
    while len(spec.parts) < n_parts:
        if _place_distractor(spec, rng, counts, config) is None:
            return None
    try:
        validate(spec)
        if PuzzleLogic(spec).depth() != config.depth:
            return None
    except (SpecError, ValueError):
        return None
    return spec


def _scaled_joint(mechanism: str, rng: np.random.Generator, config: GeneratorConfig) -> tuple[JointSpec, float]:
    _, joint, mass = DEFAULTS[mechanism]
    lo, hi = config.dynamics_scale

    def f() -> float:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    scaled = dataclasses.replace(joint, friction=joint.friction * f(), damping=joint.damping * f(),
                                 armature=joint.armature * f())
    return scaled, mass * f()


GRAVITY = 9.81
HOLD_MARGIN = 2.0  # friction must hold this many times the part's own weight load


def _new_part(name: str, mechanism: str, position, rng, config, **kwargs) -> PartSpec:
    joint, mass = _scaled_joint(mechanism, rng, config)
    part = PartSpec(name=name, mechanism=mechanism, position=tuple(float(v) for v in position), joint=joint,
                    mass=float(mass), **kwargs)
    # Small parts must stay where the arm leaves them: a vertical bolt or a sideways lever
    # whose friction is below its weight load slides back into its locked range.
    load = _gravity_load(part)
    if joint.friction < HOLD_MARGIN * load:
        part.joint = dataclasses.replace(joint, friction=HOLD_MARGIN * load)
    return part


def _gravity_load(part: PartSpec) -> float:
    """Largest gravity force (N) or torque (N·m) on the part's joint over its range."""
    if part.mechanism == "bolt":
        return part.mass * GRAVITY * abs(np.sin(part.direction))
    if part.mechanism == "lever":
        (length,) = part.size or DEFAULTS["lever"][0]
        return part.mass * GRAVITY * length / 2
    return 0.0


def _place_goal(mechanism: str, base: BaseSpec, rng, config) -> PartSpec:
    depth, width, height = base.size
    size = DEFAULTS[mechanism][0]
    if mechanism == "lid":
        length, w = size
        x = -depth / 2 + length / 2 + 0.005
        y = rng.uniform(-width / 2 + w / 2 + 0.01, width / 2 - w / 2 - 0.01)
        return _new_part("lid", mechanism, (x, y), rng, config)
    w, h = size[0], size[1]
    y = rng.uniform(-width / 2 + w / 2 + 0.02, width / 2 - w / 2 - 0.02)
    z = rng.uniform(h / 2 + 0.02, height - h / 2 - 0.04)
    side = str(rng.choice(["left", "right"])) if mechanism == "door" else "left"
    return _new_part(mechanism, mechanism, (y, z), rng, config, hinge_side=side)


def _goal_for(part: PartSpec) -> GoalSpec:
    lo, hi = (part.joint or DEFAULTS[part.mechanism][1]).range
    return GoalSpec(part=part.name, min=lo + 0.65 * (hi - lo))


def _fits(spec: PuzzleSpec, part: PartSpec) -> bool:
    """On the base and clear of every placed part (bounds with a 1 cm margin)."""
    lay = layout(part, spec.base)
    lo, hi = shape_bounds(lay, main_only=True)
    depth, width, height = spec.base.size
    if part.mechanism == "lid":
        inside = lo[1] >= -width / 2 and hi[1] <= width / 2
    else:
        inside = lo[1] >= -width / 2 + 0.01 and hi[1] <= width / 2 - 0.01 and lo[2] >= 0.01 and hi[2] <= height - 0.01
    if not inside or covers_base_marker(lay, spec.base.size):
        return False
    lo, hi = shape_bounds(lay)
    for other in spec.parts:
        olo, ohi = shape_bounds(layout(other, spec.base))
        if np.all(lo < ohi + 0.01) and np.all(olo < hi + 0.01):
            return False
    return True


def _unique_name(mechanism: str, counts: dict[str, int]) -> str:
    counts[mechanism] += 1
    return mechanism if counts[mechanism] == 1 else f"{mechanism}{counts[mechanism]}"


def _locked_range(mechanism: str, rng) -> tuple[float, float]:
    lo, hi = DEFAULTS[mechanism][1].range
    return lo, lo + float(rng.uniform(0.3, 0.45)) * (hi - lo)


def _place_blocker(spec: PuzzleSpec, blocked: PartSpec, rng, counts, config) -> PartSpec | None:
    """Place a new part that blocks `blocked`, near one of its lock points."""
    blocked_lay = layout(blocked, spec.base)
    depth, width, height = spec.base.size
    for _ in range(60):
        mechanism = str(rng.choice(BLOCKERS[blocked.mechanism]))
        point = blocked_lay.lock_points[int(rng.integers(len(blocked_lay.lock_points)))]
        y, z = point[1], min(point[2], height - 0.03)
        direction = float(rng.choice([0.0, np.pi / 2, np.pi, -np.pi / 2]))
        reach = {"bolt": 0.08, "lever": 0.10, "knob": 0.06, "button": 0.05}[mechanism]
        offset = -reach * np.array([np.cos(direction), np.sin(direction)]) + rng.normal(0, 0.01, 2)
        position = (y + offset[0], z + offset[1])
        name = _unique_name(mechanism, counts)
        part = _new_part(name, mechanism, position, rng, config, direction=direction)
        lock = LockSpec(blocker=name, locked_range=_locked_range(mechanism, rng))
        if _fits(spec, part):
            try:
                build_lock(lock, blocked_lay, layout(part, spec.base), "generator")
            except SpecError:
                counts[mechanism] -= 1
                continue
            blocked.blocked_by.append(lock)
            spec.parts.append(part)
            return part
        counts[mechanism] -= 1
    return None


def _place_distractor(spec: PuzzleSpec, rng, counts, config) -> PartSpec | None:
    depth, width, height = spec.base.size
    for _ in range(60):
        mechanism = str(rng.choice(DISTRACTORS))
        position = (rng.uniform(-width / 2 + 0.05, width / 2 - 0.05), rng.uniform(0.05, height - 0.05))
        name = _unique_name(mechanism, counts)
        part = _new_part(name, mechanism, position, rng, config, direction=float(rng.choice([0.0, np.pi / 2])))
        if _fits(spec, part):
            spec.parts.append(part)
            return part
        counts[mechanism] -= 1
    return None
