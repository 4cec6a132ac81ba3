"""The puzzle as a reinforcement-learning environment over the solve loop's moves.

An action is one move of the solve loop's skills on one part: open it (for a goal part that
is already open, push it further) or test it (move it a little and leave it). The observation
is what the agent has seen, and nothing of the puzzle's insides: per part slot, whether the
part is there, is the goal, stands open, how far the goal has come, and how often opens and
tests of it failed (in this very state and overall); plus the budget spent. Moves the robot
cannot make, and slots with no part, are masked out (`action_masks`, as sb3-contrib's
`MaskablePPO` reads it).

The env acts on a `MoveWorld`: `ProberWorld` is the real thing (the emulator or an arm through
the prober, which cannot be reset: the puzzle stays where the last move left it), and
`LockGraphWorld` a noise-free lock graph that resets, for tests and for training on toy boxes.

Rewards: `step_cost` per move (the arm's time), `open_reward` for a closed part that opened
(every lock is released by opening something), `goal_reward` once every goal holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from puzzlebot.agent.affordances import TaskGoal
from puzzlebot.agent.explorer import ArmMoves
from puzzlebot.agent.locks import OPEN, TEST, Attempt, LockBeliefs, Probe, apply_outcome, graph_moves
from puzzlebot.agent.part_state import opening
from puzzlebot.agent.probing import Prober

DIRECTIONS = (OPEN, TEST)
FEATURES = ("present", "goal", "open", "goal_progress", "opens_failed_here", "opens_failed", "tests_failed",
            "tests_moved")


@dataclass(frozen=True)
class MoveEnvConfig:
    max_parts: int = 8  # part slots in the observation and action spaces
    max_attempts: int = 30  # attempts (moves that engaged the part) before the episode is truncated
    max_robot_s: float = 900.0  # s on the arm's clock before the episode is truncated
    step_cost: float = 0.1
    open_reward: float = 0.05  # below step_cost: an open that works costs less than one that fails, but opening
    # a part the goal does not need is still a loss (at 1.0 the learner opened every free part first)
    goal_reward: float = 10.0

    def __post_init__(self) -> None:
        if self.max_parts < 1 or self.max_attempts < 1 or self.max_robot_s <= 0:
            raise ValueError(f"MoveEnvConfig: max_parts ({self.max_parts}), max_attempts ({self.max_attempts}) "
                             f"and max_robot_s ({self.max_robot_s}) must be positive")


class MoveWorld(Protocol):
    """What the env acts on: parts that open or stay put, and a goal."""

    parts: list[str]
    goal_parts: list[str]

    def move(self, part: str, direction: str, displaced: frozenset[str]) -> bool | None:
        """Make the move; whether the part was seen to move (None: the robot could not engage it)."""

    def goal_progress(self, part: str) -> float:
        """How far the goal part has come towards its goal, 0..1 (1: the goal holds)."""

    def robot_time(self) -> float:
        """Seconds on the arm's clock since the episode began."""

    resettable: bool  # False: the puzzle stays where the last move left it (one episode per world)

    def reset(self) -> None:
        """Bring the puzzle back to its start (where `resettable`)."""


class ProberWorld:
    """The puzzle on the emulator or an arm, through the prober's skills; judged, like the solve
    loop, by the agent's own estimate of each goal part's opening (with `margin`)."""

    def __init__(self, prober: Prober, parts: list[str], goals: list[TaskGoal], margin: float,
                 cannot: set[tuple[str, str]]):
        self._opening = opening
        self.prober, self.parts, self.goals, self.margin = prober, list(parts), list(goals), margin
        self.goal_parts = [g.part for g in goals]
        self.arm = ArmMoves(prober, None, cannot)
        self._t0 = prober.io.state.t

    def move(self, part: str, direction: str, displaced: frozenset[str]) -> bool | None:
        return self.arm(part, direction, displaced)

    def opening(self, part: str) -> float:
        return self._opening(self.prober, self.arm.interactions, part)

    def goal_progress(self, part: str) -> float:
        goal = next(g for g in self.goals if g.part == part)
        if goal.holds(self.opening(part), self.margin):
            return 1.0
        if goal.min_opening is None:
            return 0.0
        return float(np.clip(self.opening(part) / (goal.min_opening * (1.0 + self.margin)), 0.0, 0.99))

    def robot_time(self) -> float:
        return self.prober.io.state.t - self._t0

    resettable = False  # a real puzzle is not put back: one episode per world

    def reset(self) -> None:
        pass


class LockGraphWorld:
    """A noise-free lockbox (`locks.graph_moves`): a goal part opens in one move once its
    blockers are open. Resets; each move costs `move_s` of robot time."""

    def __init__(self, graph: dict[str, Iterable[str]], goal: str, move_s: float = 10.0):
        if goal not in graph:
            raise ValueError(f"LockGraphWorld: goal {goal!r} is not a part of the graph {sorted(graph)}")
        self.parts, self.goal_parts = sorted(graph), [goal]
        self._moves, self.move_s = graph_moves(graph), move_s
        self.reset()

    resettable = True

    def move(self, part: str, direction: str, displaced: frozenset[str]) -> bool | None:
        self._t += self.move_s
        moved = self._moves(part, direction, displaced)
        if moved and direction == OPEN:
            self._open.add(part)
        return moved

    def goal_progress(self, part: str) -> float:
        return 1.0 if part in self._open else 0.0

    def robot_time(self) -> float:
        return self._t

    def reset(self) -> None:
        self._open: set[str] = set()
        self._t = 0.0


