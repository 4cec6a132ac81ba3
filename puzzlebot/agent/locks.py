"""Which part blocks which: Bayesian lock-graph hypotheses updated by every attempted move.

For each part B the hypotheses are the sets S of other parts (at most `max_blockers`) that
block it while they sit where they started. An attempt to move B in a state where the parts
in `displaced` have been moved away from their start succeeds, under hypothesis S, unless
some member of S is still in place. Outcomes are noisy (a grasp can slip, a push can miss),
so a contradicting outcome lowers a hypothesis instead of killing it. Smaller sets are a
priori more likely (most parts have one blocker or none).

`next_probe` chooses the attempt with the largest expected information gain about the lock
graph — the active explorer; `random_probe` is the baseline with the same moves.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Attempt:
    part: str
    displaced: frozenset[str]  # parts moved away from their start when the attempt was made
    moved: bool


class LockBeliefs:
    """Posterior over each part's blocker set, from attempts."""

    def __init__(self, parts: Sequence[str], max_blockers: int = 2, slip: float = 0.05, size_prior: float = 0.3):
        """Args:
            parts: every part that can be tried.
            max_blockers: largest blocker set considered per part.
            slip: probability an attempt's outcome contradicts the true lock state (failed grasp, ...).
            size_prior: prior weight ratio per extra blocker (0.3: one blocker is 0.3x as likely as none).
        """
        self.parts = tuple(parts)
        self.slip = slip
        self.hypotheses: dict[str, list[frozenset[str]]] = {}
        self.log_post: dict[str, np.ndarray] = {}
        for part in self.parts:
            others = [p for p in self.parts if p != part]
            sets = [frozenset(c) for k in range(max_blockers + 1) for c in itertools.combinations(others, k)]
            self.hypotheses[part] = sets
            self.log_post[part] = np.array([len(s) * np.log(size_prior) for s in sets])
            self.log_post[part] -= _logsumexp(self.log_post[part])

    def _predicts_move(self, part: str, displaced: frozenset[str]) -> np.ndarray:
        return np.array([s <= displaced for s in self.hypotheses[part]])

    def update(self, attempt: Attempt) -> None:
        predicted = self._predicts_move(attempt.part, attempt.displaced)
        agree = predicted == attempt.moved
        self.log_post[attempt.part] = self.log_post[attempt.part] + np.where(agree, np.log1p(-self.slip),
                                                                             np.log(self.slip))
        self.log_post[attempt.part] -= _logsumexp(self.log_post[attempt.part])

    def update_all(self, attempts: Iterable[Attempt]) -> None:
        for attempt in attempts:
            self.update(attempt)

    def probability_blocks(self, blocker: str, part: str) -> float:
        """Marginal probability that `blocker` blocks `part`."""
        post = np.exp(self.log_post[part])
        return float(sum(p for p, s in zip(post, self.hypotheses[part], strict=True) if blocker in s))

    def map_graph(self) -> dict[str, frozenset[str]]:
        """The most probable blocker set of every part."""
        return {part: self.hypotheses[part][int(np.argmax(self.log_post[part]))] for part in self.parts}

    def confidence(self) -> float:
        """Probability of the MAP lock graph as a whole (parts are independent here)."""
        return float(np.prod([np.exp(lp.max()) for lp in self.log_post.values()]))

    def move_probability(self, part: str, displaced: frozenset[str]) -> float:
        post = np.exp(self.log_post[part])
        p_free = float(post @ self._predicts_move(part, displaced))
        return p_free * (1 - self.slip) + (1 - p_free) * self.slip

    def expected_information_gain(self, part: str, displaced: frozenset[str]) -> float:
        """Expected entropy drop of `part`'s hypotheses from one attempt in this state."""
        post = np.exp(self.log_post[part])
        predicted = self._predicts_move(part, displaced)
        prior_entropy = _entropy(post)
        gain = prior_entropy
        for moved in (True, False):
            like = np.where(predicted == moved, 1 - self.slip, self.slip)
            evidence = float(post @ like)
            if evidence > 0:
                gain -= evidence * _entropy(post * like / evidence)
        return gain


def next_probe(beliefs: LockBeliefs, candidates: Sequence[str], displaced: frozenset[str]) -> str:
    """The part to try next in the current state: the largest expected information gain."""
    return max(candidates, key=lambda part: beliefs.expected_information_gain(part, displaced))


def random_probe(rng: np.random.Generator, candidates: Sequence[str]) -> str:
    return candidates[int(rng.integers(len(candidates)))]


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _logsumexp(x: np.ndarray) -> float:
    top = x.max()
    return float(top + np.log(np.exp(x - top).sum()))
