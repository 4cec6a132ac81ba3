"""Which part blocks which: Bayesian lock-graph hypotheses, and the probes that reveal them.

The abstraction. Each part is either where it started or *displaced* (moved to the far end of
its travel); the state is the displaced set D. A probe tries to move one part: "open" a part
not in D, or "close" (return to its start) a part in D. Each part B has a blocker set S_B:
  * opening B succeeds iff every member of S_B is displaced (S_B <= D);
  * closing X succeeds iff no displaced part is blocked by X (a blocker cannot swing back into
    the path of a part that already moved past it: `PuzzleLogic.can_move`'s second check).
    A part's own blockers never stop it from going back.
For generated lockboxes this matches `PuzzleLogic.can_move` exactly (the tests check every
state): each lock's range holds the blocker's start and releases well before its far end.
"Moved" means reached the far end (or the start): a blocked part that gives a little, up to
`LockSpec.at` plus play, has not moved. Limits: a lock that releases only in an intermediate
band of the blocker's travel (its locked range covering the far end), or whose blocker starts
outside its locked range, is not representable, nor is a goal needing a part half-way.

A probe can also "test" a part in place: move it a little and let it be (a tug of a
centimetre, a press of a few millimetres: well inside the travel over which a part blocks
others). Its outcome says what an open's would (does B give in state D?) but the state does not
change, so nothing is given up for good: with parts that cannot be brought back, tests are how
"does X block Y" is asked before X is opened.

The hypotheses for B are the sets of other parts (at most `max_blockers`); smaller sets are a
priori more likely. Outcomes are noisy (a grasp can slip, a push can miss) with probability
`slip` either way, so a contradicting outcome lowers a hypothesis instead of killing it. An
opening attempt informs only B's posterior (exact); a closing attempt of X informs every
displaced part about whether X blocks it, and the posterior is kept factored per part by
moment matching (each factor set to its exact marginal).

Only the reachable states can be observed, and in them a blocker set is indistinguishable from
one with a blocker's own (transitive) blockers added: `confidence` therefore scores the MAP
graph up to that equivalence, which is what any explorer can learn, and `map_graph` reports the
smallest set of each class.

`next_probe` plans a few probes ahead (expected information gain about the whole graph,
through both outcomes of each probe) — the active explorer; `random_probe` is the baseline
over the same moves. Both stop by `confident`, and `simulate_exploration` plays either against
an outcome function (the robot, or a lock logic in tests). A robot loop does the same steps:

    probe = ActiveExplorer().choose(beliefs, displaced, rng)
    moved = <try probe.part in probe.direction>
    beliefs.update(Attempt(probe.part, displaced, moved, probe.direction))
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

OPEN = "open"
CLOSE = "close"
TEST = "test"  # move a part a little and leave it in its start region (see the module docstring)
MAX_PARTS = 62  # the displaced set and blocker sets are bit masks in int64


@dataclass(frozen=True)
class Probe:
    """Try to move `part`: "open" moves it away from its start, "close" brings it back, "test"
    moves it a little and leaves it where it started."""

    part: str
    direction: str = OPEN


@dataclass(frozen=True)
class Attempt:
    part: str
    displaced: frozenset[str]  # parts moved away from their start when the attempt was made
    moved: bool
    direction: str = OPEN


class LockBeliefs:
    """Posterior over each part's blocker set, from attempts (factored per part)."""

    def __init__(self, parts: Sequence[str], max_blockers: int = 2, slip: float = 0.05,
                 size_prior: float | Mapping[str, float] = 0.3,
                 edge_odds: Mapping[tuple[str, str], float] | None = None):
        """Args:
            parts: every part that can be tried.
            max_blockers: largest blocker set considered per part.
            slip: probability an attempt's outcome contradicts the true lock state (failed grasp, ...).
            size_prior: prior weight ratio per extra blocker (0.3: one blocker is 0.3x as likely as none);
                per part, a mapping (a drawer is more often locked than the bolt beside it).
            edge_odds: prior odds that `blocker` blocks `part`, per (blocker, part) pair (e.g. a
                family's lock pattern, `agent.memory`); replaces `size_prior` where given. A blocker
                set's prior weight is the product of its edges' odds.
        """
        self.parts = tuple(parts)
        if len(self.parts) > MAX_PARTS:
            raise ValueError(f"at most {MAX_PARTS} parts (states are 64-bit masks), got {len(self.parts)}")
        self.index = {part: i for i, part in enumerate(self.parts)}
        self.slip = slip
        self.hypotheses: dict[str, list[frozenset[str]]] = {}
        owner, masks, logp = [], [], []
        for i, part in enumerate(self.parts):
            others = [p for p in self.parts if p != part]
            sets = [frozenset(c) for k in range(max_blockers + 1) for c in itertools.combinations(others, k)]
            self.hypotheses[part] = sets
            owner += [i] * len(sets)
            masks += [self._bits(s) for s in sets]
            ratio = size_prior[part] if isinstance(size_prior, Mapping) else size_prior
            odds = {b: (edge_odds or {}).get((b, part), ratio) for b in others}
            if not all(np.isfinite(v) and v > 0 for v in odds.values()):
                raise ValueError(f"edge_odds for part {part!r}: every odds must be finite and > 0, got {odds}")
            prior = np.array([sum(np.log(odds[b]) for b in s) for s in sets])
            logp += list(prior - _logsumexp(prior))
        self._owner = np.array(owner)  # hypothesis -> the part it is about
        self._mask = np.array(masks, dtype=np.int64)  # hypothesis -> its blockers as bits
        self._member = (self._mask[:, None] >> np.arange(len(self.parts))) & 1 == 1  # (hypotheses, parts)
        self._onehot = (self._owner[None, :] == np.arange(len(self.parts))[:, None]).astype(float)  # (parts, hyp.)
        self._start = np.searchsorted(self._owner, np.arange(len(self.parts) + 1))
        self._logp = np.array(logp)
        self._prior_logp = self._logp.copy()
        self.cannot: set[tuple[str, str]] = set()
        """(part, direction) moves the robot cannot make (a pressed button it cannot pull back, a
        handle it cannot take hold of): never chosen. Learned from moves it could not attempt."""

    def _bits(self, parts: Iterable[str]) -> int:
        return sum(1 << self.index[p] for p in parts)

    def _segment(self, part: str) -> slice:
        i = self.index[part]
        return slice(self._start[i], self._start[i + 1])

    @property
    def log_post(self) -> dict[str, np.ndarray]:
        """Each part's log posterior over `hypotheses[part]` (copies)."""
        return {part: self._logp[self._segment(part)].copy() for part in self.parts}

    # ------------------------------------------------------------------ evidence

    def update(self, attempt: Attempt) -> None:
        """Condition on one attempt (raises if the move is impossible in its state)."""
        _check(attempt.part, attempt.direction, attempt.displaced)
        self._logp = np.log(_updated(self, np.exp(self._logp), self.index[attempt.part],
                                     self._bits(attempt.displaced), attempt.moved) + 1e-300)

    def update_all(self, attempts: Iterable[Attempt]) -> None:
        for attempt in attempts:
            self.update(attempt)

    def refit(self, attempts: Iterable[Attempt]) -> None:
        """Forget all evidence and condition on `attempts` instead (an earlier outcome was
        misread, e.g. a part believed open was not); what the robot cannot do is kept."""
        self._logp = self._prior_logp.copy()
        self.update_all(attempts)

    # ------------------------------------------------------------------ queries

    def log_likelihood(self, part: str) -> np.ndarray:
        """The evidence on `part`'s blocker sets, `hypotheses[part]`: log posterior less log prior
        (up to a constant), what a different prior would be combined with (`agent.memory`)."""
        seg = self._segment(part)
        out = self._logp[seg] - self._prior_logp[seg]
        return out - out.max()

    def probability_blocks(self, blocker: str, part: str) -> float:
        """Marginal probability that `blocker` blocks `part`."""
        post = np.exp(self.log_post[part])
        return float(sum(p for p, s in zip(post, self.hypotheses[part], strict=True) if blocker in s))

    def map_graph(self) -> dict[str, frozenset[str]]:
        """The most probable blocker set of every part, without blockers implied by the others.

        A blocker's own (transitive) blockers are displaced whenever it is, so adding them to a
        set changes no observable outcome: the reported set is the smallest equivalent one.
        The graph is kept acyclic (a cycle of locks could never open, and a plan through one
        does not exist): the parts choose in order of how sure they are, each its most probable
        set that closes no cycle with those chosen before (outcomes that disagree had made a
        lid's MAP set {bolt} and the bolt's {lid}).
        """
        tops = {part: float(self._logp[self._segment(part)].max()) for part in self.parts}
        chosen: dict[str, frozenset[str]] = {}
        for part in sorted(self.parts, key=lambda p: (-tops[p], self.index[p])):
            logp = self._logp[self._segment(part)]
            for i in np.argsort(-logp, kind="stable"):
                blockers = self.hypotheses[part][int(i)]
                if not _reaches(chosen, blockers, part):
                    chosen[part] = blockers
                    break
        return _reduced({part: chosen[part] for part in self.parts})

    def sample_graphs(self, rng: np.random.Generator, n: int) -> list[dict[str, frozenset[str]]]:
        """`n` lock graphs drawn from the posterior (each part's blocker set independently, as the
        posterior is factored; a draw may hold a cycle, which no plan gets through)."""
        draws: dict[str, np.ndarray] = {}
        for part in self.parts:
            post = np.exp(self._logp[self._segment(part)])
            draws[part] = rng.choice(len(post), size=n, p=post / post.sum())
        return [{part: self.hypotheses[part][int(draws[part][k])] for part in self.parts} for k in range(n)]

    def confidence(self) -> float:
        """Probability that the true graph is equivalent to the MAP graph in every reachable state.

        Per part, the mass of the blocker sets whose transitive closure under the MAP graph equals
        the MAP set's (B blocked by {A} or by {A, A's blocker} behave the same wherever A can
        be displaced); parts are independent here.
        """
        graph = self.map_graph()
        closure = _closures(graph)
        total = 1.0
        for part in self.parts:
            target = _close(graph[part], closure)
            post = np.exp(self._logp[self._segment(part)])
            total *= sum(p for p, s in zip(post, self.hypotheses[part], strict=True) if _close(s, closure) == target)
        return float(total)

    def move_probability(self, part: str, displaced: frozenset[str], direction: str = OPEN) -> float:
        """Probability that trying `part` in state `displaced` is seen to move it."""
        _check(part, direction, displaced)
        return float(_move_probs(self, np.exp(self._logp), self._bits(displaced))[0][self.index[part]])

    def expected_information_gain(self, part: str, displaced: frozenset[str], direction: str = OPEN) -> float:
        """Mutual information (nats) between one attempt's outcome and the lock graph."""
        return _gain(self.move_probability(part, displaced, direction), self.slip)


