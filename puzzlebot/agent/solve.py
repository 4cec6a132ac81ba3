"""The solve loop: open the goal part, learning the locks only as far as the goal needs.

Each step plans with the most probable lock graph (`explorer.plan_to_open`) and makes the
plan's first move with the arm; the outcome updates the lock beliefs, and the next step
replans from them, so a surprise (a part that stays put) changes the plan at once. When the
plan keeps failing in the same state, or no plan exists, the step is an information-gain
probe instead (`locks.next_probe`). The goal is judged by the agent's own estimate of how far
the goal part is open (its fitted joint coordinate); a goal part that opened short of the
goal is pushed on again. With `explorer.strategy="random"` (the baseline) every move is
drawn uniformly from the feasible ones, with the same skills and stopping rule. The world's
verdict (the emulator's final state, or a person at the arm) is the runner's to read, never
this loop's.

Not built yet (issue 5): rehearsing moves in the fitted MuJoCo model under posterior samples
and sampling-based MPC skills; the skills here are the prober's compliant probes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from puzzlebot.agent.affordances import TaskGoal
from puzzlebot.agent.explorer import ArmMoves, ExplorerConfig, plan_to_open, prior_beliefs
from puzzlebot.agent.locks import (
    OPEN,
    ActiveExplorer,
    Attempt,
    LockBeliefs,
    Probe,
    RandomExplorer,
    apply_outcome,
    probes_allowed,
)
from puzzlebot.agent.model_building import part_articulation
from puzzlebot.agent.probing import Interaction, Prober


@dataclass(frozen=True)
class SolveConfig:
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)
    max_attempts: int = 30  # probes of any kind before giving up
    max_robot_s: float = 900.0  # s on the arm's clock before giving up
    goal_retries: int = 2  # pushes on a goal part that opened short of the goal
    replan_failures: int = 2  # failed opens of the plan's move in one state before probing instead

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_robot_s <= 0:
            raise ValueError(f"SolveConfig: budgets must be positive (max_attempts={self.max_attempts}, "
                             f"max_robot_s={self.max_robot_s})")


@dataclass
class SolveOutcome:
    """What the loop did and believes (the world's verdict is scored by the caller)."""

    believed_solved: bool
    reason: str  # why it stopped
    beliefs: LockBeliefs
    attempts: list[Attempt] = field(default_factory=list)
    interactions: list[Interaction] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)  # per step: the move, why it was chosen, its outcome
    openings: dict[str, float] = field(default_factory=dict)  # the goal parts' estimated openings at the end
    robot_time_s: float = 0.0
    decide_s: float = 0.0


def solve(prober: Prober, parts: list[str], goals: list[TaskGoal], config: SolveConfig = SolveConfig()) -> SolveOutcome:
    """Act on the puzzle until every goal holds by the agent's estimate, or a budget runs out."""
    unknown = sorted({g.part for g in goals} - set(parts))
    if unknown:
        raise ValueError(f"goal parts {unknown} are not among the seen parts {parts}: the agent cannot act on them")
    beliefs = prior_beliefs(prober, parts, config.explorer)
    arm = ArmMoves(prober, None, beliefs.cannot)
    chooser = ActiveExplorer(horizon=config.explorer.horizon)
    random_moves = config.explorer.strategy == "random"  # the baseline: same skills, moves drawn uniformly
    rng = np.random.default_rng(config.explorer.seed)
    io = prober.io
    t0 = io.state.t
    displaced: frozenset[str] = frozenset()
    attempts: list[Attempt] = []
    steps: list[dict] = []
    failed_in_state: dict[tuple[str, frozenset[str]], int] = {}
    unattempted: dict[tuple[str, str], int] = {}
    retries = {g.part: 0 for g in goals}
    decide = 0.0
    reason = ""
    while True:
        tic = time.perf_counter()
        openings = {g.part: opening(prober, arm.interactions, g.part) for g in goals}
        pending = [g for g in goals if not g.holds(openings[g.part])]
        if not pending:
            reason = "every goal holds by the agent's estimate"
            break
        if len(attempts) >= config.max_attempts:
            reason = f"attempt budget spent ({config.max_attempts})"
            break
        if io.state.t - t0 >= config.max_robot_s:
            reason = f"robot-time budget spent ({config.max_robot_s:.0f} s)"
            break
        goal = pending[0]
        if goal.part in displaced:  # opened, but not far enough: push on along the way it went
            decide += time.perf_counter() - tic
            if retries[goal.part] >= config.goal_retries:
                reason = f"{goal.part!r} opened to {openings[goal.part]:.3f} only, short of the goal"
                break
            retries[goal.part] += 1
            moved = arm(goal.part, OPEN, displaced)
            steps.append({"part": goal.part, "direction": OPEN, "why": "push the goal part further",
                          "moved": moved})
            continue
        if random_moves:
            allowed = probes_allowed(beliefs, displaced)
            probe, why = (RandomExplorer().choose(beliefs, displaced, rng), "random") if allowed else (None, "")
        else:
            probe, why = _next_move(goal.part, beliefs, displaced, failed_in_state, config, chooser, rng)
        decide += time.perf_counter() - tic
        if probe is None:
            reason = f"no move left that could open {goal.part!r}"
            break
        moved = arm(probe.part, probe.direction, displaced)
        attempt, displaced = apply_outcome(beliefs, probe, displaced, moved, unattempted)
        steps.append({"part": probe.part, "direction": probe.direction, "why": why, "moved": moved})
        if attempt is not None:
            attempts.append(attempt)
            if not attempt.moved and probe.direction == OPEN:
                key = (probe.part, attempt.displaced)
                failed_in_state[key] = failed_in_state.get(key, 0) + 1
    return SolveOutcome(not pending, reason, beliefs, attempts, arm.interactions, steps, openings,
                        io.state.t - t0, decide)


def _next_move(target: str, beliefs: LockBeliefs, displaced: frozenset[str],
               failed_in_state: dict[tuple[str, frozenset[str]], int], config: SolveConfig,
               chooser: ActiveExplorer, rng: np.random.Generator) -> tuple[Probe | None, str]:
    """The plan's first move towards opening `target`, or an information-gain probe when the
    plan is stuck (no plan, or its move failed `replan_failures` times in this very state)."""
    plan = plan_to_open(target, displaced, beliefs.map_graph(), cannot=frozenset(beliefs.cannot))
    if plan and failed_in_state.get((plan[0].part, displaced), 0) < config.replan_failures:
        return plan[0], f"plan to open {target!r}: " + " -> ".join(f"{p.direction} {p.part}" for p in plan)
    if not probes_allowed(beliefs, displaced):
        return None, ""
    return chooser.choose(beliefs, displaced, rng), "the plan is stuck: the most informative probe"


def opening(prober: Prober, interactions: list[Interaction], part: str) -> float:
    """How far `part` is open by the agent's estimate (m or rad from its start; 0 if never opened)."""
    io = prober.io
    if io.T_world_base is None:
        return 0.0
    articulation = part_articulation(part, interactions, io.tracker.tracks[part], io.T_world_base)
    if articulation.kind == "fixed" or len(articulation.coordinates) < 2:
        return 0.0
    return float(abs(articulation.coordinates[-1] - articulation.coordinates[0]))
