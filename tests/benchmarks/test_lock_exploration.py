"""The logic-level exploration benchmark: its misread outcomes and what one exploration counts."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from lock_exploration import explore_logic, misread_tests  # noqa: E402

from puzzlebot.agent.locks import OPEN, TEST  # noqa: E402
from puzzlebot.sim.generator import GeneratorConfig, generate  # noqa: E402

TRUTH = {"drawer": frozenset({"bolt"}), "bolt": frozenset()}


def test_tests_are_misread_at_the_rate_and_opens_never():
    moves = misread_tests(TRUTH, 0.25, np.random.default_rng(0))
    tests = [moves("drawer", TEST, frozenset()) for _ in range(4000)]  # truly blocked
    assert abs(np.mean(tests) - 0.25) < 0.03
    assert not any(moves("drawer", OPEN, frozenset()) for _ in range(500))
    assert all(moves("drawer", OPEN, frozenset({"bolt"})) for _ in range(500))


def test_the_active_explorer_ends_with_the_true_graph_when_nothing_is_misread():
    for seed in range(3):
        spec = generate(GeneratorConfig(depth=3, seed=seed))
        row = explore_logic(spec, "active", misread=0.0, seed=seed)
        assert row["lock_graph"]["exact"], spec.name
        # every part gets opened in the end: the exploration's opens plus one for each it left
        assert row["probes"] >= row["lock_probes"] and row["probes"] >= len(spec.parts)
