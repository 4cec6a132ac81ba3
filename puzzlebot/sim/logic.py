"""The puzzle's lock logic as a discrete search problem (the oracle's and generator's view).

Each part takes one of a few candidate joint values: where it starts, its limits, the goal's
value, and a value well clear of each locked range it takes part in. A move takes one part
from its value to another; it is legal when no lock stops it on the way. Breadth-first
search gives the shortest solving sequence: its length is the puzzle's depth.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from puzzlebot.sim.mechanisms import DEFAULTS
from puzzlebot.sim.spec import JointSpec, LockSpec, PuzzleSpec

_EPS = 1e-9
UNLOCK_MARGIN = 0.15  # fraction of a locked range's width a blocker must clear to count as unlocked
STOP_TOLERANCE = 0.05  # fraction of a part's range it may press past its stop and still be held


@dataclass(frozen=True)
class Move:
    """Move `part` to joint value `target`."""

    part: str
    target: float

    def __str__(self) -> str:
        return f"{self.part} -> {self.target:.3f}"


class PuzzleLogic:
    """Which moves are legal in which state, and the shortest solving sequence."""

    def __init__(self, spec: PuzzleSpec, max_states: int = 200_000):
        self.spec = spec
        self.max_states = max_states
        self.names = [p.name for p in spec.parts]
        self.joints: dict[str, JointSpec] = {p.name: p.joint or DEFAULTS[p.mechanism][1] for p in spec.parts}
        self.locks: dict[str, list[LockSpec]] = {p.name: list(p.blocked_by) for p in spec.parts}
        self.candidates = {name: self._candidates(name) for name in self.names}

    def _candidates(self, name: str) -> tuple[float, ...]:
        joint = self.joints[name]
        lo, hi = joint.range
        values = {joint.q0, lo, hi}
        for goal in self.spec.goal:
            if goal.part == name:
                g_lo = lo if goal.min is None else goal.min
                g_hi = hi if goal.max is None else goal.max
                values.add(hi if g_hi >= hi else 0.5 * (max(g_lo, lo) + g_hi))
        for part in self.spec.parts:
            for lock in part.blocked_by:
                if lock.blocker == name:
                    l_lo, l_hi = lock.locked_range
                    if l_lo > lo:
                        values.add(0.5 * (lo + l_lo))
                    if l_hi < hi:
                        values.add(0.5 * (l_hi + hi))
        return tuple(sorted(values))

    def initial_state(self) -> tuple[float, ...]:
        return tuple(self.joints[n].q0 for n in self.names)

    def is_locked(self, lock: LockSpec, state: dict[str, float]) -> bool:
        """Whether the blocker may still hold: inside its locked range widened by a margin.

        Observed states come from a physical world: a blocker a hair outside its declared
        range can still catch the keeper, so only a clear exit counts as unlocked.
        """
        lo, hi = lock.locked_range
        margin = UNLOCK_MARGIN * (hi - lo) + _EPS
        return lo - margin <= state[lock.blocker] <= hi + margin

    def stop_value(self, name: str, lock: LockSpec) -> float:
        at = self.joints[name].q0 if lock.at is None else lock.at
        return at + lock.play

    def past_stop(self, name: str, lock: LockSpec, q: float) -> bool:
        """Whether part `name` at value q is clearly beyond where `lock` stops it (not pressing on it)."""
        lo, hi = self.joints[name].range
        return q > self.stop_value(name, lock) + STOP_TOLERANCE * (hi - lo)

    def can_move(self, name: str, target: float, state: dict[str, float]) -> bool:
        """Whether `name` can travel from its current value to `target` in `state`."""
        current = state[name]
        if target > current:
            for lock in self.locks[name]:
                stop = self.stop_value(name, lock)
                if not self.past_stop(name, lock, current) and target > stop and self.is_locked(lock, state):
                    return False
        # A blocker cannot swing its pin into the path of a part that already moved past it.
        lo_t, hi_t = min(current, target), max(current, target)
        for part in self.spec.parts:
            for lock in part.blocked_by:
                if lock.blocker != name:
                    continue
                l_lo, l_hi = lock.locked_range
                crosses = hi_t >= l_lo and lo_t <= l_hi
                if crosses and not self.is_locked(lock, state) and self.past_stop(part.name, lock, state[part.name]):
                    return False
        return True

    def goal_holds(self, state: dict[str, float]) -> bool:
        return all(goal.holds(state[goal.part]) for goal in self.spec.goal)

    def solve(self, start: dict[str, float] | None = None) -> list[Move] | None:
        """Shortest sequence of moves from `start` (default: initial values) to the goal, or None."""
        # Observed values are used as they are (never snapped to candidates): the goal and the
        # locks are judged on what the world shows.
        first = self.initial_state() if start is None else tuple(float(start[n]) for n in self.names)
        parents: dict[tuple[float, ...], tuple[tuple[float, ...], Move] | None] = {first: None}
        queue = deque([first])
        while queue:
            values = queue.popleft()
            state = dict(zip(self.names, values, strict=True))
            if self.goal_holds(state):
                return self._path(parents, values)
            for i, name in enumerate(self.names):
                for target in self.candidates[name]:
                    if target == values[i] or not self.can_move(name, target, state):
                        continue
                    nxt = values[:i] + (target,) + values[i + 1:]
                    if nxt not in parents:
                        parents[nxt] = (values, Move(name, target))
                        if len(parents) > self.max_states:
                            raise RuntimeError(f"puzzle {self.spec.name!r}: search exceeded {self.max_states} "
                                               "states; raise max_states or simplify the puzzle")
                        queue.append(nxt)
        return None

    @staticmethod
    def _path(parents, values) -> list[Move]:
        moves = []
        while parents[values] is not None:
            values, move = parents[values]
            moves.append(move)
        return moves[::-1]

    def reachable_states(self) -> list[dict[str, float]]:
        """Every state reachable from the initial one over the candidate values."""
        first = self.initial_state()
        seen = {first}
        queue = deque([first])
        while queue:
            values = queue.popleft()
            state = dict(zip(self.names, values, strict=True))
            for i, name in enumerate(self.names):
                for target in self.candidates[name]:
                    if target != values[i] and self.can_move(name, target, state):
                        nxt = values[:i] + (target,) + values[i + 1:]
                        if nxt not in seen:
                            seen.add(nxt)
                            queue.append(nxt)
                            if len(seen) > self.max_states:
                                raise RuntimeError(f"puzzle {self.spec.name!r}: more than {self.max_states} states")
        return [dict(zip(self.names, v, strict=True)) for v in seen]

    def explain_unsolvable(self) -> str:
        """A human reason why no sequence reaches the goal from the initial state."""
        states = self.reachable_states()
        for goal in self.spec.goal:
            if not any(goal.holds(state[goal.part]) for state in states):
                blockers = sorted({lock.blocker for lock in self.locks[goal.part]})
                why = f", held by {blockers} which never unlock" if blockers else ""
                return f"{goal.part!r} never reaches [{goal.min}, {goal.max}]{why}"
        parts = ", ".join(sorted({g.part for g in self.spec.goal}))
        return (f"each goal condition can be met, but never all at once (parts {parts}): "
                "a move the goal needs is blocked by a state another goal condition needs")

    def depth(self) -> int:
        """Length of the shortest solving sequence (raises if the puzzle cannot be solved)."""
        plan = self.solve()
        if plan is None:
            raise ValueError(f"puzzle {self.spec.name!r} is unsolvable")
        return len(plan)
