"""`DmEnvAdapter`: a gymnasium lockbox env behind the `dm_env.Environment` interface.

For agents written against dm_env (acme, dm_control-style loops). Specs are derived from the
gym spaces, so the two stay in step; truncation by `TimeLimit` becomes a LAST step with
discount 1, termination (goal reached) a LAST step with discount 0.
"""

from __future__ import annotations

from typing import Any

import dm_env
import gymnasium as gym
import numpy as np
from dm_env import specs


def spec_from_space(space: gym.Space, name: str = "") -> Any:
    """A dm_env spec mirroring a gym space: Box -> BoundedArray (Array if unbounded), Dict -> dict.

    Args:
        space: a `spaces.Box` or a (nested) `spaces.Dict` of them.
        name: the spec's name; nested keys are joined with '/'.
    """
    if isinstance(space, gym.spaces.Dict):
        return {key: spec_from_space(sub, f"{name}/{key}" if name else key) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Box):
        if np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
            return specs.BoundedArray(space.shape, space.dtype, space.low, space.high, name=name)
        return specs.Array(space.shape, space.dtype, name=name)
    raise TypeError(f"no dm_env spec for {type(space).__name__} (at {name or 'the top level'})")


class DmEnvAdapter(dm_env.Environment):
    """Runs a gymnasium env (usually from `gymnasium.make`, with its `TimeLimit`) as a dm_env."""

    def __init__(self, env: gym.Env, seed: int | None = None):
        """Wrap `env`; nothing runs until the first `reset()`.

        Args:
            env: the gymnasium env; closed by `close()`.
            seed: passed to the first `reset()`; later resets continue the env's random stream.
        """
        self._env = env
        self._seed = seed
        self._needs_reset = True
        self._observation_spec = spec_from_space(env.observation_space)
        self._action_spec = spec_from_space(env.action_space, "action")

    @property
    def gym_env(self) -> gym.Env:
        """The wrapped gymnasium env."""
        return self._env

    def reset(self) -> dm_env.TimeStep:
        """Start an episode: a FIRST step with reward and discount None."""
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None
        self._needs_reset = False
        return dm_env.restart(obs)

    def step(self, action: np.ndarray) -> dm_env.TimeStep:
        """Advance one step; after a LAST step, the next call resets (dm_env's convention)."""
        if self._needs_reset:
            return self.reset()
        obs, reward, terminated, truncated, _ = self._env.step(action)
        if terminated:
            self._needs_reset = True
            return dm_env.termination(float(reward), obs)
        if truncated:
            self._needs_reset = True
            return dm_env.truncation(float(reward), obs)
        return dm_env.transition(float(reward), obs)

    def observation_spec(self) -> Any:
        return self._observation_spec

    def action_spec(self) -> specs.BoundedArray:
        return self._action_spec

    def close(self) -> None:
        self._env.close()
