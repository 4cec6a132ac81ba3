"""Validation of a PuzzleSpec: every error names the file, the field and the reason."""

from __future__ import annotations

import re

import numpy as np

from puzzlebot.sim import markers
from puzzlebot.sim.mechanisms import DEFAULTS, PartLayout, layout
from puzzlebot.sim.spec import MECHANISMS, PuzzleSpec, SpecError

_SIZE_LENGTHS = {name: len(size) for name, (size, _, _) in DEFAULTS.items()}
_TOLERANCE = 0.002  # m a part may overhang the base's edge
NAME_RULE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Names the compiler gives its own elements (base body, base markers, table, lock geoms).
RESERVED_NAMES = frozenset({"base", "base_front", "base_top", "table", "lock", "world"})
MIN_MASS, MAX_MASS = 0.001, 50.0  # kg: below a gram MuJoCo's inertia goes degenerate


def validate(spec: PuzzleSpec) -> None:
    """Check a spec end to end, assigning free marker ids; raise SpecError on the first problem."""
    src = spec.source
    if not NAME_RULE.fullmatch(spec.name):
        raise SpecError("puzzle.name", f"{spec.name!r} must start with a letter and contain only ASCII letters, "
                                       "digits and underscores (it names files and MuJoCo elements)", src)
    if any(s <= 0 for s in spec.base.size):
        raise SpecError("puzzle.base.size", f"every dimension must be positive, got {spec.base.size}", src)
    if not spec.parts:
        raise SpecError("puzzle.parts", "a puzzle needs at least one movable part", src)
    names = [p.name for p in spec.parts]
    for i in range(len(spec.parts)):
        _check_part(spec, i, names)
    _assign_markers(spec)
    _check_cycles(spec)
    layouts = {p.name: layout(p, spec.base) for p in spec.parts}
    for i, part in enumerate(spec.parts):
        _check_on_base(spec, i, layouts[part.name])
    _check_overlaps(spec, layouts)
    if not spec.goal:
        raise SpecError("puzzle.goal", "a puzzle needs at least one goal condition", src)
    for i, goal in enumerate(spec.goal):
        where = f"puzzle.goal[{i}]"
        if goal.part not in names:
            raise SpecError(f"{where}.part", f"unknown part {goal.part!r} (parts: {', '.join(names)})", src)
        if goal.min is None and goal.max is None:
            raise SpecError(where, "give min, max or both", src)
        lo, hi = layouts[goal.part].joint.range
        gmin = lo if goal.min is None else goal.min
        gmax = hi if goal.max is None else goal.max
        if gmin > gmax or gmax < lo or gmin > hi:
            raise SpecError(where, f"[{gmin}, {gmax}] is outside {goal.part!r}'s joint range [{lo}, {hi}]: "
                                   "unreachable goal", src)
    # Geometry of every lock, then solvability (both need the whole spec to be sane first).
    from puzzlebot.sim.build import lay_out
    from puzzlebot.sim.logic import PuzzleLogic

    try:
        lay_out(spec)
    except SpecError as err:
        raise SpecError(err.field_path, err.reason, src) from None
    logic = PuzzleLogic(spec)
    plan = logic.solve()
    if plan is None:
        raise SpecError("puzzle.goal", f"unreachable goal: {logic.explain_unsolvable()}", src)
    if not plan:
        raise SpecError("puzzle.goal", "the goal already holds at the start: nothing to solve", src)
    _check_compiles(spec)
    _check_sightlines(spec)


