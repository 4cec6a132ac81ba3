"""Explore an unseen puzzle with the arm: probe parts until the lock graph is known.

The loop is `locks.simulate_exploration`, the same one the logic-level tests run, with the
arm as the world: each step asks the lock beliefs (`agent.locks`) which part to test, open or close next — by
expected information gain (active) or uniformly among the feasible moves (random, the
baseline) — performs it with the `Prober` through the driver, and feeds the outcome back.
Everything the probes recorded is kept for model building (`agent.model_building`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from puzzlebot.agent.locks import (
    CLOSE,
    OPEN,
    TEST,
    ActiveExplorer,
    Attempt,
    ExplorationResult,
    LockBeliefs,
    Probe,
    RandomExplorer,
    apply_outcome,
    confident,
    graph_moves,
    simulate_exploration,
)
from puzzlebot.agent.model_building import part_articulation, track_pose
from puzzlebot.agent.part_state import furthest_opening, opening, slid_back
from puzzlebot.agent.probing import Interaction, Pace, Prober
from puzzlebot.sim.mechanisms import rotation

STRATEGIES = ("active", "random")


@dataclass(frozen=True)
class ExplorerConfig:
    strategy: str = "active"  # "active" (expected information gain) | "random" (the baseline)
    max_probes: int = 60  # a random explorer may need many more than an active one: cap it
    confidence: float = 0.95  # stop once the most probable lock graph is this likely
    horizon: int = 3  # probes the active explorer plans ahead
    slip: float = 0.05  # assumed probability that a probe's outcome misreports the lock state
    allow_close: bool = False  # probe by bringing parts back too (see `explore`)
    allow_test: bool = True  # probe by moving parts a little and leaving them (see `locks` and `Prober.probe`)
    locked_prior: tuple[tuple[str, float], ...] = (("grasp", 1.0), ("push", 0.3))
    """Prior odds, per handle kind, that a part has a blocker: drawers, doors and lids (grasped) are
    the usual locked parts, bolts, levers, knobs and buttons the usual blockers. Opening only,
    the order of first tries decides what can be told apart, and this breaks the tie."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"ExplorerConfig.strategy: {self.strategy!r}; choose from {STRATEGIES}")
        if self.max_probes < 1:
            raise ValueError(f"ExplorerConfig.max_probes: {self.max_probes} must be >= 1")
        if not 0.5 < self.confidence < 1.0:
            raise ValueError(f"ExplorerConfig.confidence: {self.confidence} must be in (0.5, 1)")
        if not 0.0 < self.slip < 0.5:
            raise ValueError(f"ExplorerConfig.slip: {self.slip} must be in (0, 0.5)")


@dataclass
class Exploration:
    """What an exploration did and concluded."""

    beliefs: LockBeliefs
    result: ExplorationResult
    interactions: list[Interaction] = field(default_factory=list)
    robot_time_s: float = 0.0  # on the arm's clock
    decide_s: float = 0.0  # compute spent choosing probes
    lock_probes: int = 0  # probes until the lock graph was confident (the rest opened unmoved parts)

    @property
    def probes(self) -> int:
        return self.result.probes


MAX_RESTORES = 2  # pushes of one part that slid back, before the beliefs are left to cope
PUSHES_ON = 2  # pushes on along its joint after a side push turned a part open (to its stop)


