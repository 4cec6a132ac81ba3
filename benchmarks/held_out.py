"""What the agent benchmarks share: the held-out lockboxes (one definition, the same puzzles)
and the runner that plays their episodes, one or several at a time.

Generator seeds from `HELD_OUT_SEED` on are used by no test; puzzle (depth d, seed index s)
is generated from seed HELD_OUT_SEED + 100 d + s.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import platform
import re
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rich.progress import Progress

from puzzlebot.files import write_text_atomic
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


class EpisodeCheckpoint:
    """Finished episodes' rows, one file each under `folder`, so a long run that stops (a killed
    job, a session that ends) resumes where it was. A row is reused only when it was played by the
    same code with the same settings (`fingerprint`); any other row is played again."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any]):
        self.folder = Path(folder)
        self.fingerprint = {"code": code_version(), **fingerprint}
        self.resumed = 0  # rows the last `run_episodes` took from here instead of playing them

    def _path(self, key: str) -> Path:
        return self.folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") + ".json")

    def load(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if saved.get("key") != key or saved.get("fingerprint") != self.fingerprint:
            return None
        return saved["row"]

    def save(self, key: str, row: dict[str, Any]) -> None:
        write_text_atomic(self._path(key), json.dumps({"key": key, "fingerprint": self.fingerprint, "row": row}))


def episode_checkpoint(args: Any) -> EpisodeCheckpoint:
    """The checkpoint of a benchmark's run folder (`args.runs`/episodes), fingerprinted by every
    option that changes what an episode plays (not --jobs or --runs)."""
    settings = {key: str(value) for key, value in sorted(vars(args).items()) if key not in ("jobs", "runs")}
    return EpisodeCheckpoint(Path(args.runs) / "episodes", settings)


def run_episodes(tasks: list[Any], play: Callable[[Any], dict[str, Any]], jobs: int,
                 label: Callable[[Any], str], checkpoint: EpisodeCheckpoint | None = None) -> list[dict[str, Any]]:
    """`play(task)` for every task, `jobs` at a time (each in its own process when jobs > 1: an
    episode's emulator is a process of its own as well); rows in task order. `play` must be a
    module-level function (or a partial of one) that turns its own failures into rows. With a
    `checkpoint`, every finished row is saved as it comes and rows saved earlier are not replayed,
    but for failed ones (rows with an "error": an emulator link lost to an overloaded machine is
    no measurement); `label(task)` is the key, so labels must be unique."""
    keys = [label(task) for task in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("run_episodes: task labels must be unique (they key the checkpoint)")
    rows: dict[int, dict[str, Any]] = {}
    if checkpoint is not None:
        for k, key in enumerate(keys):
            row = checkpoint.load(key)
            if row is not None and "error" not in row:  # a failed episode is no result: played again
                rows[k] = row
    todo = [k for k in range(len(tasks)) if k not in rows]
    if checkpoint is not None:
        checkpoint.resumed = len(rows)
    with Progress() as progress:
        if rows:
            progress.console.print(f"resumed {len(rows)} of {len(tasks)} episodes from {checkpoint.folder}")
        bar = progress.add_task("episodes", total=len(tasks), completed=len(rows))

        def done(k: int, row: dict[str, Any]) -> None:
            rows[k] = row
            if checkpoint is not None:
                checkpoint.save(keys[k], row)
            if "error" in row:
                progress.console.print(f"[red]{keys[k]} failed:[/] {row['error']}")
            progress.advance(bar)

        if jobs <= 1:
            for k in todo:
                progress.update(bar, description=keys[k])
                done(k, play(tasks[k]))
        else:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=end_with_parent) as pool:
                futures = {pool.submit(play, tasks[k]): k for k in todo}
                for future in as_completed(futures):
                    done(futures[future], future.result())
    return [rows[k] for k in range(len(tasks))]


def end_with_parent() -> None:
    """Make this process get SIGTERM when its parent dies (Linux; elsewhere nothing).

    Why: a benchmark stopped by `kill` left its pool's workers orphaned, each playing its episode
    (ten minutes or more at depth 5) to the end on the cores the next run needed; their emulator
    children end with them (the world's pipe closes)."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


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


def run_note(meta: dict[str, Any]) -> str:
    """How long the run took, and how much of it an earlier, stopped run of the same code played
    (its wall time is not in `wall_s`), for a results header."""
    note = f"{meta['wall_s'] / 60:.0f} min"
    if meta.get("resumed_episodes"):
        note += (f" for the episodes played in this run; {meta['resumed_episodes']} more were resumed from "
                 f"an earlier run of the same code (`{meta.get('code', '?')}`)")
    return note