def _check_part(spec: PuzzleSpec, i: int, names: list[str]) -> None:
    src = spec.source
    part = spec.parts[i]
    where = f"puzzle.parts[{i}]"
    if not NAME_RULE.fullmatch(part.name):
        raise SpecError(f"{where}.name", f"{part.name!r} must start with a letter and contain only ASCII letters, "
                                         "digits and underscores", src)
    if names.count(part.name) > 1:
        raise SpecError(f"{where}.name", f"duplicate part name {part.name!r}", src)
    if part.name in RESERVED_NAMES:
        raise SpecError(f"{where}.name", f"{part.name!r} is reserved (reserved: {', '.join(sorted(RESERVED_NAMES))})",
                        src)
    if part.mechanism not in MECHANISMS:
        raise SpecError(f"{where}.mechanism", f"unknown mechanism {part.mechanism!r} "
                                              f"(known: {', '.join(MECHANISMS)})", src)
    if part.size and len(part.size) != _SIZE_LENGTHS[part.mechanism]:
        raise SpecError(f"{where}.size", f"a {part.mechanism} takes {_SIZE_LENGTHS[part.mechanism]} sizes, "
                                         f"got {len(part.size)}", src)
    if any(s <= 0 for s in part.size):
        raise SpecError(f"{where}.size", f"sizes must be positive, got {part.size}", src)
    if part.hinge_side not in ("left", "right"):
        raise SpecError(f"{where}.hinge_side", f"must be 'left' or 'right', got {part.hinge_side!r}", src)
    if part.mass is not None and not MIN_MASS <= part.mass <= MAX_MASS:
        raise SpecError(f"{where}.mass", f"must be within [{MIN_MASS}, {MAX_MASS}] kg, got {part.mass}", src)
    joint = part.joint or DEFAULTS[part.mechanism][1]
    lo, hi = joint.range
    if not lo < hi:
        raise SpecError(f"{where}.joint.range", f"lower limit must be below upper, got {joint.range}", src)
    if not lo <= joint.q0 <= hi:
        raise SpecError(f"{where}.joint.initial", f"{joint.q0} is outside the range {joint.range}", src)
    for name in ("friction", "damping", "armature", "stiffness"):
        if getattr(joint, name) < 0:
            raise SpecError(f"{where}.joint.{name}", f"must be >= 0, got {getattr(joint, name)}", src)
    if joint.springref is not None and not lo <= joint.springref <= hi:
        raise SpecError(f"{where}.joint.springref", f"{joint.springref} is outside the range {joint.range}", src)
    if part.marker_id is not None and not markers.FIRST_PART_ID <= part.marker_id <= markers.MAX_ID:
        raise SpecError(f"{where}.marker_id", f"must be in {markers.FIRST_PART_ID}..{markers.MAX_ID} "
                                              "(0 and 1 mark the base)", src)
    for j, lock in enumerate(part.blocked_by):
        lw = f"{where}.blocked_by[{j}]"
        if lock.blocker not in names:
            raise SpecError(f"{lw}.blocker", f"unknown part {lock.blocker!r} (parts: {', '.join(names)})", src)
        if lock.blocker == part.name:
            raise SpecError(f"{lw}.blocker", "a part cannot block itself", src)
        if not lock.locked_range[0] < lock.locked_range[1]:
            raise SpecError(f"{lw}.locked_range", f"lower must be below upper, got {lock.locked_range}", src)
        if lock.at is not None and not joint.q0 <= lock.at < hi:
            raise SpecError(f"{lw}.at", f"{lock.at} must be in [initial {joint.q0}, upper limit {hi}): the part "
                                        "starts before the point where the lock stops it", src)
        if lock.play < 0:
            raise SpecError(f"{lw}.play", f"must be >= 0, got {lock.play}", src)


def _assign_markers(spec: PuzzleSpec) -> None:
    used: dict[int, str] = {}
    for i, part in enumerate(spec.parts):
        if part.marker_id is None:
            continue
        if part.marker_id in used:
            raise SpecError(f"puzzle.parts[{i}].marker_id", f"id {part.marker_id} is already used by "
                                                            f"{used[part.marker_id]!r}", spec.source)
        used[part.marker_id] = part.name
    free = (i for i in range(markers.FIRST_PART_ID, markers.MAX_ID + 1) if i not in used)
    for i, part in enumerate(spec.parts):
        if part.marker_id is None:
            try:
                part.marker_id = next(free)
            except StopIteration:
                raise SpecError(f"puzzle.parts[{i}].marker_id", "no free ArUco id left", spec.source) from None