class ArmMoves:
    """The world's answer to a probe, found by probing with the arm (a `locks.MoveOutcome`)."""

    def __init__(self, prober: Prober, on_probe: Callable[[Interaction], None] | None,
                 cannot: set[tuple[str, str]] | None = None):
        self.prober, self.on_probe = prober, on_probe
        self.cannot = set() if cannot is None else cannot  # the beliefs' moves the robot cannot make
        self.interactions: list[Interaction] = []
        self.opened_along: dict[str, np.ndarray] = {}  # last direction that opened each part
        self.gave_along: dict[str, np.ndarray] = {}  # direction each part last gave to (open or test)
        self.restored: dict[str, int] = {}  # parts pushed open again after they slid back (times)
        self.restores: list[tuple[str, bool | None]] = []  # each: the part, and whether it moved
        self.pacer: Callable[[str, float, float], Pace | None] | None = None
        """Paces a move that has a target (part, opening now, target): the solve loop's MPC in the
        fitted model. Without one (exploring, or no joint fitted) the arm opens a part until it stops."""

    def __call__(self, part: str, direction: str, displaced: frozenset[str],
                 target: float | None = None, pace: Pace | None = None) -> bool | None:
        """Make the move. `target`: an opening to bring an open part on to, and stop at (paced by
        `pacer`); `pace`: how to follow the part once it gives, whatever the move (overrides both)."""
        self.restore(displaced - {part})
        paced, avoid = pace, ()
        if direction == CLOSE:
            hint, handle = self._along_joint(part, -1.0)
        elif direction == OPEN and part in displaced:
            # pushing on a part already open: along its joint from where it stands now (a door
            # swung 1.2 rad is not pulled on the way it first gave, which swings it back), at the
            # handle the cameras see, and never back the way it came
            (hint, avoid), handle = self._on_not_back(part), None
            paced = pace or self._pace(part, target)
        else:
            hint, handle = self.gave_along.get(part), None
        interaction = self.prober.probe(part, direction, hint=hint, handle=handle, avoid=avoid, pace=paced)
        if not interaction.attempted:
            return None
        self.interactions.append(interaction)
        if interaction.moved and interaction.tried and direction in (OPEN, TEST):
            self.gave_along[part] = interaction.tried[-1]  # try that way first next time
        if interaction.moved and direction == TEST and interaction.mode == "push":
            # a pushed part is not brought back: tested again, it would creep out of the travel
            # over which it blocks (two 3 mm presses released a button's lock)
            self.cannot.add((part, TEST))
        if interaction.moved and direction == OPEN and len(interaction.tcp_positions) >= 2:
            self.opened_along[part] = _final_direction(np.asarray(interaction.tcp_positions))
        if self.on_probe is not None:
            self.on_probe(interaction)
        if interaction.moved and direction == OPEN and interaction.contact == "side" and paced is None:
            self._turn_on_to_stop(part)
        return interaction.moved

    def _turn_on_to_stop(self, part: str) -> None:
        """Push a part a side push turned open on along its fitted joint until it stops, at most
        `PUSHES_ON` times. A fingertip loses a knob's crank pin part way round as the pin's path
        bends away from the push (door_knob's dial stopped at 0.64 and 1.09 rad of its 2.5), which
        can leave the knob inside the range over which it still holds what it locks
        (gen_d5_s9505's knob2 stopped at 0.56 rad; it held the button up to 1.11). Turned parts
        only: a bolt slid on to the end of its slot can bring its rod in front of what it freed."""
        io = self.prober.io
        for _ in range(PUSHES_ON):
            if io.T_world_base is None:
                return
            if part_articulation(part, self.interactions, io.tracker.tracks[part], io.T_world_base).kind != "revolute":
                return
            on, back = self._pushed_on(part)
            if on is None:
                return
            if not self._reopened(self.prober.probe(part, OPEN, hint=on, avoid=back, hint_only=True)):
                return

    def restore(self, displaced: frozenset[str]) -> None:
        """Push open again every part believed open that the cameras see has slid back (knocked
        by another part's probe), so the puzzle is in the state the beliefs say it is in before
        the next probe; at most `MAX_RESTORES` times per part."""
        for part in sorted(displaced):
            if self.restored.get(part, 0) >= MAX_RESTORES or not slid_back(self.prober, self.interactions, part):
                continue
            self.restored[part] = self.restored.get(part, 0) + 1
            # back to where it was when it freed what it freed, not on to its end (a bolt slid to
            # the end of its slot can bring its rod in front of the part it had freed)
            pace = self._pace(part, furthest_opening(self.prober, self.interactions, part))
            hint, avoid = self._on_not_back(part)
            interaction = self.prober.probe(part, OPEN, hint=hint, avoid=avoid, pace=pace)
            self.restores.append((part, interaction.moved if interaction.attempted else None))
            if interaction.attempted:
                self.interactions.append(interaction)
                if self.on_probe is not None:
                    self.on_probe(interaction)

    def _pace(self, part: str, target: float | None) -> Pace | None:
        if self.pacer is None or target is None:
            return None
        return self.pacer(part, opening(self.prober, self.interactions, part), target)

    def reopen(self, part: str) -> bool | None:
        """Open a part believed open further, or another way, never back along its fitted joint
        (a knob turned 1.8 rad was pushed "another way" shut).

        A part the cameras saw open (a side push or a pull) is pushed on along its joint first,
        that way alone: a knob whose finger slid off its crank had stopped 0.65 rad round,
        inside the range over which it still held a button. Failing that, or for one a press
        opened, it is tried another way than the one it gave to: a press that gave under the
        hand can be a knob's pin tipping, not its turn."""
        on, back = self._pushed_on(part)
        opened = [i for i in self.interactions if i.part == part and i.direction == OPEN and i.moved]
        if on is not None and opened and opened[-1].contact != "press":
            if self._reopened(self.prober.probe(part, OPEN, hint=on, avoid=back, hint_only=True)):
                return True
        gave = self.gave_along.get(part)
        return self._reopened(self.prober.probe(part, OPEN, avoid=back + ((gave,) if gave is not None else ())))

    def _reopened(self, interaction: Interaction) -> bool | None:
        """Keep a reopening's record; whether it moved (None: it could not be tried)."""
        if not interaction.attempted:
            return None
        self.interactions.append(interaction)
        if interaction.moved and interaction.tried:
            self.gave_along[interaction.part] = interaction.tried[-1]
            if len(interaction.tcp_positions) >= 2:
                self.opened_along[interaction.part] = _final_direction(np.asarray(interaction.tcp_positions))
        if self.on_probe is not None:
            self.on_probe(interaction)
        return interaction.moved

    def _pushed_on(self, part: str) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """`_on_not_back`, for a part a fingertip pushes kept in its handle's face plane (as the
        push itself is). A knob's marker seen only after the push, at its other PnP tilt, put its
        fitted axle 27 deg off the face's normal, and a push "on" along that fit headed into the
        face and met nothing."""
        on, back = self._on_not_back(part)
        io = self.prober.io
        track = io.tracker.tracks[part]
        if on is None or io.sheet.affordances[part].mode != "push" or not track.times or io.T_world_base is None:
            return on, back
        rest = track_pose(track.positions[0], track.quaternions[0])  # the face as first seen, not as now
        approach = io.sheet.affordances[part].in_world(io.T_world_base @ rest)[1]  # read (a tilt can be misread)
        across = on - (on @ approach) * approach
        if np.linalg.norm(across) < 0.5:  # the fit has it moving mostly along the approach: no side push
            return on, back
        across = across / np.linalg.norm(across)
        return across, (-across,)

    def _on_not_back(self, part: str) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """The way to push a part believed open further open (a `hint`), and the way back towards
        shut (for `Prober.probe`'s `avoid`), from its joint where it stands (`_along_joint`)."""
        on = self._along_joint(part, 1.0)[0]
        return on, (() if on is None else (-on,))

    def _along_joint(self, part: str, sign: float) -> tuple[np.ndarray | None, tuple | None]:
        """How to move a part on from where it stands, back (`sign` -1) or further open (+1):
        the direction to push it and the handle's pose now.

        From the joint fitted so far (to a held handle's path, or a pushed part's marker): the
        push follows the joint's tangent where the part stands, and a grasp approaches the
        handle turned as the part has turned (a door swung open shows its handle from the side).
        Without a fit: along the last opening motion. Not the hand's last motion when a fit
        exists: a finger that slid off a knob's crank last moved back and down, and a push
        "on" that way turned the knob back shut.
        """
        io = self.prober.io
        fallback = (sign * self.opened_along[part] if part in self.opened_along else None), None
        if io.T_world_base is None:
            return fallback
        articulation = part_articulation(part, self.interactions, io.tracker.tracks[part], io.T_world_base)
        R, t = io.T_world_base[:3, :3], io.T_world_base[:3, 3]
        track = io.tracker.tracks[part]
        if articulation.kind == "fixed" or not track.times:
            return fallback
        rest = track_pose(track.positions[0], track.quaternions[0])
        rest_point, approach, grip = io.sheet.affordances[part].in_world(io.T_world_base @ rest)
        axis = R @ articulation.axis
        # Where the last opening left it, on the fitted joint (the hand's last point may have
        # slid off the handle as the part hit its stop).
        reached = float(articulation.coordinates[-1])
        if articulation.kind == "prismatic":
            return sign * axis, (rest_point + axis * reached, approach, grip)
        origin = R @ articulation.origin + t
        turn = rotation(axis, reached)
        point = origin + turn @ (rest_point - origin)
        tangent = np.cross(axis, point - origin)
        if np.linalg.norm(tangent) < 1e-6:
            return fallback
        grip = None if grip is None else turn @ grip
        return sign * tangent / np.linalg.norm(tangent), (point, turn @ approach, grip)


