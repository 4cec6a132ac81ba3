"""Simulation: puzzles compiled to MuJoCo, robots, and the gymnasium envs (registered on import)."""

from puzzlebot.sim.registry import register_envs

register_envs()

__all__ = ["register_envs"]
