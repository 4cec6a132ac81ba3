"""PuzzleSpec: a lockbox described as data, validated with errors that name the field.

A puzzle is a fixed base box with movable parts mounted on its front or top face. Each part
has one joint (its mechanism decides prismatic or revolute), the parts that block it and in
which of their states, and the puzzle has a goal on one or more parts' joints.

Conventions (the puzzle frame): origin at the centre of the base's bottom face, +x points
away from the robot (the front face is at x = -depth/2 and faces the robot), +z up. Every
joint coordinate starts at its `initial` value and grows in the direction that opens the
part; lengths are metres, angles radians.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from puzzlebot.files import write_text_atomic

MECHANISMS: dict[str, str] = {
    # mechanism -> joint kind
    "drawer": "slide",
    "door": "hinge",
    "lid": "hinge",
    "bolt": "slide",
    "lever": "hinge",
    "knob": "hinge",
    "button": "slide",
}


class SpecError(ValueError):
    """A puzzle description is invalid; the message names the file, the field and the reason."""

    def __init__(self, field_path: str, reason: str, source: str | None = None):
        self.field_path = field_path
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field_path}: {reason}")


@dataclass(frozen=True)
class JointSpec:
    """The part's single degree of freedom and its passive dynamics."""

    range: tuple[float, float]
    """Joint limits (m or rad); the part starts near the lower end and opens upwards."""
    initial: float | None = None
    """Starting joint value; defaults to the lower limit."""
    friction: float = 0.5
    """Dry friction (MuJoCo `frictionloss`), N or N·m."""
    damping: float = 1.0
    """Viscous damping, N·s/m or N·m·s/rad."""
    armature: float = 0.01
    """Reflected rotor/guide inertia added to the joint, kg or kg·m²."""
    stiffness: float = 0.0
    """Return spring, N/m or N·m/rad; pulls towards `springref`."""
    springref: float | None = None
    """Spring rest position; defaults to `initial`."""

    @property
    def q0(self) -> float:
        return self.range[0] if self.initial is None else self.initial


@dataclass
class LockSpec:
    """`blocker` stops this part from opening past `at` while the blocker is in `locked_range`."""

    blocker: str
    locked_range: tuple[float, float]
    """Joint values of the blocker in which it blocks (a closed bolt: its first few mm)."""
    at: float | None = None
    """Joint value of the blocked part where it is stopped; defaults to its initial value."""
    play: float = 0.002
    """Free motion (m at the lock point) before the blocked part hits the blocker."""


@dataclass
class PartSpec:
    """One movable part mounted on the base."""

    name: str
    mechanism: str
    position: tuple[float, float]
    """Where the part is mounted on its face: (y, z) on the front face, (x, y) on the top."""
    size: tuple[float, ...] = ()
    """Mechanism-specific dimensions (see `sim.mechanisms`); empty means the defaults."""
    joint: JointSpec | None = None
    """Joint limits and dynamics; None means the mechanism's defaults."""
    direction: float = 0.0
    """In-face angle (rad) of a bolt's travel or a lever's arm, 0 = +y, pi/2 = +z."""
    hinge_side: str = "left"
    """Door only: the side of its hinge seen from the robot, 'left' or 'right'."""
    mass: float | None = None
    """Mass of the moving part in kg; None means the mechanism's default."""
    marker_id: int | None = None
    """ArUco DICT_4X4_50 id on the part's visible face; assigned automatically when None."""
    blocked_by: list[LockSpec] = field(default_factory=list)


@dataclass
class GoalSpec:
    """The goal holds when every listed part's joint is within [min, max]."""

    part: str
    min: float | None = None
    max: float | None = None

    def holds(self, q: float) -> bool:
        return (self.min is None or q >= self.min) and (self.max is None or q <= self.max)


@dataclass
class BaseSpec:
    """The fixed box every part is mounted on."""

    size: tuple[float, float, float] = (0.30, 0.40, 0.30)
    """Depth (x), width (y) and height (z), m."""
    rgba: tuple[float, float, float, float] = (0.62, 0.45, 0.30, 1.0)