class _Timed:
    """Wraps an explorer's `choose` to count the compute spent deciding."""

    def __init__(self, explorer):
        self.explorer, self.seconds = explorer, 0.0

    def choose(self, beliefs, displaced, rng):
        tic = time.perf_counter()
        probe = self.explorer.choose(beliefs, displaced, rng)
        self.seconds += time.perf_counter() - tic
        return probe


def explore(prober: Prober, parts: list[str], config: ExplorerConfig = ExplorerConfig(),
            on_probe: Callable[[Interaction], None] | None = None) -> Exploration:
    """Probe with the arm until the lock graph is confident, then open every part not yet opened.

    The second phase is there because a lock graph can be certain before every part has moved
    (a part that stays put until its blocker is slid says all the graph needs), but a joint
    that never moved has no articulation or dynamics to fit. It plans with the most probable
    lock graph, keeps updating the beliefs, and replans when an outcome surprises it.

    Closing moves are off by default: in the emulator a blocker slides back while the part it
    blocked is open (the lock logic's abstraction says it cannot), and re-grasping a door swung
    open misses its handle by a centimetre or more; both turn closes into false lock evidence.
    Tests (move a part a few millimetres, leave it in its start region) ask whether a part gives
    without giving anything up, so every "does X block Y" can be asked while X is in place.
    Without closes, the explorer stops when nothing more can be told apart (`nothing_to_learn`).
    """
    chooser = _Timed(ActiveExplorer(horizon=config.horizon) if config.strategy == "active" else RandomExplorer())
    beliefs = prior_beliefs(prober, parts, config)
    arm = ArmMoves(prober, on_probe, beliefs.cannot)
    t0 = prober.io.state.t
    result = simulate_exploration(arm, parts, chooser, np.random.default_rng(config.seed), config.max_probes,
                                  beliefs=beliefs, threshold=config.confidence)
    lock_probes = result.probes
    attempts = list(result.attempts)
    displaced = _displaced_after(attempts)
    unattempted: dict[tuple[str, str], int] = {}
    for _ in range(config.max_probes * 2):  # every pass makes a probe or retires a target
        if len(attempts) >= config.max_probes:
            break
        opened = {a.part for a in attempts if a.moved and a.direction == OPEN}
        todo = [p for p in parts if p not in opened and p not in displaced and (p, OPEN) not in beliefs.cannot]
        if not todo:
            break
        target = todo[0]
        plan = plan_to_open(target, displaced, beliefs.map_graph(), cannot=frozenset(beliefs.cannot))
        if plan is None:  # the believed graph cannot free it: give up on this part
            beliefs.cannot.add((target, OPEN))
            continue
        for probe in plan:
            attempt, displaced = apply_outcome(beliefs, probe, displaced, arm(probe.part, probe.direction, displaced),
                                               unattempted)
            if attempt is None:  # a move the hand could not make: replan
                break
            attempts.append(attempt)
            if not attempt.moved and probe.part == target:
                failed = sum(1 for a in attempts if a.part == target and not a.moved and a.direction == OPEN)
                if failed >= 3:
                    beliefs.cannot.add((target, OPEN))  # it will not give: stop planning for it
            if not attempt.moved or len(attempts) >= config.max_probes:
                break  # a surprise (or the budget): replan from the new beliefs
    result = ExplorationResult(len(attempts), beliefs.map_graph(), confident(beliefs, config.confidence), None,
                               tuple(attempts), result.exhausted)
    return Exploration(beliefs, result, arm.interactions, prober.io.state.t - t0, chooser.seconds, lock_probes)


