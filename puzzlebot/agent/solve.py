"""The solve loop: open the goal part, learning the locks only as far as the goal needs.

Each step plans on the lock beliefs and makes the plan's first move with the arm; the outcome
updates the beliefs, and the next step replans from them, so a surprise (a part that stays
put) changes the plan at once. Plans are searched and scored under lock graphs drawn from the
beliefs (`planning.robust_plan`; `planner="map"` takes the most probable graph's shortest plan
instead). When the plan's move has failed in this very state, or no plan exists, the loop
opens the part most likely both to move and to free the goal; when every open left has
failed here, a part believed open is tried again another way (its open was the arm's
judgement), and the beliefs are refitted if it was not open. The arm itself pushes open again
any part the cameras see slid back (`explorer.ArmMoves.restore`). The goal is judged by the
agent's own estimate of how far the goal part is open (`part_state.opening`); a goal part that
opened short of the goal is pushed on again. With `explorer.strategy="random"` (the baseline)
every move is drawn uniformly from the feasible ones, with the same skills and stopping rule.
The world's verdict (the emulator's final state, or a person at the arm) is the runner's to
read, never this loop's.

Every step logs what the agent expected: the lock beliefs' probability that the move works
and the surprise of what happened (-log of the probability of the outcome). A goal part that
opened short of the goal is rehearsed before it is pushed on: the model is refitted from the
probes so far and the push is rolled out under posterior draws (`agent.rehearsal`); the
rehearsal's odds and the real outcome are logged side by side. With `learn=False` (the
nominal baseline) the loop plans on its prior beliefs throughout and never refits.

Moves with a target opening are paced by predictive-sampling MPC in the refitted model
(`agent.mpc`): pushing a goal part on to its goal, and putting a knocked-back part back to
where it was seen open. The part is brought there and left there, not pushed on to its stop.
Slides and grasped hinges only: the pace reads the opening off the hand's travel, which for
a fingertip pushing a knob's pin is not the pin's arc.
Moves without a target (opening a part to learn whether it opens) are the prober's compliant
follow until the part stops. With `mpc=False` (the ablation) every move is.

Rehearsal is not inside the plan search's score, by design: a plan's moves open parts that
were never opened (a part opened and knocked back is put back by the arm, not planned), so
none has a fitted joint to rehearse, and every plan ends with the same goal move. What can
tell plans apart is the lock posterior, which `planning.robust_plan` scores them across; the
fitted model's dynamics are used where they decide an outcome, in the goal's push (rehearsed,
then paced by the MPC).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from mujoco import rollout

from puzzlebot.agent.affordances import TaskGoal
from puzzlebot.agent.explorer import ArmMoves, ExplorerConfig, plan_to_open, prior_beliefs
from puzzlebot.agent.fitted_model import FittedModel
from puzzlebot.agent.locks import (
    OPEN,
    ActiveExplorer,
    Attempt,
    LockBeliefs,
    Probe,
    RandomExplorer,
    apply_outcome,
    next_probe,
    probes_allowed,
    relevance,
)
from puzzlebot.agent.memory import FamilyMemory, PartView
from puzzlebot.agent.model_building import DynamicsPrior, fit_model
from puzzlebot.agent.mpc import MPCConfig, MPCPace, OpeningMPC, rollout_threads
from puzzlebot.agent.part_state import hinge_radius, opening
from puzzlebot.agent.planning import robust_plan
from puzzlebot.agent.probing import (
    Interaction,
    Pace,
    Prober,
    canonical_directions,
    handle_class,
    handle_shape,
)
from puzzlebot.agent.rehearsal import Rehearsal, RehearsalConfig, Rehearser

if TYPE_CHECKING:  # torch is imported only when a skill policy is given
    from puzzlebot.agent.policy.distill import DeployedPolicies
    from puzzlebot.agent.policy.skill_policy import PolicyPace


@dataclass(frozen=True)
class SolveConfig:
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)
    max_attempts: int = 30  # probes of any kind before giving up
    max_robot_s: float = 900.0  # s on the arm's clock before giving up
    goal_retries: int = 2  # pushes on a goal part that opened short of the goal
    goal_margin: float = 0.1  # the estimate must pass the goal by this fraction (a door read 1.18 rad stood at 1.10)
    replan_failures: int = 1  # failed opens of the plan's move in one state before a goal-directed open instead
    planner: str = "robust"  # "robust": plans scored across lock graphs drawn from the beliefs (`planning`);
    # "map": the most probable graph's shortest plan (the ablation)
    plan_samples: int = 64  # lock graphs drawn for the robust planner
    learn: bool = True  # False: the nominal baseline, planning on the prior beliefs without ever updating them
    rehearse: bool = True  # rehearse pushing on a goal part that opened short, in the refitted model, first
    rehearsal: RehearsalConfig = field(default_factory=RehearsalConfig)
    mpc: bool = True  # pace moves with a target opening by MPC in the refitted model (False: follow to the stop)
    mpc_config: MPCConfig = field(default_factory=MPCConfig)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_robot_s <= 0:
            raise ValueError(f"SolveConfig: budgets must be positive (max_attempts={self.max_attempts}, "
                             f"max_robot_s={self.max_robot_s})")
        if self.planner not in ("robust", "map"):
            raise ValueError(f"SolveConfig.planner: {self.planner!r}; choose 'robust' or 'map'")
        if self.plan_samples < 1:
            raise ValueError(f"SolveConfig.plan_samples: {self.plan_samples} must be >= 1")
        if not 0.0 <= self.goal_margin < 0.5:
            raise ValueError(f"SolveConfig.goal_margin: {self.goal_margin} must be in [0, 0.5)")


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
    model: FittedModel | None = None  # the last model refitted for a rehearsal (None if none was needed)
    mpc: list[dict] = field(default_factory=list)  # per paced move: part, target, replans, compute
    views: dict[str, PartView] = field(default_factory=dict)  # what was seen of each part before any move
    robot_s_by_activity: dict[str, float] = field(default_factory=dict)  # `probing.ACTIVITIES` during the solve


def solve(prober: Prober, parts: list[str], goals: list[TaskGoal], config: SolveConfig = SolveConfig(),
          memory: FamilyMemory | None = None, policies: DeployedPolicies | None = None) -> SolveOutcome:
    """Act on the puzzle until every goal holds by the agent's estimate, or a budget runs out.
    With `memory` (what earlier puzzles of the family taught), the lock beliefs start from the
    family's lock pattern instead of the default odds, and joints are fitted under the family's
    dynamics prior. With `policies` (skill policies by part),
    a policy paces the moves of its part instead of the MPC, and learns from them on the job if
    `policies.learning` is set (its updated weights are in `policies` afterwards)."""
    unknown = sorted({g.part for g in goals} - set(parts))
    if unknown:
        raise ValueError(f"goal parts {unknown} are not among the seen parts {parts}: the agent cannot act on them")
    views = {p: part_view(prober, p) for p in parts}
    beliefs = prior_beliefs(prober, parts, config.explorer,
                            edge_odds=memory.edge_odds(views) if memory is not None else None)
    arm = ArmMoves(prober, None, beliefs.cannot)
    chooser = ActiveExplorer(horizon=config.explorer.horizon)
    random_moves = config.explorer.strategy == "random"  # the baseline: same skills, moves drawn uniformly
    rng = np.random.default_rng(config.explorer.seed)
    io = prober.io
    t0 = io.state.t
    activity0 = Counter(prober.robot_s_by_activity)
    displaced: frozenset[str] = frozenset()
    attempts: list[Attempt] = []
    steps: list[dict] = []
    failed_in_state: dict[tuple[str, frozenset[str]], int] = {}
    seen_in_state: dict[tuple[str, str, frozenset[str]], list[bool]] = {}  # outcomes of each probe in each state
    unattempted: dict[tuple[str, str], int] = {}
    retries = {g.part: 0 for g in goals}
    opened_at: dict[str, int] = {}  # part -> how many attempts were made before it opened
    doubted: set[tuple[str, frozenset[str]]] = set()  # parts believed open tried again, and in what state
    reopens = 0  # moves that are not lock evidence: re-opens that did not move, restores of knocked parts
    restores_logged: list[str] = []
    decide = 0.0
    reason = ""
    world_model = WorldModel(prober, beliefs, arm.interactions, config, policies,
                             memory.dynamics_prior if memory is not None else None)
    updates_before = len(policies.updates) if policies is not None else 0
    if config.mpc and config.learn:
        arm.pacer = world_model.pace
    try:
        while True:
            for part, moved in arm.restores[len(restores_logged):]:  # the arm pushed a knocked-back part open again
                restores_logged.append(part)
                reopens += 1
                steps.append({"part": part, "direction": OPEN, "moved": moved,
                              "why": f"{part!r} was seen to have slid back: pushed open again before the next move"})
            tic = time.perf_counter()
            openings = {g.part: opening(prober, arm.interactions, g.part) for g in goals}
            pending = [g for g in goals if not g.holds(openings[g.part], config.goal_margin)]
            if not pending:
                reason = "every goal holds by the agent's estimate"
                break
            if len(attempts) + reopens >= config.max_attempts:
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
                tic = time.perf_counter()
                target = _goal_target(goal, config.goal_margin)
                rehearsed = world_model.rehearse(goal.part, openings[goal.part], target)
                decide += time.perf_counter() - tic
                moved = arm(goal.part, OPEN, displaced, target=target)
                step = {"part": goal.part, "direction": OPEN, "why": "push the goal part further", "moved": moved}
                if rehearsed is not None:
                    reached = goal.holds(opening(prober, arm.interactions, goal.part), config.goal_margin)
                    step["rehearsed"] = {"p_reach": rehearsed.p_reach, "time_s": rehearsed.time_s,
                                         "reached": reached, "surprise": rehearsed.surprise(reached)}
                steps.append(step)
                continue
            doubt = None if random_moves else _doubted(goal.part, beliefs, displaced, seen_in_state, doubted)
            if doubt is not None:  # every open failed here: is a part believed open really open?
                doubted.add((doubt, displaced))
                decide += time.perf_counter() - tic
                moved = arm.reopen(doubt)
                steps.append({"part": doubt, "direction": OPEN, "moved": moved,
                              "why": f"every open failed here: {doubt!r} may not be open, tried another way"})
                if not moved:
                    reopens += 1
                    continue
                # it had not opened: what was tried since, with it believed open, was tried with it closed
                since = opened_at[doubt]
                attempts[since:] = [Attempt(a.part, a.displaced - {doubt}, a.moved, a.direction)
                                    for a in attempts[since:]]
                attempts.append(Attempt(doubt, displaced - {doubt}, True, OPEN))
                if config.learn:
                    beliefs.refit(attempts)
                for table in (failed_in_state, seen_in_state):  # those states are not what they were believed to be
                    for key in [k for k in table if doubt in k[-1]]:
                        del table[key]
                continue
            if random_moves:
                allowed = probes_allowed(beliefs, displaced)
                probe, why = (RandomExplorer().choose(beliefs, displaced, rng), "random") if allowed else (None, "")
            else:
                probe, why = _next_move(goal.part, beliefs, displaced, failed_in_state, seen_in_state, config, chooser,
                                        rng)
            decide += time.perf_counter() - tic
            if probe is None:
                reason = f"no move left that could open {goal.part!r}"
                break
            p_move = beliefs.move_probability(probe.part, displaced, probe.direction)
            moved = arm(probe.part, probe.direction, displaced)
            attempt, displaced = apply_outcome(beliefs, probe, displaced, moved, unattempted, learn=config.learn)
            step = {"part": probe.part, "direction": probe.direction, "why": why, "moved": moved,
                    "p_move": p_move}
            if moved is not None:  # how unexpected the outcome was to the lock beliefs (nats)
                step["surprise"] = -float(np.log(max(p_move if moved else 1.0 - p_move, 1e-9)))
            steps.append(step)
            if attempt is not None:
                if attempt.moved and probe.direction == OPEN:
                    opened_at[probe.part] = len(attempts)
                attempts.append(attempt)
                seen_in_state.setdefault((probe.part, probe.direction, attempt.displaced), []).append(attempt.moved)
                if not attempt.moved and probe.direction == OPEN:
                    key = (probe.part, attempt.displaced)
                    failed_in_state[key] = failed_in_state.get(key, 0) + 1
        world_model.learn_from_paced()  # the last moves' lessons go on with the policies
        decide += sum(p["compute_s"] for p in world_model.paced)  # the MPC plans while the arm moves
        if policies is not None:  # the policies' learning on the job, this solve's share
            decide += sum(u["teacher_s"] + u["train_s"] for u in policies.updates[updates_before:])
        spent = Counter(prober.robot_s_by_activity)
        spent.subtract(activity0)
        return SolveOutcome(not pending, reason, beliefs, attempts, arm.interactions, steps, openings,
                            io.state.t - t0, decide, world_model.model, world_model.paced, views,
                            {k: round(v, 3) for k, v in spent.items() if v > 0})
    finally:
        world_model.close()


def part_view(prober: Prober, part: str) -> PartView:
    """What the sheet and the cameras show of `part` now (before any move: as it stands at rest)."""
    aff = prober.io.sheet.affordances[part]
    point, approach, grip = prober.io.handle_world(part)
    return PartView(aff.mode, tuple(map(float, point)),
                    tuple(tuple(map(float, d)) for d in canonical_directions(aff.mode, approach, grip)),
                    handle_class(aff.mode, approach, grip), handle_shape(aff))


def _goal_target(goal: TaskGoal, margin: float) -> float | None:
    """The opening to push a goal part on to: inside the goal's bounds by `margin` and as much
    again past the lower one (an estimate is good to a few per cent), or mid-way between the
    bounds if both are set. None if the goal has no lower bound (opening further cannot help)."""
    if goal.min_opening is None:
        return None
    low = goal.min_opening * (1.0 + 2.0 * margin)
    if goal.max_opening is None:
        return low
    return 0.5 * (goal.min_opening * (1.0 + margin) + goal.max_opening * (1.0 - margin))


class WorldModel:
    """The fitted model as the loop needs it: refitted from the probes so far when a move is to
    be rehearsed and something new was seen since the last fit (warm-started from that fit)."""

    def __init__(self, prober: Prober, beliefs: LockBeliefs, interactions: list[Interaction], config: SolveConfig,
                 policies: DeployedPolicies | None = None, dynamics_prior: DynamicsPrior | None = None):
        self.prober, self.beliefs, self.interactions, self.config = prober, beliefs, interactions, config
        self.policies = policies
        self.dynamics_prior = dynamics_prior  # a family's, from its memory (None: sysid's cold prior)
        self.model: FittedModel | None = None
        self._fitted_on = -1
        self._rehearser: Rehearser | None = None
        self._pool: rollout.Rollout | None = None  # threads for the MPC's rollouts, kept across moves
        self._mpcs: list[tuple[str, float, MPCPace]] = []
        self._policy_paces: list[tuple[str, float, PolicyPace]] = []
        self._learned_from = 0  # policy paces learned from so far

    @property
    def paced(self) -> list[dict]:
        """Per paced move: the part, its target, whether it came to rest there, what paced it (the
        MPC or a skill policy) and its compute (the MPC's replans, the policy's calls)."""
        mpc = [{"part": part, "target": target, "finished": pace.finished, "pacer": "mpc",
                "replans": pace.mpc.stats.replans, "compute_s": pace.mpc.stats.compute_s,
                "rollout_steps": pace.mpc.stats.rollout_steps} for part, target, pace in self._mpcs]
        return mpc + [{"part": part, "target": target, "finished": pace.finished, "pacer": "policy",
                       "calls": pace.calls, "compute_s": pace.compute_s} for part, target, pace in self._policy_paces]

    def pace(self, part: str, start: float, target: float) -> Pace | None:
        """A pace that takes `part` from opening `start` to `target`: its skill policy's if one was
        given, an MPC's in the refitted model otherwise; None if there is nothing to pace (no joint
        fitted, or it is there already)."""
        io = self.prober.io
        if io.T_world_base is None or target <= start:
            return None
        rehearser = self.refitted()
        if part not in rehearser.parts:
            return None
        revolute = self.model.part(part).articulation.kind == "revolute"
        pushing = io.sheet.affordances[part].mode == "push"
        if revolute and pushing:
            # the pace reads the opening off the hand's travel: a fingertip pushing a knob's pin
            # along a straight line slides round it, and its travel is not the pin's arc (a dial
            # paced to 2.18 rad by it went on to its stop at 2.50)
            return None
        radius = hinge_radius(self.prober, self.interactions, part) if revolute else None
        if self.policies is not None and part in self.policies.policies:
            from puzzlebot.agent.policy.skill_policy import PolicyPace

            self.learn_from_paced()  # the policy's last moves first, in the model refitted since
            policy_pace = PolicyPace(self.policies.policies[part], start, target, revolute, radius)
            self._policy_paces.append((part, target, policy_pace))
            return policy_pace
        if self._pool is None:
            self._pool = rollout.Rollout(nthread=rollout_threads())
        mpc = OpeningMPC(rehearser, part, target, pushing, self.config.mpc_config, pool=self._pool)
        pace = MPCPace(mpc, start, revolute=revolute, radius=radius)
        self._mpcs.append((part, target, pace))
        return pace

    def learn_from_paced(self) -> None:
        """Refit the deployed policies on the moves they paced since the last refit (on the job)."""
        if self.policies is None or self.policies.learning is None:
            return
        pending = [pace.visited_move() for _, _, pace in self._policy_paces[self._learned_from:]]
        self._learned_from = len(self._policy_paces)
        moves = [m for m in pending if m is not None]
        if moves:
            self.policies.learn(self.refitted(), moves)

    def close(self) -> None:
        """Release the MPC's rollout threads."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def rehearse(self, part: str, start: float, target: float | None) -> Rehearsal | None:
        """Rehearse driving `part` from opening `start` to `target`; None when there is nothing to
        rehearse it in (rehearsal off, the nominal baseline, no target, or no joint fitted yet)."""
        cfg, io = self.config, self.prober.io
        if not cfg.rehearse or not cfg.learn or target is None or target <= start or io.T_world_base is None:
            return None
        rehearser = self.refitted()
        if part not in rehearser.parts:
            return None
        return rehearser.rehearse(part, start, target)

    def refitted(self) -> Rehearser:
        """The rehearser on the model refitted to every probe so far (warm-started from the last fit)."""
        cfg, io = self.config, self.prober.io
        if len(self.interactions) != self._fitted_on:
            self.model = fit_model(self.beliefs, self.interactions, io.tracker.tracks, io.sheet, io.T_world_base,
                                   previous=self.model, dynamics_prior=self.dynamics_prior)
            self._fitted_on = len(self.interactions)
            self._rehearser = Rehearser(self.model, cfg.rehearsal)
        return self._rehearser


