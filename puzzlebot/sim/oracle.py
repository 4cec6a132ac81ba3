"""The ground-truth oracle: plan with the true lock logic, execute with the arm in simulation.

It reads the true spec and the true part states, so it is the upper-bound baseline and the
solvability check for generated and authored puzzles — never an agent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from puzzlebot.sim.logic import Move, PuzzleLogic
from puzzlebot.sim.skills import SkillConfig, SkillExecutor, SkillResult
from puzzlebot.sim.spec import PuzzleSpec
from puzzlebot.sim.world import PuzzleWorld, WorldConfig


@dataclass
class OracleResult:
    puzzle: str
    solved: bool
    plan: list[Move]
    executed: list[SkillResult] = field(default_factory=list)
    sim_time_s: float = 0.0
    reason: str = ""

    @property
    def attempts(self) -> int:
        return len(self.executed)


def plan(spec: PuzzleSpec) -> list[Move] | None:
    """Shortest solving sequence from the initial state, or None when unsolvable."""
    return PuzzleLogic(spec).solve()


def explain_unsolvable(spec: PuzzleSpec) -> str:
    """A human reason why no sequence opens the goal parts."""
    return PuzzleLogic(spec).explain_unsolvable()


class Oracle:
    """Solves a puzzle in simulation with the true model, replanning after a failed move."""

    def __init__(self, spec: PuzzleSpec, world_config: WorldConfig = WorldConfig(),
                 skill_config: SkillConfig = SkillConfig(), max_attempts: int = 12,
                 on_control: Callable[[PuzzleWorld], None] | None = None, world: PuzzleWorld | None = None):
        if not isinstance(spec, PuzzleSpec):
            raise TypeError(f"the oracle plans with a PuzzleSpec's declared locks; {type(spec).__name__} "
                            f"{getattr(spec, 'name', '')!r} (an MJCF puzzle) declares none, so it cannot be planned")
        self.spec = spec
        self.world = world or PuzzleWorld(spec, world_config)
        self.logic = PuzzleLogic(spec)
        self.executor = SkillExecutor(self.world, skill_config, on_control)
        self.max_attempts = max_attempts

    def solve(self) -> OracleResult:
        first_plan = self.logic.solve()
        result = OracleResult(self.spec.name, False, first_plan or [])
        if first_plan is None:
            result.reason = explain_unsolvable(self.spec)
            return result
        start = self.world.data.time
        while len(result.executed) < self.max_attempts:
            if self.world.goal_reached():
                result.solved = True
                break
            remaining = self.logic.solve(self.world.part_state())
            if not remaining:
                result.reason = f"no plan from the observed state {self.world.part_state()}"
                break
            move = remaining[0]
            result.executed.append(self.executor.operate(move.part, move.target))
        else:
            result.solved = self.world.goal_reached()
            if not result.solved:
                result.reason = f"attempt budget ({self.max_attempts}) spent; last state {self.world.part_state()}"
        result.sim_time_s = self.world.data.time - start
        return result
