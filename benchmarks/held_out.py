"""The held-out generated lockboxes the agent benchmarks share: one definition, the same puzzles.

Generator seeds from `HELD_OUT_SEED` on are used by no test; puzzle (depth d, seed index s)
is generated from seed HELD_OUT_SEED + 100 d + s.
"""

from __future__ import annotations

from puzzlebot.sim.generator import GeneratorConfig, generate
from puzzlebot.sim.spec import PuzzleSpec

HELD_OUT_SEED = 9000


def parse_depths(text: str) -> list[int]:
    """'1-5' or '1,3,5' -> [1, ...]."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(v) for v in text.split(",")]


def held_out_puzzles(depths: list[int], seeds: int) -> list[tuple[int, PuzzleSpec]]:
    """(depth, spec) for every depth and seed index, depth-major."""
    return [(d, generate(GeneratorConfig(depth=d, seed=HELD_OUT_SEED + 100 * d + s)))
            for d in depths for s in range(seeds)]
