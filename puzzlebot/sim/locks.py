"""Physical locks: a pin on the blocker and a keeper on the blocked part, in contact.

Blocking is never scripted. For "A blocks B while A is in [lo, hi], stopping B at `at`",
the keeper is a small tab on B at one of B's lock points; the pin is a tab on A placed just
ahead of the keeper along B's opening motion while A is in its locked range. Moving A out
of that range carries the pin sideways, out of the keeper's path. The two collide only with
each other, through an explicit contact pair, so locks never snag the arm or other parts.

The construction is checked geometrically before compiling (oriented-box overlap tests over
sampled joint values): the pin must never hit the keeper while A moves; B's keeper must hit
the pin when A is locked, and clear it over B's whole travel when A is unlocked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from puzzlebot.sim.mechanisms import PartLayout
from puzzlebot.sim.spec import LockSpec, SpecError

TAB_T = 0.004  # half thickness of pin and keeper along the blocked motion
TAB_H = 0.008  # half height of both across the motion
MIN_HALF_WIDTH = 0.003
OVERLAP_MARGIN = 0.1  # fraction of the locked range the tabs still overlap beyond each end
MAX_MISALIGNMENT = 0.1  # largest |cos| between the blocker's motion and the blocked part's
WIDEN_STEPS = (1.0, 1.15, 1.3, 1.5, 1.75, 2.0)
GAP_STEP = 0.002  # m added to the pin-keeper gap per try when a swinging pin would hit
MAX_EXTRA_GAP = 0.02


@dataclass(frozen=True)
class Tab:
    """A box attached to a part, in that part's q = 0 layout coordinates."""

    center: np.ndarray
    axes: np.ndarray  # 3x3, columns are the box's local x, y, z
    half: np.ndarray  # half extents along the columns


@dataclass(frozen=True)
class LockGeometry:
    blocker: str
    blocked: str
    pin: Tab  # on the blocker
    keeper: Tab  # on the blocked part


def _world(tab: Tab, part: PartLayout, q: float) -> Tab:
    rot, t = part.transform(q)
    return Tab(rot @ tab.center + t, rot @ tab.axes, tab.half)


def boxes_overlap(a: Tab, b: Tab, tol: float = 0.0) -> bool:
    """Separating-axis test for two oriented boxes (shrunk by `tol` to ignore grazing)."""
    ha, hb = a.half - tol, b.half - tol
    d = b.center - a.center
    axes = [a.axes[:, i] for i in range(3)] + [b.axes[:, i] for i in range(3)]
    axes += [np.cross(a.axes[:, i], b.axes[:, j]) for i in range(3) for j in range(3)]
    for axis in axes:
        n = np.linalg.norm(axis)
        if n < 1e-9:
            continue
        axis = axis / n
        ra = np.sum(ha * np.abs(a.axes.T @ axis))
        rb = np.sum(hb * np.abs(b.axes.T @ axis))
        if abs(d @ axis) > ra + rb:
            return False
    return True


def _effective_range(lock: LockSpec, joint_range: tuple[float, float]) -> tuple[float, float]:
    """Extend a locked range that touches a joint limit beyond it, so the limit is well inside."""
    lo, hi = lock.locked_range
    width = hi - lo
    if lo <= joint_range[0]:
        lo -= width
    if hi >= joint_range[1]:
        hi += width
    return lo, hi


def build_lock(lock: LockSpec, blocked: PartLayout, blocker: PartLayout, field: str) -> LockGeometry:
    """Place the pin and keeper for one lock, or raise SpecError saying why it cannot work.

    Lock points of the blocked part are tried best first (motions most nearly perpendicular,
    then nearest to the blocker); the first placement that passes every check is used.
    """
    at = blocked.joint.q0 if lock.at is None else lock.at
    lo, hi = _effective_range(lock, blocker.joint.range)
    mid = 0.5 * (lo + hi)
    blocker_ref = blocker.point_at(blocker.handle.pos, mid)
    candidates = []
    for k in blocked.lock_points:
        p = blocked.point_at(k, at)
        v_b = blocked.velocity_dir(k, at)
        u_a = _pin_velocity(blocker, p, mid)
        if u_a is not None:
            candidates.append((abs(u_a @ v_b) * 10 + np.linalg.norm(p - blocker_ref), p, v_b, u_a))
    error = SpecError(field, f"{lock.blocker!r} moves along {blocked.part.name!r}'s opening direction at every "
                             "lock point, so it cannot block it: use a blocker that moves across it")
    for _, p, v_b, u_a in sorted(candidates, key=lambda c: c[0]):
        if abs(u_a @ v_b) > MAX_MISALIGNMENT:
            continue
        try:
            return _place(lock, blocked, blocker, at, (lo, hi), p, v_b, u_a, field)
        except SpecError as err:
            error = err
    raise error


