"""The model-free baseline: PPO learning on the puzzle itself, with the solve loop's budget.

`solve_ppo` hands the puzzle (through the prober, on the emulator or an arm) to sb3-contrib's
`MaskablePPO` as a `MoveEnv` and lets it learn while it acts: a policy update after every
`n_steps` moves, from those moves alone, until the goal holds or the same attempt and
robot-time budget as puzzlebot's runs out. It has the same skills and sees what the agent
sees, but has no lock beliefs and no fitted model: what it knows is what its weights took in
from this episode's rewards. That is the comparison the issue asks for (model-free learning
with the same interaction budget); PPO with many episodes of its own is the policies' work
(`LockGraphWorld` resets, so `learn_online` also trains on toy boxes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from puzzlebot.agent.affordances import TaskGoal
from puzzlebot.agent.explorer import prior_beliefs
from puzzlebot.agent.policy.move_env import MoveEnv, MoveEnvConfig, ProberWorld
from puzzlebot.agent.probing import Prober
from puzzlebot.agent.solve import SolveConfig, SolveOutcome


@dataclass(frozen=True)
class PPOConfig:
    n_steps: int = 6  # moves per policy update: five updates within a 30-attempt budget
    batch_size: int = 6
    n_epochs: int = 4
    learning_rate: float = 3e-3
    gamma: float = 0.95
    gae_lambda: float = 0.9
    ent_coef: float = 0.01
    hidden: tuple[int, ...] = (64, 64)
    seed: int = 0
    env: MoveEnvConfig = field(default_factory=MoveEnvConfig)

    def __post_init__(self) -> None:
        if self.n_steps < 2 or self.batch_size < 2 or self.n_epochs < 1:
            raise ValueError(f"PPOConfig: n_steps ({self.n_steps}) and batch_size ({self.batch_size}) must be >= 2 "
                             f"and n_epochs ({self.n_epochs}) >= 1")
        if not 0.0 < self.learning_rate < 1.0 or not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"PPOConfig: learning_rate ({self.learning_rate}) must be in (0, 1) and gamma "
                             f"({self.gamma}) in (0, 1]")


def make_ppo(env: MoveEnv, config: PPOConfig):
    """A MaskablePPO learner on `env` (CPU; masked actions are never sampled)."""
    from sb3_contrib import MaskablePPO

    return MaskablePPO("MlpPolicy", env, learning_rate=config.learning_rate, n_steps=config.n_steps,
                       batch_size=config.batch_size, n_epochs=config.n_epochs, gamma=config.gamma,
                       gae_lambda=config.gae_lambda, ent_coef=config.ent_coef, seed=config.seed, device="cpu",
                       policy_kwargs={"net_arch": list(config.hidden)}, verbose=0)


def learn_online(env: MoveEnv, config: PPOConfig, model=None, episodes: int = 1):
    """Act in `env` for `episodes` episodes with PPO, updating as it goes; returns the learner."""
    from stable_baselines3.common.callbacks import BaseCallback

    class _StopAfterEpisodes(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.ended = 0

        def _on_step(self) -> bool:
            self.ended += int(self.locals["dones"].sum())
            return self.ended < episodes

    model = make_ppo(env, config) if model is None else model
    # each episode ends by its own budget (MoveEnvConfig), long before this many steps
    steps = episodes * (config.env.max_attempts * 4 + config.n_steps)
    model.learn(total_timesteps=steps, callback=_StopAfterEpisodes(), reset_num_timesteps=False)
    return model


def solve_ppo(prober: Prober, parts: list[str], goals: list[TaskGoal], config: SolveConfig = SolveConfig(),
              ppo: PPOConfig = PPOConfig()) -> SolveOutcome:
    """One episode of PPO learning on the real puzzle, within `config`'s budgets; reported like
    the solve loop's outcome (the goal judged by the same estimate, the world scored by the caller)."""
    unknown = sorted({g.part for g in goals} - set(parts))
    if unknown:
        raise ValueError(f"goal parts {unknown} are not among the seen parts {parts}: the agent cannot act on them")
    beliefs = prior_beliefs(prober, parts, config.explorer)  # only its list of moves the robot cannot make
    world = ProberWorld(prober, parts, goals, config.goal_margin, beliefs.cannot)
    env_config = MoveEnvConfig(max_parts=max(ppo.env.max_parts, len(parts)), max_attempts=config.max_attempts,
                               max_robot_s=config.max_robot_s, step_cost=ppo.env.step_cost,
                               open_reward=ppo.env.open_reward, goal_reward=ppo.env.goal_reward)
    env = MoveEnv(world, beliefs, env_config)
    tic = time.perf_counter()
    learn_online(env, PPOConfig(**{**ppo.__dict__, "env": env_config}))
    compute = time.perf_counter() - tic - env.act_s
    tally = env.tally
    solved = env.goal_holds()
    if solved:
        reason = "every goal holds by the agent's estimate"
    elif len(tally.attempts) >= config.max_attempts:
        reason = f"attempt budget spent ({config.max_attempts})"
    elif world.robot_time() >= config.max_robot_s:
        reason = f"robot-time budget spent ({config.max_robot_s:.0f} s)"
    else:
        reason = "no move left that the robot can make"
    openings = {g.part: world.opening(g.part) for g in goals}
    return SolveOutcome(solved, reason, beliefs, tally.attempts, world.arm.interactions, tally.steps, openings,
                        world.robot_time(), compute)