def _next_move(target: str, beliefs: LockBeliefs, displaced: frozenset[str],
               failed_in_state: dict[tuple[str, frozenset[str]], int],
               seen_in_state: dict[tuple[str, str, frozenset[str]], list[bool]], config: SolveConfig,
               chooser: ActiveExplorer, rng: np.random.Generator) -> tuple[Probe | None, str]:
    """The plan's first move towards opening `target`, or a goal-directed open when the plan
    is stuck (no plan, or its move failed `replan_failures` times in this very state).

    Stuck, the loop opens the part most likely both to move and to block the target (directly
    or through other parts): under the lock abstraction opening a part never stops another
    from opening, so an open that works is progress as well as evidence, where a test (the
    exploration's way to ask without giving anything up) costs as much and changes nothing.
    A move already made in this very state with a consistent outcome comes after every fresh
    one, and the least repeated first: the beliefs count a repeat as fresh evidence (outcomes
    slip at random), but the arm's failures are not random (a hand that cannot get under a knob
    fails the same way every time), and a budget spent re-trying the goal part alone (one
    false "stayed" of its blocker's blocker, twenty tries) is lost. Only when no
    open is left is the step an information-gain probe (`locks.next_probe`, weighted to the
    target).
    """
    cannot = frozenset(beliefs.cannot)
    if config.planner == "robust":
        scored = robust_plan(target, displaced, beliefs, rng, config.plan_samples, cannot=cannot)
        plan, described = (list(scored.moves), scored.describe()) if scored else (None, "")
    else:
        plan = plan_to_open(target, displaced, beliefs.map_graph(), cannot=cannot)
        described = " -> ".join(f"{p.direction} {p.part}" for p in plan) if plan else ""
    if plan and failed_in_state.get((plan[0].part, displaced), 0) < config.replan_failures:
        return plan[0], f"plan to open {target!r}: {described}"
    allowed = probes_allowed(beliefs, displaced)
    if not allowed:
        return None, ""
    opens = [p for p in allowed if p.direction == OPEN]
    if opens:
        weight = relevance(beliefs, target)
        # the opens made fewest times in this state with one outcome (0 for a fresh one), best first
        repeats = np.array([_repeats(seen_in_state.get((p.part, OPEN, displaced), [])) for p in opens])
        fresh = [p for p, n in zip(opens, repeats, strict=True) if n == repeats.min()]
        scores = np.array([beliefs.move_probability(p.part, displaced) * weight[beliefs.index[p.part]]
                           for p in fresh])
        best = np.flatnonzero(scores >= scores.max() - 1e-9)
        probe = fresh[int(rng.choice(best))]
        return probe, f"the plan is stuck: the open most likely to free {target!r}"
    probe = next_probe(beliefs, displaced, rng, chooser.horizon, chooser.discount, weights=relevance(beliefs, target))
    return probe, f"the plan is stuck: the most informative probe about opening {target!r}"