def _place(lock: LockSpec, blocked: PartLayout, blocker: PartLayout, at: float, effective: tuple[float, float],
           p: np.ndarray, v_b: np.ndarray, u_a: np.ndarray, field: str) -> LockGeometry:
    lo, hi = effective
    mid = 0.5 * (lo + hi)
    e = u_a - (u_a @ v_b) * v_b
    e /= np.linalg.norm(e)
    frame = np.column_stack([v_b, e, np.cross(v_b, e)])
    rot_b, _ = blocked.transform(at)
    rot_a, _ = blocker.transform(mid)
    keeper_center = _to_layout(blocked, p, at)
    # The tabs overlap past both ends of the locked range by a margin, so the blocker holds
    # at its declared limits, not just in between.
    margin = OVERLAP_MARGIN * (hi - lo)
    # A pin that swings on an arc sweeps its corners towards the keeper: widen the gap in
    # steps until the pin clears the keeper over the blocker's whole range (more play).
    error: SpecError | None = None
    for extra in np.arange(0.0, MAX_EXTRA_GAP + 1e-9, GAP_STEP):
        pin_center_world = p + v_b * (2 * TAB_T + lock.play + extra)
        pin_layout = _to_layout(blocker, pin_center_world, mid)
        half_width = min(abs((blocker.point_at(pin_layout, q) - pin_center_world) @ e)
                         for q in (lo - margin, hi + margin))
        half_width = max(half_width, 2 * MIN_HALF_WIDTH)
        # A swinging pin also drifts across (along n): make it tall enough to stay on the keeper.
        drift = max(abs((blocker.point_at(pin_layout, q) - pin_center_world) @ frame[:, 2])
                    for q in np.linspace(lo - margin, hi + margin, 9))
        # ...and turns, which shortens its reach along e: widen until it holds over the whole range.
        for widen in WIDEN_STEPS:
            width = half_width * widen
            keeper = Tab(keeper_center, rot_b.T @ frame, np.array([TAB_T, width / 2, TAB_H]))
            pin = Tab(pin_layout, rot_a.T @ frame, np.array([TAB_T, width / 2, TAB_H + drift]))
            geometry = LockGeometry(lock.blocker, blocked.part.name, pin, keeper)
            try:
                _check(geometry, lock, blocked, blocker, at, field)
                _check_not_backdriven(geometry, lock, blocker, v_b, mid, field)
                return geometry
            except SpecError as err:
                error = err
                if "does not stop" not in err.reason:
                    break
        if error is not None and "would hit" not in error.reason:
            break
    assert error is not None
    raise error


def _check_not_backdriven(geom: LockGeometry, lock: LockSpec, blocker: PartLayout, push: np.ndarray, mid: float,
                          field: str) -> None:
    """The blocked part pushing on the pin must not drive the blocker out of its locked range.

    A slide blocker must move (nearly) across the push. A hinge blocker is safe when the push
    is along its axis, or when the push pulls the pin away from the axis (a stable crank:
    the torque turns it back towards the middle of its locked range); pushing the pin towards
    the axis would flick it open.
    """
    if blocker.kind == "slide":
        return  # MAX_MISALIGNMENT already bounds the component along the slide
    lo, hi = lock.locked_range
    for q in np.linspace(lo, hi, 9):
        rot, t = blocker.transform(q)
        arm = rot @ geom.pin.center + t - blocker.anchor
        torque = np.cross(arm, push) @ blocker.axis  # drives q up when positive
        if torque * (q - mid) > 0.05 * np.linalg.norm(arm) * abs(q - mid) + 1e-9:
            raise SpecError(field, f"pushing {geom.blocked!r} would turn {lock.blocker!r} out of its locked "
                                   f"range (at {q:.2f} the push drives it away from {mid:.2f}): mount it so the "
                                   "push pulls its pin away from its axis, or use a sliding blocker")


def _pin_velocity(blocker: PartLayout, p: np.ndarray, q: float) -> np.ndarray | None:
    """Direction a pin placed at world point p (at blocker value q) moves, or None on the axis."""
    try:
        return blocker.velocity_dir(_to_layout(blocker, p, q), q)
    except ValueError:
        return None


def _to_layout(part: PartLayout, world: np.ndarray, q: float) -> np.ndarray:
    rot, t = part.transform(q)
    return rot.T @ (world - t)


def _check(geom: LockGeometry, lock: LockSpec, blocked: PartLayout, blocker: PartLayout, at: float,
           field: str) -> None:
    """Verify the lock works as declared over sampled joint values."""
    a_lo, a_hi = blocker.joint.range
    b_hi = blocked.joint.range[1]
    keeper_at = _world(geom.keeper, blocked, at)
    for q in np.linspace(a_lo, a_hi, 41):
        if boxes_overlap(_world(geom.pin, blocker, q), keeper_at, tol=2e-4):
            raise SpecError(field, f"the pin of {lock.blocker!r} would hit {geom.blocked!r} while "
                                   f"{lock.blocker!r} moves (at {q:.3f}); mount the blocker elsewhere")
    sweep = np.linspace(at, b_hi, 61)

    def hits(q_a: float) -> bool:
        pin = _world(geom.pin, blocker, q_a)
        return any(boxes_overlap(pin, _world(geom.keeper, blocked, qb)) for qb in sweep)

    lo, hi = lock.locked_range
    for probe in np.linspace(max(lo, a_lo), min(hi, a_hi), 5):
        if not hits(probe):
            raise SpecError(field, f"{lock.blocker!r} at {probe:.3f} (inside its locked range) does not stop "
                                   f"{geom.blocked!r}: the locked range is too narrow for this geometry")
    free = [v for v in ((a_lo + lo) / 2 if lo > a_lo else None, (hi + a_hi) / 2 if hi < a_hi else None)
            if v is not None]
    if not free:
        raise SpecError(field, f"locked_range {lock.locked_range} covers all of {lock.blocker!r}'s range "
                               f"{blocker.joint.range}: it could never be unlocked")
    for q_a in free:
        if hits(q_a):
            raise SpecError(field, f"{lock.blocker!r} at {q_a:.3f} (outside its locked range) still stops "
                                   f"{geom.blocked!r}: its pin does not clear the keeper's path")
