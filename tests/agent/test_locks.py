"""Lock-graph discovery from attempted moves, against generated puzzles' true lock graphs.

The puzzle's answer to an attempt comes from its true lock logic (the test plays the world);
the beliefs only ever see (part tried, parts already moved, did it move).
"""

from __future__ import annotations

import numpy as np
import pytest

from puzzlebot.agent.locks import Attempt, LockBeliefs, next_probe, random_probe
from puzzlebot.sim.generator import GeneratorConfig, generate
from puzzlebot.sim.logic import PuzzleLogic

SLIP = 0.05


def explore(spec, active: bool, seed: int, budget: int = 150) -> tuple[LockBeliefs, int]:
    """Try parts for `budget` probes; returns the beliefs and the probes after which the MAP lock
    graph was right for good (the truth is used only to score, never by the beliefs)."""
    logic = PuzzleLogic(spec)
    rng = np.random.default_rng(seed)
    names = list(logic.names)
    beliefs = LockBeliefs(names, slip=SLIP)
    state = dict(zip(names, logic.initial_state(), strict=True))
    truth = true_graph(spec)
    settled = budget
    for probe in range(1, budget + 1):
        displaced = frozenset(n for n in names if state[n] != logic.joints[n].q0)
        candidates = [n for n in names if n not in displaced]
        if not candidates:  # everything open: put the puzzle back and keep learning
            state = dict(zip(names, logic.initial_state(), strict=True))
            displaced, candidates = frozenset(), names
        part = next_probe(beliefs, candidates, displaced) if active else random_probe(rng, candidates)
        target = logic.joints[part].range[1]
        can = logic.can_move(part, target, state)
        moved = can if rng.random() > SLIP else not can  # a slipped grasp or a lucky nudge
        if moved and can:
            state[part] = target
        beliefs.update(Attempt(part, displaced, moved))
        if beliefs.map_graph() != truth:
            settled = budget
        elif settled == budget:
            settled = probe
    return beliefs, settled


def true_graph(spec) -> dict[str, frozenset[str]]:
    return {p.name: frozenset(lock.blocker for lock in p.blocked_by) for p in spec.parts}


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_active_exploration_finds_the_exact_lock_graph(depth):
    for seed in range(3):
        spec = generate(GeneratorConfig(depth=depth, seed=seed))
        beliefs, probes = explore(spec, active=True, seed=seed)
        assert beliefs.map_graph() == true_graph(spec), f"depth {depth} seed {seed}"
        assert probes < 150


def test_active_is_no_worse_than_random():
    """Greedy one-step information gain vs random choice over the same moves (the issue's 3x
    target needs non-myopic exploration: not reached yet, see the closing note)."""
    active, random = [], []
    for depth in (3, 4, 5):
        for seed in range(4):
            spec = generate(GeneratorConfig(depth=depth, seed=seed))
            active.append(explore(spec, active=True, seed=seed)[1])
            random.append(explore(spec, active=False, seed=seed)[1])
    assert np.median(active) <= np.median(random), (np.median(active), np.median(random))


def test_probabilities_follow_the_evidence():
    beliefs = LockBeliefs(["drawer", "bolt"], slip=SLIP)
    prior = beliefs.probability_blocks("bolt", "drawer")
    beliefs.update(Attempt("drawer", frozenset(), moved=False))  # the drawer is stuck
    stuck = beliefs.probability_blocks("bolt", "drawer")
    beliefs.update(Attempt("drawer", frozenset({"bolt"}), moved=True))  # bolt slid: it opens
    opened = beliefs.probability_blocks("bolt", "drawer")  # both hypotheses predicted that: no change
    beliefs.update(Attempt("drawer", frozenset(), moved=False))  # stuck again with the bolt shut
    assert prior < stuck and opened == pytest.approx(stuck)
    assert beliefs.probability_blocks("bolt", "drawer") > opened
    assert beliefs.map_graph()["drawer"] == frozenset({"bolt"})
    assert beliefs.move_probability("drawer", frozenset()) < 0.2 < 0.8 < beliefs.move_probability(
        "drawer", frozenset({"bolt"}))
