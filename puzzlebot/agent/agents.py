"""The agents that act on the emulator (or an arm) through the solve loop's skills, by name.

`puzzlebot` is the agent; its baselines use the same skills, budget and goal estimate:
`random` draws every move uniformly, `nominal` plans on its prior lock beliefs and never
refits them, and `ppo` is model-free PPO learning on the puzzle within the same budget
(`agent.policy.ppo_baseline`). The runner and the benchmarks take them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from puzzlebot.agent.affordances import TaskGoal
from puzzlebot.agent.explorer import ExplorerConfig
from puzzlebot.agent.probing import Prober
from puzzlebot.agent.solve import SolveConfig, SolveOutcome, solve

EMULATOR_AGENTS = ("puzzlebot", "random", "nominal", "ppo")

Solver = Callable[[Prober, list[str], list[TaskGoal], SolveConfig], SolveOutcome]


def solve_setup(agent: str, seed: int, max_attempts: int, max_robot_s: float,
                ppo_overrides: dict | None = None) -> tuple[SolveConfig, Solver]:
    """The solve loop's config and the solver for `agent`, seeded with `seed`."""
    if agent not in EMULATOR_AGENTS:
        raise ValueError(f"agent {agent!r} does not act through the solve loop's skills (those that do: "
                         f"{', '.join(EMULATOR_AGENTS)})")
    config = SolveConfig(explorer=ExplorerConfig(strategy="random" if agent == "random" else "active", seed=seed),
                         max_attempts=max_attempts, max_robot_s=max_robot_s, learn=agent != "nominal")
    if agent != "ppo":
        return config, solve
    from puzzlebot.agent.policy.ppo_baseline import PPOConfig, solve_ppo

    return config, partial(solve_ppo, ppo=PPOConfig(**{"seed": seed, **(ppo_overrides or {})}))