def confident(beliefs: LockBeliefs, threshold: float = 0.95) -> bool:
    """The stopping rule: the MAP lock graph (up to reachable-state equivalence) has probability >= threshold."""
    return beliefs.confidence() >= threshold


# ---------------------------------------------------------------------- choosing probes

def next_probe(beliefs: LockBeliefs, displaced: frozenset[str], rng: np.random.Generator | None = None,
               horizon: int = 3, discount: float = 0.9, test_gain: float = 0.02,
               weights: np.ndarray | None = None) -> Probe:
    """The active explorer's move: the first probe of the best `horizon`-step plan.

    A plan's value is the expected information gain about the whole lock graph summed over its
    probes (through both outcomes of each, beliefs updated on the way), so moving a part that is
    believed free counts for the informative attempts it makes possible, and closing one counts
    for what its outcome says about the displaced parts. An outcome less likely than twice the
    slip rate is not planned through: it is most likely a slip, and the odd state it would leave
    (a part "moved" past a blocker still in place) tempts the plan into betting on noise.
    Ties are broken by `rng`. About 20 ms for 10 parts at horizon 3 (2n^2 belief updates).

    Args:
        beliefs: the current posterior (not modified).
        displaced: parts currently away from their start.
        rng: tie-breaking among equally good probes; None picks the first.
        horizon: probes planned ahead (1 is greedy); a decision updates the beliefs about (2n)^(horizon-1) times.
        discount: weight of each later probe's gain relative to the one before.
        test_gain: tests expected to tell more than this (nats) come before any move; a second
            test of what one test already showed tells about 0.01.
        weights: per part (in `beliefs.parts` order), how much what a probe tells about that
            part's blockers is worth (`relevance` to a goal); None weighs every part alike.
    """
    state = beliefs._bits(displaced)
    w = np.ones(len(beliefs.parts)) if weights is None else np.asarray(weights, dtype=float)
    post = np.exp(beliefs._logp)
    q, cache = _move_probs(beliefs, post, state)
    if all((part, CLOSE) in beliefs.cannot and (part, TEST) in beliefs.cannot for part in beliefs.parts):
        # Opening only, the state only grows: a plan's later probes would be valued without the
        # information each open gives up for good, so plans would put off every open forever.
        horizon = 1
    actions = _actions(beliefs, state)
    if not actions:
        raise ValueError("no probe left that the robot can make")
    tests = [i for i, test in actions if test]
    moves = [i for i, test in actions if not test]
    if tests:
        # A test changes nothing and gives nothing up: ask what can be asked in this state first
        # (in a plan, a test would put a costly open off forever, for its discounted value).
        gains = w[tests] * np.asarray(_gain(q[tests], beliefs.slip))
        if gains.max() > test_gain or not moves:
            best = np.flatnonzero(gains >= gains.max() - 1e-9)
            return Probe(beliefs.parts[tests[int(best[0] if rng is None else rng.choice(best))]], TEST)
    # A move that tells nothing and most likely leaves the state as it is would only be valued
    # for the probes after it, which can be made without it: not a candidate.
    useful = [i for i in moves if w[i] * _gain(q[i], beliefs.slip) > test_gain or q[i] > 2 * beliefs.slip]
    moves = useful or moves
    values = np.array([_action_value(beliefs, post, state, i, False, q, cache, horizon, discount, w) for i in moves])
    net = values - _irreversible_loss(beliefs, displaced, q, cache, w)[moves]
    if net.max() > test_gain:  # an informative move that costs clearly less than it gives
        values = net  # else the irreversible move is the only way on: take the most informative
    best = np.flatnonzero(values >= values.max() - 1e-9)
    part = beliefs.parts[moves[int(best[0] if rng is None else rng.choice(best))]]
    return Probe(part, CLOSE if part in displaced else OPEN)