def prior_beliefs(prober: Prober, parts: list[str], config: ExplorerConfig,
                  edge_odds: dict[tuple[str, str], float] | None = None) -> LockBeliefs:
    """The lock beliefs before any probe of the parts the prober's marker sheet names (`lock_prior`)."""
    return lock_prior({part: prober.io.sheet.affordances[part].mode for part in parts}, config, edge_odds)


def lock_prior(modes: dict[str, str], config: ExplorerConfig,
               edge_odds: dict[tuple[str, str], float] | None = None) -> LockBeliefs:
    """The lock beliefs before any probe, for parts with these handle modes ("grasp", "push"):
    prior odds by handle kind (or per pair, `edge_odds`: a family's lock pattern, `agent.memory`),
    and the moves the config rules out."""
    odds = dict(config.locked_prior)
    parts = list(modes)
    beliefs = LockBeliefs(parts, slip=config.slip, size_prior={p: odds.get(modes[p], 0.3) for p in parts},
                          edge_odds=edge_odds)
    if not config.allow_close:
        beliefs.cannot.update((part, CLOSE) for part in parts)
    if not config.allow_test:
        beliefs.cannot.update((part, TEST) for part in parts)
    return beliefs


def _displaced_after(attempts: list[Attempt]) -> frozenset[str]:
    displaced: frozenset[str] = frozenset()
    for attempt in attempts:
        if attempt.moved and attempt.direction != TEST:
            displaced = displaced ^ {attempt.part}
    return displaced