@dataclass
class PuzzleSpec:
    """A whole lockbox."""

    name: str
    parts: list[PartSpec]
    goal: list[GoalSpec]
    base: BaseSpec = field(default_factory=BaseSpec)
    description: str = ""
    source: str | None = None
    """The file this spec was read from (for error messages); not serialised."""

    def part(self, name: str) -> PartSpec:
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(f"puzzle {self.name!r} has no part {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML-ready) of every field, defaults included; `source` is left out."""
        data = dataclasses.asdict(self)
        data.pop("source")
        return _tuples_to_lists(data)


def _tuples_to_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _tuples_to_lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tuples_to_lists(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars from generated specs
        return value.item()
    return value


# --------------------------------------------------------------------------- parsing

def _build(cls: type, data: Any, path: str, source: str | None) -> Any:
    """Build dataclass `cls` from a mapping, naming unknown or missing fields."""
    if not isinstance(data, dict):
        raise SpecError(path, f"expected a mapping, got {type(data).__name__}", source)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - (set(fields) - {"source"}))
    if unknown:
        raise SpecError(f"{path}.{unknown[0]}", f"unknown field (allowed: {', '.join(fields)})", source)
    kwargs = {}
    for name, f in fields.items():
        if name == "source":
            continue
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SpecError(f"{path}.{name}", "required field is missing", source)
            continue
        kwargs[name] = _convert(f.type, data[name], f"{path}.{name}", source)
    return cls(**kwargs)


def _number(value: Any, path: str, source: str | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(path, f"expected a number, got {value!r}", source)
    try:
        number = float(value)
    except OverflowError:
        raise SpecError(path, f"{value!r} is too large", source) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise SpecError(path, f"must be finite, got {value!r}", source)
    return number


def _numbers(value: Any, path: str, source: str | None, length: int | None) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)):
        raise SpecError(path, f"expected a list of numbers, got {value!r}", source)
    if length is not None and len(value) != length:
        raise SpecError(path, f"expected {length} numbers, got {len(value)}", source)
    return tuple(_number(v, f"{path}[{i}]", source) for i, v in enumerate(value))


_NESTED = {"JointSpec": JointSpec, "LockSpec": LockSpec, "BaseSpec": BaseSpec}
_LISTS = {"list[PartSpec]": PartSpec, "list[GoalSpec]": GoalSpec, "list[LockSpec]": LockSpec}
_TUPLE_LENGTHS = {"tuple[float, float]": 2, "tuple[float, float, float]": 3,
                  "tuple[float, float, float, float]": 4, "tuple[float, ...]": None}


def _convert(type_name: str, value: Any, path: str, source: str | None) -> Any:
    """Convert one YAML value to the annotated field type (annotations are strings here)."""
    optional = type_name.endswith(" | None")
    base = type_name.removesuffix(" | None")
    if value is None:
        if optional:
            return None
        raise SpecError(path, "must not be null", source)
    if base in _NESTED:
        return _build(_NESTED[base], value, path, source)
    if base in _LISTS:
        if not isinstance(value, list):
            raise SpecError(path, f"expected a list, got {type(value).__name__}", source)
        return [_build(_LISTS[base], v, f"{path}[{i}]", source) for i, v in enumerate(value)]
    if base in _TUPLE_LENGTHS:
        return _numbers(value, path, source, _TUPLE_LENGTHS[base])
    if base == "float":
        return _number(value, path, source)
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(path, f"expected an integer, got {value!r}", source)
        return value
    if base == "str":
        if not isinstance(value, str):
            raise SpecError(path, f"expected a string, got {value!r}", source)
        return value
    raise TypeError(f"no converter for {type_name}")  # a bug in this module, not in the file


def spec_from_dict(data: Any, source: str | None = None) -> PuzzleSpec:
    """Parse and validate a puzzle description (a dict as read from YAML)."""
    from puzzlebot.sim.validate import validate  # local: validate imports this module

    spec = _build(PuzzleSpec, data, "puzzle", source)
    spec.source = source
    validate(spec)
    return spec


def load_spec(path: str | Path) -> PuzzleSpec:
    """Read and validate a puzzle YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError("puzzle", "file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError("puzzle", f"cannot read the file ({err.__class__.__name__}: {err})", str(path)) from None
    except yaml.YAMLError as err:
        raise SpecError("puzzle", f"not valid YAML ({err})", str(path)) from None
    return spec_from_dict(data, source=str(path))


def save_spec(spec: PuzzleSpec, path: str | Path) -> None:
    """Write a spec as YAML atomically (write a temporary file, then rename)."""
    path = Path(path)
    write_text_atomic(path, yaml.safe_dump(spec.to_dict(), sort_keys=False))
