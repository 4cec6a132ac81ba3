"""Gymnasium ids of the lockbox envs: one table, registered idempotently.

`import puzzlebot.sim` registers them, so `gymnasium.make("puzzlebot/Lockbox-v0")` works after
that import (or with gymnasium's module prefix: `gymnasium.make("puzzlebot.sim:puzzlebot/Lockbox-v0")`).
"""

from __future__ import annotations

import gymnasium

ENTRY_POINT = "puzzlebot.sim.env:LockboxEnv"
MAX_EPISODE_STEPS = 500
"""500 steps x 40 ms = 20 s: about twice what a scripted bolt + drawer solve needs."""

ENVS: dict[str, dict[str, str]] = {
    "puzzlebot/Lockbox-v0": {"robot": "gripper", "control": "ee"},
    "puzzlebot/LockboxJaco-v0": {"robot": "jaco", "control": "ee"},
    "puzzlebot/LockboxJacoJoint-v0": {"robot": "jaco", "control": "joint"},
}
"""Env id -> `EnvConfig` fields it fixes; others keep their defaults or come from `make`'s kwargs."""


def register_envs() -> None:
    """Register every id in `ENVS` that gymnasium does not know yet (safe to call again)."""
    for env_id, kwargs in ENVS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(id=env_id, entry_point=ENTRY_POINT, max_episode_steps=MAX_EPISODE_STEPS,
                           kwargs=dict(kwargs))