def _doubted(target: str, beliefs: LockBeliefs, displaced: frozenset[str],
             seen_in_state: dict[tuple[str, str, frozenset[str]], list[bool]],
             doubted: set[tuple[str, frozenset[str]]]) -> str | None:
    """A part believed open to try again another way, once every open left in this state
    (the target's included) has failed here: the likeliest blocker of the target among the
    open parts not yet doubted in this state. An open is the arm's judgement (a press whose
    finger slid off a knob's pin gave 10 mm beside it), and a part wrongly believed open is
    never tried again otherwise: the loop cycles through the parts it keeps locked until the
    budget is spent. Once per state, not once: a knob whose "open" was its lock's play did not
    turn when doubted before its blocker opened, and, never doubted again, left the goal
    tried ten times with every part believed open (gen_d5_s9502)."""
    opens = [p.part for p in probes_allowed(beliefs, displaced) if p.direction == OPEN]
    if target in displaced or target not in opens:
        return None
    if any(not seen_in_state.get((part, OPEN, displaced)) or any(seen_in_state[(part, OPEN, displaced)])
           for part in opens):
        return None  # something here is untried, or has moved here
    candidates = sorted(part for part in displaced if (part, displaced) not in doubted)
    if not candidates:
        return None
    weight = relevance(beliefs, target)
    return max(candidates, key=lambda part: weight[beliefs.index[part]])


def _repeats(outcomes: list[bool]) -> int:
    """How many times a probe was made in one state with the same outcome (0 if the outcomes disagree)."""
    return len(outcomes) if len(set(outcomes)) == 1 else 0
