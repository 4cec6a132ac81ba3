"""How reliably the ground-truth oracle solves generated lockboxes with each robot.

Writes benchmarks/results/oracle_solve.json and .md: per robot and depth, the solve rate
(measured on the simulated world: the goal holds), simulated robot time and wall time per
solve. The oracle reads the true puzzle, so this measures the skills and the arms, and is
the upper bound the agent is compared with later.

    python benchmarks/oracle_solve.py [--seeds 20] [--depths 1-5] [--robots gripper,jaco]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import mujoco
import numpy as np
from rich.progress import Progress

from puzzlebot.sim.generator import GeneratorConfig, generate
from puzzlebot.sim.oracle import Oracle
from puzzlebot.sim.world import WorldConfig

RESULTS = Path(__file__).resolve().parent / "results"


def _depths(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(v) for v in text.split(",")]


def run(robots: list[str], depths: list[int], seeds: int) -> dict:
    rows = []
    failures = []
    with Progress() as progress:
        task = progress.add_task("oracle solves", total=len(robots) * len(depths) * seeds)
        for robot in robots:
            for depth in depths:
                solved, sim_s, wall_s = [], [], []
                for seed in range(seeds):
                    spec = generate(GeneratorConfig(depth=depth, seed=seed))
                    start = time.perf_counter()
                    oracle = Oracle(spec, WorldConfig(robot=robot))
                    result = oracle.solve()
                    wall_s.append(time.perf_counter() - start)
                    solved.append(result.solved)
                    sim_s.append(result.sim_time_s)
                    if not result.solved:
                        failures.append({"robot": robot, "depth": depth, "seed": seed, "reason": result.reason})
                    progress.advance(task)
                rows.append({"robot": robot, "depth": depth, "puzzles": seeds,
                             "solve_rate": float(np.mean(solved)),
                             "sim_time_s_median": float(np.median(sim_s)), "sim_time_s_max": float(np.max(sim_s)),
                             "wall_s_median": float(np.median(wall_s)), "wall_s_max": float(np.max(wall_s))})
    return {
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                    "mujoco": mujoco.__version__},
        "seeds": seeds,
        "rows": rows,
        "solve_rate_by_robot": {r: float(np.mean([row["solve_rate"] for row in rows if row["robot"] == r]))
                                for r in robots},
        "failures": failures,
    }


def write(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / "oracle_solve.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(RESULTS / "oracle_solve.json")
    lines = ["# Oracle solves of generated lockboxes", "",
             f"Seeds 0..{results['seeds'] - 1} per depth; success measured on the simulated world. "
             f"{results['machine']['cpus']} CPUs, MuJoCo {results['machine']['mujoco']}.", "",
             "| robot | depth | solved | robot time s (median / max) | wall s (median / max) |",
             "|---|---|---|---|---|"]
    for row in results["rows"]:
        lines.append(f"| {row['robot']} | {row['depth']} | {row['solve_rate']:.0%} of {row['puzzles']} | "
                     f"{row['sim_time_s_median']:.1f} / {row['sim_time_s_max']:.1f} | "
                     f"{row['wall_s_median']:.2f} / {row['wall_s_max']:.2f} |")
    if results["failures"]:
        lines += ["", "Failures:", ""]
        lines += [f"- {f['robot']} depth {f['depth']} seed {f['seed']}: {f['reason']}" for f in results["failures"]]
    (RESULTS / "oracle_solve.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--depths", type=_depths, default=_depths("1-5"))
    parser.add_argument("--robots", default="gripper,jaco")
    args = parser.parse_args()
    results = run(args.robots.split(","), args.depths, args.seeds)
    write(results)
    print((RESULTS / "oracle_solve.md").read_text())


if __name__ == "__main__":
    main()
