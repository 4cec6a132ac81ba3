"""The exploration loop's planning pieces, at the logic level (no robot)."""

import numpy as np

from puzzlebot.agent.explorer import ArmMoves, plan_to_open
from puzzlebot.agent.locks import (
    CLOSE,
    OPEN,
    TEST,
    LockBeliefs,
    Probe,
    RandomExplorer,
    graph_moves,
    probes_allowed,
    simulate_exploration,
)
from puzzlebot.agent.probing import Interaction

CHAIN = {"bolt": frozenset(), "drawer": frozenset({"bolt"}), "lid": frozenset({"drawer"}), "knob": frozenset()}


def test_plan_opens_the_blockers_first_and_only_them() -> None:
    plan = plan_to_open("lid", frozenset(), CHAIN)
    assert plan == [Probe("bolt", OPEN), Probe("drawer", OPEN), Probe("lid", OPEN)]
    assert plan_to_open("knob", frozenset(), CHAIN) == [Probe("knob", OPEN)]
    assert plan_to_open("drawer", frozenset({"bolt"}), CHAIN) == [Probe("drawer", OPEN)]


def test_plan_is_none_when_the_believed_graph_cannot_free_the_part() -> None:
    graph = {"a": frozenset(), "b": frozenset({"a"}), "c": frozenset()}
    assert plan_to_open("a", frozenset({"c"}), graph) == [Probe("a", OPEN)]  # c open is no obstacle
    loop = {"a": frozenset({"b"}), "b": frozenset({"a"})}
    assert plan_to_open("a", frozenset(), loop) is None


def test_one_way_parts_end_the_search_instead_of_looping() -> None:
    """A pressed button the robot cannot pull back: the loop learns it is one-way and stops when
    nothing more can be told apart, rather than spending its whole budget."""
    truth = {"door": frozenset(), "button": frozenset()}
    world = graph_moves(truth)

    def moves(part: str, direction: str, displaced: frozenset[str]) -> bool | None:
        if part == "button" and direction == CLOSE:
            return None
        return world(part, direction, displaced)

    for explorer in (RandomExplorer(),):
        for seed in range(5):
            beliefs = LockBeliefs(list(truth))
            result = simulate_exploration(moves, list(truth), explorer, np.random.default_rng(seed), 200,
                                          beliefs=beliefs)
            assert result.probes < 60
            assert result.confident or result.exhausted
            if "button" in {a.part for a in result.attempts if a.moved}:
                assert ("button", CLOSE) in beliefs.cannot or result.confident
            assert result.graph == truth


class _GivingProber:
    """Stands in for the arm: every probe finds the part gives, first way tried."""

    def __init__(self, modes: dict[str, str]):
        self.modes = modes
        self.calls: list[tuple[str, str]] = []

    def probe(self, part, direction, hint=None, handle=None, avoid=(), pace=None) -> Interaction:
        self.calls.append((part, direction))
        return Interaction(part, self.modes[part], direction, moved=True, tried=[np.array([0.0, 1.0, 0.0])])


def test_a_pushed_part_that_gave_to_a_test_is_not_tested_again() -> None:
    """It is not brought back, so each test would push it further out of where it blocks (a
    grasped part is tugged and returned: it may be tested again)."""
    cannot: set = set()
    arm = ArmMoves(_GivingProber({"bolt": "push", "drawer": "grasp"}), None, cannot)
    assert arm("bolt", TEST, frozenset()) and arm("drawer", TEST, frozenset())
    assert ("bolt", TEST) in cannot and ("drawer", TEST) not in cannot
    beliefs = LockBeliefs(["bolt", "drawer"])
    beliefs.cannot.update({("bolt", CLOSE), ("drawer", CLOSE)} | cannot)
    assert Probe("bolt", TEST) not in probes_allowed(beliefs, frozenset())
    assert Probe("drawer", TEST) in probes_allowed(beliefs, frozenset())