def relevance(beliefs: LockBeliefs, target: str, floor: float = 0.05) -> np.ndarray:
    """Per part, how much learning its blockers matters for opening `target`: 1 for the target,
    and for a part the most probable chain by which it blocks the target (P(i blocks j) times
    j's relevance, over every j), at least `floor` (a goal-directed probe still notices the rest).
    """
    _, blocks = _move_probs(beliefs, np.exp(beliefs._logp), 0)  # [Y, X]: P(X blocks Y)
    w = np.zeros(len(beliefs.parts))
    w[beliefs.index[target]] = 1.0
    for _ in range(len(beliefs.parts)):
        nxt = np.maximum(w, (blocks * w[:, None]).max(axis=0))
        if np.allclose(nxt, w):
            break
        w = nxt
    return np.maximum(w, floor)


def _irreversible_loss(beliefs: LockBeliefs, displaced: frozenset[str], q: np.ndarray,
                       blocks: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Expected information an open gives up for good when the part cannot be brought back.

    Once part i stays open, whether i blocks another part j (still in place) can never be
    tested again: every later try of j has i out of the way. That question's entropy is lost
    with the probability that i moves. Zero for parts the robot can close again.
    """
    loss = np.zeros(len(beliefs.parts))
    w = np.ones(len(beliefs.parts)) if weights is None else weights
    waiting = np.array([p not in displaced for p in beliefs.parts])
    for i, part in enumerate(beliefs.parts):
        if part in displaced or (part, CLOSE) not in beliefs.cannot:
            continue
        others = waiting.copy()
        others[i] = False
        p_blocks = np.clip(blocks[others, i], 1e-12, 1 - 1e-12)  # P(i blocks j) for j still in place
        entropy = -(p_blocks * np.log(p_blocks) + (1 - p_blocks) * np.log(1 - p_blocks))
        loss[i] = q[i] * float((w[others] * entropy).sum())
    return loss


def nothing_to_learn(beliefs: LockBeliefs, displaced: frozenset[str], horizon: int = 2, eps: float = 1e-3) -> bool:
    """Whether no feasible move (within `horizon` probes) is expected to tell anything more.

    The second stopping rule, shared by every explorer: when parts the robot cannot bring back
    are displaced, some hypotheses can no longer be told apart, and the graph may never reach
    the confidence threshold; probing on would only repeat moves.
    """
    state = beliefs._bits(displaced)
    post = np.exp(beliefs._logp)
    q, cache = _move_probs(beliefs, post, state)
    values = [_action_value(beliefs, post, state, i, test, q, cache, horizon, 0.9)
              for i, test in _actions(beliefs, state)]
    return not values or max(values) < eps


def _move(part: str, displaced: frozenset[str]) -> tuple[str, str]:
    """The one feasible move of a part in a state: close it if it is away, else open it."""
    return (part, CLOSE if part in displaced else OPEN)


def random_probe(rng: np.random.Generator, beliefs: LockBeliefs, displaced: frozenset[str]) -> Probe:
    """The baseline: a uniformly random feasible probe (open or test a part in place, close a displaced one)."""
    feasible = probes_allowed(beliefs, displaced)
    return feasible[int(rng.integers(len(feasible)))]


def probes_allowed(beliefs: LockBeliefs, displaced: frozenset[str]) -> list[Probe]:
    """Every probe the robot can make in state `displaced` (none of `beliefs.cannot`)."""
    return [Probe(beliefs.parts[i], TEST if test else _move(beliefs.parts[i], displaced)[1])
            for i, test in _actions(beliefs, beliefs._bits(displaced))]


class Explorer(Protocol):
    """One exploration step: the probe to try next in state `displaced`."""

    def choose(self, beliefs: LockBeliefs, displaced: frozenset[str], rng: np.random.Generator) -> Probe: ...


@dataclass(frozen=True)
class ActiveExplorer:
    """Plans `horizon` probes ahead (see `next_probe`)."""

    horizon: int = 3
    discount: float = 0.9

    def choose(self, beliefs: LockBeliefs, displaced: frozenset[str], rng: np.random.Generator) -> Probe:
        return next_probe(beliefs, displaced, rng, self.horizon, self.discount)


@dataclass(frozen=True)
class RandomExplorer:
    """Uniform over the feasible moves (see `random_probe`)."""

    def choose(self, beliefs: LockBeliefs, displaced: frozenset[str], rng: np.random.Generator) -> Probe:
        return random_probe(rng, beliefs, displaced)


# ---------------------------------------------------------------------- the loop

@dataclass(frozen=True)
class ExplorationResult:
    probes: int
    """Attempts made before the stopping rule held (or `max_probes`)."""
    graph: dict[str, frozenset[str]]
    """The MAP lock graph at the end."""
    confident: bool
    """Whether the stopping rule held (False: the budget ran out)."""
    correct: bool | None
    """Whether `graph` equals the given truth (None without one)."""
    attempts: tuple[Attempt, ...]
    exhausted: bool = False
    """Whether it stopped because nothing more could be learned (`nothing_to_learn`)."""


MoveOutcome = Callable[[str, str, frozenset[str]], bool | None]
"""moves(part, direction, displaced) -> whether the part was seen to move (the world, or a robot);
None when the move could not even be attempted (the hand could not engage the part: a close it
cannot make, a handle it cannot find); such a move is never chosen again (an open after two tries)."""


def simulate_exploration(moves: MoveOutcome, parts: Sequence[str], explorer: Explorer, rng: np.random.Generator,
                         max_probes: int = 400, *, beliefs: LockBeliefs | None = None, threshold: float = 0.95,
                         truth: dict[str, frozenset[str]] | None = None) -> ExplorationResult:
    """Explore from the all-at-start state until `confident` or `max_probes`: the robot loop at logic level.

    Each step: `explorer.choose` a probe, ask `moves` for its outcome, update the beliefs, and
    toggle the part in the displaced set when it moved (the world is then taken to be in that
    state, even after a "lucky nudge" past a blocker that a noisy `moves` reported).

    Args:
        moves: the world's answer to a probe (noise included, if any).
        parts: every part name.
        explorer: `ActiveExplorer()`, `RandomExplorer()` or anything with the same `choose`.
        rng: the explorer's randomness (ties, random moves).
        max_probes: budget of attempts.
        beliefs: the prior (default `LockBeliefs(parts)`); updated in place.
        threshold: the stopping rule's confidence.
        truth: the true graph, only to score the result.
    """
    beliefs = LockBeliefs(parts) if beliefs is None else beliefs
    displaced: frozenset[str] = frozenset()
    attempts: list[Attempt] = []
    exhausted = False
    failed: dict[tuple[str, str], int] = {}
    while not confident(beliefs, threshold) and len(attempts) < max_probes:
        if beliefs.cannot and nothing_to_learn(beliefs, displaced):
            exhausted = True  # what is left cannot be told apart any more (see `nothing_to_learn`)
            break
        if not probes_allowed(beliefs, displaced):
            exhausted = True  # no move left that the robot can make
            break
        probe = explorer.choose(beliefs, displaced, rng)
        attempt, displaced = apply_outcome(beliefs, probe, displaced, moves(probe.part, probe.direction, displaced),
                                           failed)
        if attempt is not None:
            attempts.append(attempt)
    graph = beliefs.map_graph()
    return ExplorationResult(len(attempts), graph, confident(beliefs, threshold),
                       None if truth is None else graph == {p: frozenset(truth.get(p, ())) for p in parts},
                       tuple(attempts), exhausted)


def apply_outcome(beliefs: LockBeliefs, probe: Probe, displaced: frozenset[str], moved: bool | None,
                  failed: dict[tuple[str, str], int], learn: bool = True) -> tuple[Attempt | None, frozenset[str]]:
    """Fold one probe's outcome into the beliefs; returns the attempt (None if not attempted) and
    the new displaced set. A move that could not be attempted says nothing about locks: a close
    is never tried again, an open after its second failure to engage (`failed` counts them).
    With `learn` False the lock beliefs are left as they were (the nominal baseline, which
    plans on its prior model throughout); what the robot cannot do is still noted."""
    if moved is None:
        key = (probe.part, probe.direction)
        failed[key] = failed.get(key, 0) + 1
        if probe.direction == CLOSE or failed[key] >= 2:
            beliefs.cannot.add(key)
        return None, displaced
    attempt = Attempt(probe.part, displaced, moved, probe.direction)
    if learn:
        beliefs.update(attempt)
    return attempt, (displaced ^ {probe.part}) if moved and probe.direction != TEST else displaced


def graph_moves(graph: dict[str, Iterable[str]]) -> MoveOutcome:
    """The noise-free outcome function of a lock graph under this module's abstraction."""
    blockers = {part: frozenset(s) for part, s in graph.items()}

    def moves(part: str, direction: str, displaced: frozenset[str]) -> bool:
        _check(part, direction, displaced)
        if direction in (OPEN, TEST):
            return blockers[part] <= displaced
        return not any(part in blockers[other] for other in displaced)

    return moves


# ---------------------------------------------------------------------- internals (flat arrays)
#
# Every part's hypotheses live in one flat array (owner part, blocker bits, probability) so that
# the move probabilities of all n feasible probes in a state cost a handful of numpy calls.
# In state D (bits) the feasible probe on part i is "close" if i is in D, else "open".

def _move_probs(b: LockBeliefs, post: np.ndarray, state: int) -> tuple[np.ndarray, np.ndarray]:
    """Probability that each part's feasible probe is seen to move, and P(X blocks Y) as matrix [Y, X]."""
    n = len(b.parts)
    in_d = (state >> np.arange(n)) & 1 == 1
    free_open = np.bincount(b._owner, weights=post * ((b._mask & ~state) == 0), minlength=n)
    blocks = b._onehot @ (post[:, None] * b._member)  # [Y, X]: P(X in S_Y)
    free_close = np.prod(1.0 - blocks[in_d], axis=0)
    free = np.where(in_d, free_close, free_open)
    return free * (1 - b.slip) + (1 - free) * b.slip, blocks


def _updated(b: LockBeliefs, post: np.ndarray, i: int, state: int, moved: bool,
             blocks: np.ndarray | None = None) -> np.ndarray:
    """Posterior (flat probabilities) after probing part i in `state` with outcome `moved`."""
    s = b.slip
    like_free, like_blocked = (1 - s, s) if moved else (s, 1 - s)
    new = post.copy()
    if not (state >> i) & 1:  # open: exact update of part i's factor
        seg = slice(b._start[i], b._start[i + 1])
        new[seg] *= np.where((b._mask[seg] & ~state) == 0, like_free, like_blocked)
        new[seg] /= new[seg].sum()
        return new
    # close: X = i is free iff it blocks no displaced part; moment-match each displaced part's factor
    n = len(b.parts)
    if blocks is None:
        blocks = b._onehot @ (post[:, None] * b._member)
    others = ((state >> np.arange(n)) & 1 == 1) & (np.arange(n) != i)
    if not others.any():
        return new  # nothing to block: the outcome says nothing about the graph
    log_free = np.where(others, np.log(np.clip(1.0 - blocks[:, i], 1e-300, None)), 0.0)
    free_without = np.exp(log_free.sum() - log_free)  # P(no other displaced part is blocked by X), per part
    mixed = like_blocked * (1 - free_without) + like_free * free_without
    factor = np.where(b._member[:, i], like_blocked, mixed[b._owner])
    touched = others[b._owner]
    new[touched] *= factor[touched]
    sums = np.bincount(b._owner, weights=new, minlength=n)
    return new / sums[b._owner]


def _gain(q: np.ndarray | float, slip: float) -> np.ndarray | float:
    """Mutual information of a binary outcome seen with probability q through a symmetric slip."""
    return _h2(q) - _h2(slip)


def _h2(q):
    q = np.clip(q, 1e-12, 1 - 1e-12)
    return -(q * np.log(q) + (1 - q) * np.log(1 - q))


def _action_value(b: LockBeliefs, post: np.ndarray, state: int, i: int, test: bool, q: np.ndarray,
                  blocks: np.ndarray, horizon: int, discount: float, w: np.ndarray | None = None) -> float:
    """Expected gain of probing part i now (moving it, or testing it if `test`), then acting
    optimally for horizon - 1 more probes; each part's gain weighted by `w` (None: alike)."""
    w = np.ones(len(b.parts)) if w is None else w
    value = float(w[i] * _gain(q[i], b.slip))
    if horizon <= 1:
        return value
    for moved, prob in ((True, q[i]), (False, 1 - q[i])):
        if prob < 2 * b.slip:
            continue  # most likely a slip: planning on from it would chase noise (see `next_probe`)
        child = _updated(b, post, i, state, moved, blocks)
        child_state = state ^ (1 << i) if moved and not test else state
        cq, cblocks = _move_probs(b, child, child_state)
        actions = _actions(b, child_state)
        if not actions:
            continue
        if horizon == 2:
            best = float((w * _gain(cq, b.slip))[[j for j, _ in actions]].max())
        else:
            best = max(_action_value(b, child, child_state, j, t, cq, cblocks, horizon - 1, discount, w)
                       for j, t in actions)
        value += discount * prob * best
    return value


def _actions(b: LockBeliefs, state: int) -> list[tuple[int, bool]]:
    """The probes the robot can make in `state` (bits), as (part index, is a test): each part's
    move (close if displaced, else open) and, for a part in place that cannot be brought back,
    its test (one that can is tested by opening and closing it); none of `b.cannot`."""
    out = []
    for i, part in enumerate(b.parts):
        displaced = bool((state >> i) & 1)
        if (part, CLOSE if displaced else OPEN) not in b.cannot:
            out.append((i, False))
        if not displaced and (part, TEST) not in b.cannot and (part, CLOSE) in b.cannot:
            out.append((i, True))
    return out


def _check(part: str, direction: str, displaced: frozenset[str]) -> None:
    if direction not in (OPEN, CLOSE, TEST):
        raise ValueError(f"direction must be {OPEN!r}, {CLOSE!r} or {TEST!r}, got {direction!r}")
    if (direction == CLOSE) != (part in displaced):
        where = "displaced" if part in displaced else "at its start"
        raise ValueError(f"cannot {direction} {part!r}: it is {where}")


def _reaches(graph: dict[str, frozenset[str]], starts: Iterable[str], target: str) -> bool:
    """Whether `target` is among `starts` or their transitive blockers under `graph`."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        part = stack.pop()
        if part == target:
            return True
        if part not in seen:
            seen.add(part)
            stack.extend(graph.get(part, ()))
    return False


def _closures(graph: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Every part's transitive blockers under `graph`."""
    closure: dict[str, frozenset[str]] = {}
    for part in graph:
        seen: set[str] = set()
        stack = list(graph[part])
        while stack:
            blocker = stack.pop()
            if blocker not in seen:
                seen.add(blocker)
                stack.extend(graph.get(blocker, ()))
        closure[part] = frozenset(seen)
    return closure


def _reduced(graph: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Drop each blocker that another kept blocker of the same part transitively implies."""
    closure = _closures(graph)
    reduced = {}
    for part, blockers in graph.items():
        kept = set(blockers)
        for blocker in sorted(blockers):
            if any(blocker in closure[other] for other in kept - {blocker}):
                kept.discard(blocker)
        reduced[part] = frozenset(kept)
    return reduced


def _close(blockers: frozenset[str], closure: dict[str, frozenset[str]]) -> frozenset[str]:
    return blockers.union(*(closure[b] for b in blockers))


def _logsumexp(x: np.ndarray) -> float:
    top = x.max()
    return float(top + np.log(np.exp(x - top).sum()))
