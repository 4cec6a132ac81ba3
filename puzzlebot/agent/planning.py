"""Plans over the lock beliefs' uncertainty: which sequence of moves opens a part.

The most probable lock graph's shortest plan bets everything on that one graph. Here plans
are searched under lock graphs drawn from the posterior: each draw's shortest plan (BFS in its
state space, `explorer.plan_to_open`) is a candidate, and every candidate is scored on every
draw by the moves it takes there to open the target, or, where it does not, its length plus
`replan_cost`. The cheapest in expectation wins. A failed plan costs far more than one move:
the loop has to find out which belief was wrong, and with `replan_cost` large the planner
hedges, opening every part that may block the target before trying it, where the MAP plan
bets on one graph and tries the door first. On random lock DAGs of 4-8 parts (60 each, the
solve loop's own move choice, noise-free and with 5 % of outcomes flipped) the hedging
planner opened the target in 6.1-6.2 moves on average against the MAP plan's 7.0-7.5; a
`replan_cost` of 2 moves was worse than MAP (7.4-7.7). Parts never tried are planned with
their prior odds, so a plan through them is a probe as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from puzzlebot.agent.explorer import plan_to_open
from puzzlebot.agent.locks import CLOSE, OPEN, LockBeliefs, Probe, graph_moves


@dataclass(frozen=True)
class ScoredPlan:
    moves: tuple[Probe, ...]
    p_success: float  # fraction of the posterior's graphs under which the plan opens the target
    expected_moves: float  # over those graphs, with `replan_cost` where it fails

    def describe(self) -> str:
        return (" -> ".join(f"{p.direction} {p.part}" for p in self.moves)
                + f" (p={self.p_success:.2f}, {self.expected_moves:.1f} moves expected)")


def robust_plan(target: str, displaced: frozenset[str], beliefs: LockBeliefs, rng: np.random.Generator,
                samples: int = 64, replan_cost: float = 100.0,
                cannot: frozenset[tuple[str, str]] = frozenset()) -> ScoredPlan | None:
    """The plan expected to open `target` from `displaced` in the fewest moves, across `samples`
    lock graphs drawn from `beliefs` (candidates: each draw's shortest plan and the MAP graph's);
    None if no graph has one."""
    if samples < 1 or replan_cost < 0:
        raise ValueError(f"robust_plan: samples ({samples}) must be >= 1 and replan_cost ({replan_cost}) >= 0")
    graphs = [beliefs.map_graph()] + beliefs.sample_graphs(rng, samples)
    candidates: dict[tuple[Probe, ...], None] = {}
    for graph in graphs:
        plan = plan_to_open(target, displaced, graph, cannot=cannot)
        if plan:
            candidates.setdefault(tuple(plan), None)
    if not candidates:
        return None
    worlds = [graph_moves(g) for g in graphs[1:]]
    best: ScoredPlan | None = None
    for moves in candidates:
        used = np.array([_moves_to_open(moves, target, displaced, world) for world in worlds], dtype=float)
        works = np.isfinite(used)
        cost = np.where(works, used, len(moves) + replan_cost)
        plan = ScoredPlan(moves, float(works.mean()), float(cost.mean()))
        if best is None or plan.expected_moves < best.expected_moves - 1e-9:
            best = plan
    return best


def _moves_to_open(moves: tuple[Probe, ...], target: str, displaced: frozenset[str], world) -> float:
    """Moves made, in order from `displaced`, until `target` opens in `world` (inf if it does
    not; a move that does not go leaves the state as it was, and the plan goes on)."""
    state = displaced
    for n, probe in enumerate(moves, start=1):
        if (probe.direction == CLOSE) != (probe.part in state):
            continue  # an earlier move did not go: this one cannot be made here
        if world(probe.part, probe.direction, state):
            if probe.part == target and probe.direction == OPEN:
                return float(n)
            state = state ^ {probe.part}
    return float("inf")