@dataclass
class _Tally:
    """What the env has seen so far in the episode (the policy's memory)."""

    displaced: frozenset[str] = frozenset()
    attempts: list[Attempt] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    failed_here: dict[tuple[str, frozenset[str]], int] = field(default_factory=dict)
    counts: dict[tuple[str, str, bool], int] = field(default_factory=dict)
    unattempted: dict[tuple[str, str], int] = field(default_factory=dict)


class MoveEnv(gym.Env):
    """One episode: move parts until every goal holds or a budget runs out (see the module doc)."""

    metadata = {"render_modes": []}

    def __init__(self, world: MoveWorld, beliefs: LockBeliefs, config: MoveEnvConfig = MoveEnvConfig()):
        if len(world.parts) > config.max_parts:
            raise ValueError(f"MoveEnvConfig.max_parts: {config.max_parts} slots for {len(world.parts)} parts "
                             f"({world.parts}); raise it")
        missing = sorted(set(world.goal_parts) - set(world.parts))
        if missing:
            raise ValueError(f"MoveEnv: goal parts {missing} are not among the parts {world.parts}")
        self.world, self.beliefs, self.config = world, beliefs, config
        n = config.max_parts
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n * len(FEATURES) + 1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(n * len(DIRECTIONS))
        self.tally, self.over = _Tally(), False
        self.act_s = 0.0  # wall time spent making moves (the arm, or the emulator's simulation)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if self.tally.steps and not self.world.resettable:
            # a learner's automatic reset after the one episode (sb3's vector env does this before
            # its callback can stop it): nothing is put back, and `step` refuses to go on
            self.over = True
            return self._observation(), {}
        self.world.reset()
        self.tally, self.over = _Tally(), False
        return self._observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.over:
            raise RuntimeError("MoveEnv.step: the episode is over and this world cannot be reset (a real puzzle)")
        action = int(action)
        if not 0 <= action < self.action_space.n or not self.action_masks()[action]:
            raise ValueError(f"MoveEnv.step: action {action} is masked out in this state (allowed: "
                             f"{[self.decode(int(a)) for a in np.flatnonzero(self.action_masks())]})")
        part, direction = self.decode(action)
        tally, cfg = self.tally, self.config
        was_open = part in tally.displaced
        tic = time.perf_counter()
        moved = self.world.move(part, direction, tally.displaced)
        self.act_s += time.perf_counter() - tic
        attempt, displaced = apply_outcome(self.beliefs, Probe(part, direction), tally.displaced, moved,
                                           tally.unattempted, learn=False)
        if part in self.world.goal_parts and moved and direction == OPEN:
            displaced = displaced | {part}  # a goal part pushed on stays open
        tally.displaced = displaced
        tally.steps.append({"part": part, "direction": direction, "why": "ppo policy", "moved": moved})
        if attempt is not None:
            tally.attempts.append(attempt)
            tally.counts[(part, direction, bool(moved))] = tally.counts.get((part, direction, bool(moved)), 0) + 1
            if not moved and direction == OPEN:
                key = (part, attempt.displaced)
                tally.failed_here[key] = tally.failed_here.get(key, 0) + 1
        reward = -cfg.step_cost + (cfg.open_reward if moved and direction == OPEN and not was_open else 0.0)
        solved = self.goal_holds()
        if solved:
            reward += cfg.goal_reward
        truncated = not solved and (len(tally.attempts) >= cfg.max_attempts
                                    or self.world.robot_time() >= cfg.max_robot_s or not self.action_masks().any())
        return self._observation(), reward, solved, truncated, {"moved": moved}

    def action_masks(self) -> np.ndarray:
        """Which actions the robot can make now (sb3-contrib's MaskablePPO reads this)."""
        mask = np.zeros(self.action_space.n, dtype=bool)
        for i, part in enumerate(self.world.parts):
            is_open, is_goal = part in self.tally.displaced, part in self.world.goal_parts
            for j, direction in enumerate(DIRECTIONS):
                if (part, direction) in self.beliefs.cannot:
                    continue
                if is_open and not (is_goal and direction == OPEN):  # only a goal part is pushed on
                    continue
                mask[i * len(DIRECTIONS) + j] = True
        return mask

    # ------------------------------------------------------------------ helpers
    def decode(self, action: int) -> tuple[str, str]:
        slot, j = divmod(action, len(DIRECTIONS))
        if slot >= len(self.world.parts):
            raise ValueError(f"MoveEnv: action {action} names slot {slot}, but there are {len(self.world.parts)} parts")
        return self.world.parts[slot], DIRECTIONS[j]

    def goal_holds(self) -> bool:
        return all(self.world.goal_progress(p) >= 1.0 for p in self.world.goal_parts)

    def _observation(self) -> np.ndarray:
        tally, n = self.tally, self.config.max_parts
        obs = np.zeros((n, len(FEATURES)), dtype=np.float32)
        for i, part in enumerate(self.world.parts):
            is_goal = part in self.world.goal_parts
            obs[i] = (1.0, float(is_goal), float(part in tally.displaced),
                      self.world.goal_progress(part) if is_goal else 0.0,
                      min(tally.failed_here.get((part, tally.displaced), 0) / 3.0, 1.0),
                      min(tally.counts.get((part, OPEN, False), 0) / 5.0, 1.0),
                      min(tally.counts.get((part, TEST, False), 0) / 5.0, 1.0),
                      min(tally.counts.get((part, TEST, True), 0) / 5.0, 1.0))
        spent = min(len(tally.attempts) / self.config.max_attempts, 1.0)
        return np.append(obs.ravel(), np.float32(spent))