def plan_to_open(target: str, displaced: frozenset[str], graph: dict[str, frozenset[str]],
                 cannot: frozenset[tuple[str, str]] = frozenset(), max_states: int = 1 << 14) -> list[Probe] | None:
    """Fewest probes from `displaced` that end by opening `target`, if `graph` is the truth (BFS)."""
    moves = graph_moves(graph)
    start = frozenset(displaced)
    parents: dict[frozenset[str], tuple[frozenset[str], Probe] | None] = {start: None}
    queue = deque([start])
    while queue and len(parents) < max_states:
        state = queue.popleft()
        if target not in state and moves(target, OPEN, state):
            plan = [Probe(target, OPEN)]
            while parents[state] is not None:
                state, probe = parents[state]
                plan.append(probe)
            return plan[::-1]
        for part in graph:
            if part == target:
                continue
            direction = CLOSE if part in state else OPEN
            if (part, direction) in cannot:
                continue
            if moves(part, direction, state):
                nxt = state ^ {part}
                if nxt not in parents:
                    parents[nxt] = (state, Probe(part, direction))
                    queue.append(nxt)
    return None


def _final_direction(path: np.ndarray, span: float = 0.01) -> np.ndarray:
    """Unit direction of the last `span` metres of a path (where a return push must start)."""
    end = path[-1]
    distances = np.linalg.norm(path - end, axis=1)
    earlier = np.flatnonzero(distances >= span)
    start = path[earlier[-1]] if len(earlier) else path[0]
    step = end - start
    norm = np.linalg.norm(step)
    return step / norm if norm > 1e-9 else step
