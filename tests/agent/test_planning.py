"""Plans over the lock beliefs' uncertainty, against ground-truth lock graphs."""

import numpy as np
import pytest

from puzzlebot.agent.explorer import plan_to_open
from puzzlebot.agent.locks import OPEN, ActiveExplorer, Attempt, LockBeliefs, apply_outcome, graph_moves
from puzzlebot.agent.planning import robust_plan
from puzzlebot.agent.solve import SolveConfig, _next_move


def test_a_plan_hedges_over_blockers_the_beliefs_cannot_tell_apart():
    parts = ["door", "bolt", "knob", "lever"]
    beliefs = LockBeliefs(parts, slip=0.05, size_prior={"door": 1.0, "bolt": 0.3, "knob": 0.3, "lever": 0.3})
    beliefs.update(Attempt("door", frozenset(), False, OPEN))  # locked by something
    beliefs.update(Attempt("lever", frozenset(), True, OPEN))  # the lever opened, and then the door
    beliefs.update(Attempt("door", frozenset({"lever"}), False, OPEN))  # still did not: bolt or knob
    rng = np.random.default_rng(0)
    plan = robust_plan("door", frozenset({"lever"}), beliefs, rng)
    opened = [p.part for p in plan.moves]
    assert opened[-1] == "door" and {"bolt", "knob"} <= set(opened)
    # the MAP graph's plan bets on one of them, and opens the door less often over the posterior
    (bet,) = {p.part for p in plan_to_open("door", frozenset({"lever"}), beliefs.map_graph())} - {"door"}
    draws = beliefs.sample_graphs(np.random.default_rng(1), 400)
    bet_works = np.mean([graph_moves(g)(bet, OPEN, frozenset({"lever"}))
                         and graph_moves(g)("door", OPEN, frozenset({"lever", bet})) for g in draws])
    assert plan.p_success > bet_works + 0.1
    with pytest.raises(ValueError, match="samples"):
        robust_plan("door", frozenset(), beliefs, rng, samples=0)


def _random_lockbox(rng: np.random.Generator) -> tuple[dict[str, set[str]], str]:
    """A random lock DAG over 4-7 parts: a target and 1-2 blockers for each of the first few."""
    parts = [f"p{i}" for i in range(int(rng.integers(4, 8)))]
    order = [str(p) for p in rng.permutation(parts)]
    graph: dict[str, set[str]] = {p: set() for p in parts}
    for i in range(int(rng.integers(1, len(parts) - 1))):
        later = order[i + 1:]
        graph[order[i]] |= {str(b) for b in rng.choice(later, size=min(len(later), int(rng.integers(1, 3))),
                                                       replace=False)}
    return graph, order[0]


def _moves_to_open(graph: dict[str, set[str]], target: str, planner: str, seed: int) -> int:
    """The solve loop's move choice on a noise-free lock graph: moves until the target opens."""
    rng = np.random.default_rng(seed)
    parts, world = sorted(graph), graph_moves(graph)
    beliefs = LockBeliefs(parts, slip=0.05, size_prior={p: 1.0 if p == target else 0.3 for p in parts})
    config, displaced = SolveConfig(planner=planner), frozenset()
    failed: dict = {}
    seen: dict = {}
    unattempted: dict = {}
    for n in range(1, 41):
        probe, _ = _next_move(target, beliefs, displaced, failed, seen, config, ActiveExplorer(), rng)
        moved = world(probe.part, probe.direction, displaced)
        if moved and probe.part == target and probe.direction == OPEN:
            return n
        seen.setdefault((probe.part, probe.direction, displaced), []).append(moved)
        if not moved and probe.direction == OPEN:
            failed[(probe.part, displaced)] = failed.get((probe.part, displaced), 0) + 1
        _, displaced = apply_outcome(beliefs, probe, displaced, moved, unattempted)
    return 41


def test_hedged_plans_open_random_lockboxes_in_fewer_moves_than_the_map_plan():
    rng = np.random.default_rng(7)
    boxes = [_random_lockbox(rng) for _ in range(30)]
    robust = [_moves_to_open(g, t, "robust", k) for k, (g, t) in enumerate(boxes)]
    map_plan = [_moves_to_open(g, t, "map", k) for k, (g, t) in enumerate(boxes)]
    assert max(robust) <= 40 and max(map_plan) <= 40  # both always get there
    assert np.mean(robust) < 0.95 * np.mean(map_plan)
