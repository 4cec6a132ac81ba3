"""What the agent benchmarks share: the held-out lockboxes (one definition, the same puzzles)
and the runner that plays their episodes, one or several at a time.

Generator seeds from `HELD_OUT_SEED` on are used by no test; puzzle (depth d, seed index s)
is generated from seed HELD_OUT_SEED + 100 d + s.
"""

from __future__ import annotations

import json
import multiprocessing
import platform
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rich.progress import Progress

from puzzlebot.sim.generator import GeneratorConfig, generate
from puzzlebot.sim.spec import PuzzleSpec

HELD_OUT_SEED = 9000


def parse_depths(text: str) -> list[int]:
    """'1-5' or '1,3,5' -> [1, ...]."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(v) for v in text.split(",")]


def held_out_puzzles(depths: list[int], seeds: int,
                     seeds_at: dict[int, int] | None = None) -> list[tuple[int, PuzzleSpec]]:
    """(depth, spec) for every depth and seed index, depth-major; `seeds_at` gives some depths
    more (or fewer) seeds than `seeds` (a rate at depth 5 needs more than two puzzles)."""
    seeds_at = seeds_at or {}
    return [(d, generate(GeneratorConfig(depth=d, seed=HELD_OUT_SEED + 100 * d + s)))
            for d in depths for s in range(seeds_at.get(d, seeds))]


def parse_seeds_at(items: list[str]) -> dict[int, int]:
    """['5:6', ...] -> {5: 6, ...}."""
    out = {}
    for item in items:
        depth, _, count = item.partition(":")
        if not (depth.isdigit() and count.isdigit()):
            raise ValueError(f"--seeds-at {item!r}: expected DEPTH:SEEDS, e.g. 5:6")
        out[int(depth)] = int(count)
    return out


def run_episodes(tasks: list[Any], play: Callable[[Any], dict[str, Any]], jobs: int,
                 label: Callable[[Any], str]) -> list[dict[str, Any]]:
    """`play(task)` for every task, `jobs` at a time (each in its own process when jobs > 1: an
    episode's emulator is a process of its own as well); rows in task order. `play` must be a
    module-level function (or a partial of one) that turns its own failures into rows."""
    rows: dict[int, dict[str, Any]] = {}
    with Progress() as progress:
        bar = progress.add_task("episodes", total=len(tasks))

        def done(k: int, row: dict[str, Any]) -> None:
            rows[k] = row
            if "error" in row:
                progress.console.print(f"[red]{label(tasks[k])} failed:[/] {row['error']}")
            progress.advance(bar)

        if jobs <= 1:
            for k, task in enumerate(tasks):
                progress.update(bar, description=label(task))
                done(k, play(task))
        else:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(play, task): k for k, task in enumerate(tasks)}
                for future in as_completed(futures):
                    done(futures[future], future.result())
    return [rows[k] for k in range(len(tasks))]


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {platform.system()}"


def code_version() -> str:
    """The commit the benchmark ran from (with "+changes" if the tree differed), for the record."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "../puzzlebot", "*.py"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+changes" if dirty else "")


def write_results(folder: Path, name: str, summary: dict[str, Any], meta: dict[str, Any], rows: list[dict[str, Any]],
                  markdown: str, plot: Callable[[Path], None]) -> None:
    """`name`.json (summary, meta and every row), .md and .png in `folder`; the summary is printed."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "code": code_version()}
    (folder / f"{name}.json").write_text(json.dumps({**summary, "meta": meta, "runs": rows}, indent=1))
    (folder / f"{name}.md").write_text(markdown)
    plot(folder / f"{name}.png")
    print(json.dumps(summary, indent=1))