def _check_cycles(spec: PuzzleSpec) -> None:
    """Blockers must form a DAG: a cycle can never be opened."""
    graph = {p.name: [lock.blocker for lock in p.blocked_by] for p in spec.parts}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise SpecError("puzzle.parts", f"blocker cycle {' -> '.join(cycle)}: none of them can ever open",
                                spec.source)
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def shape_bounds(lay: PartLayout, main_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds (puzzle frame, q = initial) of a part's shapes, trays excluded."""
    lows, highs = [], []
    rot, t = lay.transform(lay.joint.q0)
    for shape in lay.shapes[:1] if main_only else lay.shapes:
        if shape.name == "tray" or shape.name == "stem":
            continue  # inside the base
        if shape.fromto is not None:
            pts = np.array([shape.fromto[:3], shape.fromto[3:]])
            r = shape.size[0]
        else:
            c = np.array(shape.pos)
            ext = np.array(shape.size[:3]) if shape.kind == "box" else np.full(3, max(shape.size[:2]))
            pts = np.array([c - ext, c + ext])
            r = 0.0
        pts = pts @ rot.T + t
        lows.append(pts.min(0) - r)
        highs.append(pts.max(0) + r)
    return np.min(lows, axis=0), np.max(highs, axis=0)


def _check_on_base(spec: PuzzleSpec, i: int, lay: PartLayout) -> None:
    depth, width, height = spec.base.size
    lo, hi = shape_bounds(lay, main_only=True)
    # The faces' in-plane extents: front parts use (y, z), the lid uses (x, y).
    axes = (0, 1) if lay.part.mechanism == "lid" else (1, 2)
    bounds = {0: (-depth / 2, depth / 2), 1: (-width / 2, width / 2), 2: (0.0, height)}
    for axis in axes:
        b_lo, b_hi = bounds[axis]
        if lo[axis] < b_lo - _TOLERANCE or hi[axis] > b_hi + _TOLERANCE:
            raise SpecError(f"puzzle.parts[{i}].position", f"part {lay.part.name!r} lies outside the base "
                                                           f"({'xyz'[axis]} from {lo[axis]:.3f} to {hi[axis]:.3f}, "
                                                           f"base {b_lo:.3f}..{b_hi:.3f})", spec.source)


def covers_base_marker(lay: PartLayout, base_size: tuple[float, float, float], margin: float = 0.005) -> bool:
    """Whether a part's shapes, seen from the front, hide any of base marker 0's plate."""
    center, side = markers.base_front_plate(base_size)
    lo, hi = shape_bounds(lay)
    half = side / 2 + margin
    return bool(lo[1] < center[1] + half and hi[1] > center[1] - half
                and lo[2] < center[2] + half and hi[2] > center[2] - half)


def _check_overlaps(spec: PuzzleSpec, layouts: dict[str, PartLayout]) -> None:
    bounds = {name: shape_bounds(lay) for name, lay in layouts.items()}
    names = list(bounds)
    for i, (name, lay) in enumerate(layouts.items()):
        if covers_base_marker(lay, spec.base.size):
            raise SpecError(f"puzzle.parts[{i}].position", f"part {name!r} hides base marker 0 (upper left of the "
                            "front face): every pose is measured from it; move the part", spec.source)
    for a_i, a in enumerate(names):
        for b in names[a_i + 1:]:
            (alo, ahi), (blo, bhi) = bounds[a], bounds[b]
            if np.all(alo < bhi - 1e-3) and np.all(blo < ahi - 1e-3):
                raise SpecError(f"puzzle.parts[{a_i}].position", f"parts {a!r} and {b!r} overlap", spec.source)


def _check_sightlines(spec: PuzzleSpec) -> None:
    """The perception cameras must see every marker and the hand must reach every handle."""
    from puzzlebot.sim.sightlines import obstructions

    found = obstructions(spec)
    if not found:
        return
    first = found[0]
    names = [p.name for p in spec.parts]
    where = f"puzzle.parts[{names.index(first.part)}]" if first.part in names else "puzzle.base"
    more = f" (and {len(found) - 1} more: {'; '.join(map(str, found[1:]))})" if len(found) > 1 else ""
    raise SpecError(where, f"unplayable: {first}{more}", spec.source)


def _check_compiles(spec: PuzzleSpec) -> None:
    """Compile the puzzle alone: MuJoCo's own complaints become SpecErrors naming the puzzle."""
    from puzzlebot.sim.build import puzzle_scene

    try:
        puzzle_scene(spec).compile()
    except ValueError as err:
        raise SpecError("puzzle", f"MuJoCo rejects the compiled puzzle: {err}", spec.source) from None
