"""Solving held-out generated lockboxes: the agent against its baselines, in one run.

For every puzzle each agent gets a fresh episode:

- `puzzlebot`: the solve loop (`agent/solve.py`) on the lockstep reality emulator with its
  hidden gap, through the driver layer, from camera images;
- `random`: the same loop, skills and budget, moves drawn uniformly (the exploration baseline);
- `nominal`: the same loop planning on its prior model throughout: the lock beliefs are never
  updated and nothing is refitted (what fitting buys);
- `ppo`: model-free PPO (sb3-contrib MaskablePPO) learning on the puzzle itself, on the same
  emulator, with the same skills and budget (`agent/policy/ppo_baseline.py`);
- `oracle`: reads the true puzzle and acts in simulation (the upper bound; no gap, no cameras).

Solved is read from the world (the emulator's own joints after the episode, or the oracle's
simulated world), never from an agent. Robot time is on the arm's clock; compute is what the
agent spent deciding and fitting (the oracle's is its wall time).

Rehearsal throughput: on each puzzle's fitted model (after puzzlebot's solve), the goal part's
push rehearsed under 16 posterior draws through `agent.rehearsal`, against raw
`mujoco.rollout` on the same models and inputs, in the same process; and likewise one replan
of the MPC that paces moves with a target (`agent.mpc`: 26 profiles x 8 draws x 0.8 s).

Writes benchmarks/results/solve.json, .md and .png (`--quick`: solve_quick.*, one depth-1
lockbox, under a minute).

    python benchmarks/solve.py                 # depths 1-5, 2 seeds each
    python benchmarks/solve.py --jobs 2        # two episodes at a time (compute times then share the CPU)
    python benchmarks/solve.py --jobs 2 --seeds-at 5:6   # 6 lockboxes at depth 5 (the committed run)
    python benchmarks/solve.py --jobs 2 --agents puzzlebot --depths 5 --seeds 6   # -> solve_puzzlebot_d5.*
    python benchmarks/solve.py --quick
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from held_out import (
    episode_checkpoint,
    held_out_puzzles,
    machine,
    parse_depths,
    parse_seeds_at,
    run_episodes,
    run_note,
    write_results,
)

from puzzlebot.agent.affordances import marker_sheet, task_goals
from puzzlebot.agent.agents import solve_setup
from puzzlebot.agent.fitted_model import FittedModel
from puzzlebot.agent.mpc import OpeningMPC
from puzzlebot.agent.rehearsal import RehearsalConfig, Rehearser
from puzzlebot.agent.session import SessionConfig, run_solve
from puzzlebot.agent.solve import SolveConfig
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig
from puzzlebot.sim.oracle import Oracle
from puzzlebot.sim.world import WorldConfig

RESULTS = Path(__file__).resolve().parent / "results"
AGENTS = ("puzzlebot", "random", "nominal", "ppo", "oracle")


def run_agent(spec, depth: int, agent: str, seed: int, budget: SolveConfig, runs: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"puzzle": spec.name, "depth": depth, "agent": agent}
    if agent == "oracle":
        tic = time.perf_counter()
        result = Oracle(spec, WorldConfig(robot="gripper")).solve()
        return {**row, "solved": bool(result.solved), "attempts": result.attempts, "robot_time_s": result.sim_time_s,
                "compute_s": time.perf_counter() - tic, "reason": result.reason}
    emulator = EmulatorBackend(EmulatorConfig(puzzle=spec, robot="gripper", seed=seed, cameras=("closeup", "top"),
                                              image_size=(480, 640), realtime=False, lockstep=True))
    config, solver = solve_setup(agent, seed, budget.max_attempts, budget.max_robot_s)
    goals = task_goals(spec)
    result = run_solve(emulator, marker_sheet(spec), goals, runs / spec.name / agent,
                       SessionConfig(record_episode=False), config, solver)
    outcome = result.outcome
    surprises = [s["surprise"] for s in outcome.steps if "surprise" in s]
    row = {**row, "solved": result.solved, "believed_solved": outcome.believed_solved,
           "attempts": len(outcome.attempts), "robot_time_s": outcome.robot_time_s,
           "robot_s_by_activity": outcome.robot_s_by_activity, "compute_s": outcome.decide_s + result.fit_s,
           "wall_s": result.wall_s, "reason": outcome.reason,
           "mean_surprise_nats": float(np.mean(surprises)) if surprises else None,
           "mpc_paced_moves": len(outcome.mpc), "mpc_compute_s": float(sum(p["compute_s"] for p in outcome.mpc))}
    if agent == "puzzlebot":
        # its rehearsal throughput is measured after the runs; relative to --runs, so a run resumed
        # from a moved folder finds it
        row["fitted_model"] = f"{spec.name}/{agent}"
    return row


def rehearsal_throughput(folder: str | Path, goal: str) -> dict[str, float] | None:
    """Rehearsing a push of the goal part (else any part with a fitted joint) in the fitted model
    saved in `folder`, against raw rollout on the same models and inputs (best of 10 each)."""
    model = FittedModel.load(Path(folder))
    rehearser = Rehearser(model, RehearsalConfig())
    if not rehearser.parts:
        return None
    part = goal if goal in rehearser.parts else rehearser.parts[0]
    lo, hi = model.part(part).articulation.observed_range
    out = rehearser.throughput(part, 0.0, 0.8 * max(hi, -lo), repeats=10)
    with OpeningMPC(rehearser, part, 0.8 * max(hi, -lo), pushing=False) as mpc:  # one replan of the MPC
        out["mpc"] = mpc.throughput(0.0, 0.0, repeats=10)
    return out


def summarize(rows: list[dict[str, Any]], depths: list[int], agents: tuple[str, ...] = AGENTS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for agent in agents:
        mine = [r for r in rows if r["agent"] == agent]
        by_depth = {str(d): float(np.mean([r["solved"] for r in mine if r["depth"] == d]))
                    for d in depths if any(r["depth"] == d for r in mine)}
        finite = [r for r in mine if "error" not in r]
        out[agent] = {
            "solve_rate_by_depth": by_depth,
            "solve_rate": float(np.mean([r["solved"] for r in mine])) if mine else float("nan"),
            "median_robot_time_s": float(np.median([r["robot_time_s"] for r in finite])) if finite else float("nan"),
            "median_attempts": float(np.median([r["attempts"] for r in finite])) if finite else float("nan"),
            "median_compute_s": float(np.median([r["compute_s"] for r in finite])) if finite else float("nan"),
            "failed_sessions": len(mine) - len(finite),
        }
    if "puzzlebot" not in agents:
        return out
    out["puzzlebot"]["false_beliefs"] = sum(1 for r in rows if r["agent"] == "puzzlebot" and "error" not in r
                                            and r["believed_solved"] != r["solved"])
    measured = [r["rollout_throughput"] for r in rows if r.get("rollout_throughput")]
    ratio = float(np.median([m["ratio"] for m in measured])) if measured else None
    out["puzzlebot"]["rollout_throughput_ratio"] = ratio
    out["puzzlebot"]["rehearsal_steps_per_s_median"] = (float(np.median([m["rehearsal_steps_per_s"] for m in measured]))
                                                        if measured else None)
    mpc = [m["mpc"] for m in measured if "mpc" in m]
    out["puzzlebot"]["mpc_throughput_ratio"] = float(np.median([m["ratio"] for m in mpc])) if mpc else None
    out["puzzlebot"]["mpc_replan_s_median"] = float(np.median([m["replan_s"] for m in mpc])) if mpc else None
    out["puzzlebot"]["rollout_throughput_note"] = (
        f"rehearsal at {ratio:.0%} of raw mujoco.rollout ({len(measured)} fitted models)"
        + (f"; an MPC replan at {out['puzzlebot']['mpc_throughput_ratio']:.0%} of it, "
           f"{1000 * out['puzzlebot']['mpc_replan_s_median']:.0f} ms" if mpc else "") if measured
        else "not measured: no fitted joint to rehearse")
    return out


def markdown(summary: dict[str, Any], rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# Solving generated lockboxes", "",
             f"{meta['puzzles']} held-out generated lockboxes (depths {meta['depths']}, {meta['seeds']} seed(s) each"
             + "".join(f", {n} at depth {d}" for d, n in meta.get("seeds_at", {}).items()) + "); "
             f"{', '.join(a for a in meta['agents'] if a != 'oracle')} on the lockstep reality emulator (hidden gap, "
             "floating gripper, closeup and top cameras 480x640)"
             + (", the oracle in simulation" if "oracle" in meta["agents"] else "")
             + f"; budget {meta['max_attempts']} probes and {meta['max_robot_s']:.0f} s of robot time; "
             f"{meta['machine']}; {run_note(meta)}.", "",
             "Targets: >= 95 % solved at depth 5, median <= 5 min robot time and <= 10 attempts, <= 2 min compute.", "",
             "| agent | solved by depth | median robot s | median attempts | median compute s | note |",
             "|---|---|---|---|---|---|"]
    for agent, s in summary.items():
        rates = ", ".join(f"d{d}: {v:.0%}" for d, v in s["solve_rate_by_depth"].items()) or "-"
        fmt = (lambda v: "-" if v is None else f"{v:.1f}")  # noqa: E731
        lines.append(f"| {agent} | {rates} | {fmt(s['median_robot_time_s'])} | {fmt(s['median_attempts'])} | "
                     f"{fmt(s['median_compute_s'])} | {s.get('note', s.get('rollout_throughput_note', ''))} |")
    lines += ["", "| puzzle | agent | solved (world) | believed | attempts | robot s | compute s | why it stopped |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['puzzle']} | {r['agent']} | {r['solved']} | {r.get('believed_solved', '-')} | "
                     f"{r.get('attempts', '-')} | {r.get('robot_time_s', float('nan')):.0f} | "
                     f"{r.get('compute_s', float('nan')):.1f} | {r.get('reason') or r.get('error', '')} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    """Solve rate by depth, one line per agent in `summary`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for agent in summary:
        rates = summary[agent]["solve_rate_by_depth"]
        ax.plot([int(d) for d in rates], list(rates.values()), marker="o", label=agent)
    ax.set_xlabel("depth")
    ax.set_ylabel("solved (on the world)")
    ax.set_ylim(-0.05, 1.05)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_agents(text: str) -> tuple[str, ...]:
    """'puzzlebot,nominal' -> ('puzzlebot', 'nominal'), in the order given; unknown names raise."""
    agents = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in agents if a not in AGENTS]
    if unknown or not agents or len(set(agents)) != len(agents):
        raise SystemExit(f"--agents {text!r}: expected distinct names from {', '.join(AGENTS)}"
                         + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    return agents


def results_name(agents: tuple[str, ...], depths: list[int], quick: bool) -> str:
    """`solve` for the full comparison (every agent, depths 1-5): what the README and the checks
    read. Any other run writes beside it, named by what it covers, so it never replaces it."""
    if quick:
        return "solve_quick"
    if set(agents) == set(AGENTS) and depths == [1, 2, 3, 4, 5]:
        return "solve"
    return "solve_" + "_".join(agents) + "_d" + "".join(str(d) for d in depths)


def _run_one(task, budget: SolveConfig, runs: Path) -> dict[str, Any]:
    i, depth, spec, agent = task
    try:
        return run_agent(spec, depth, agent, seed=i, budget=budget, runs=runs)
    except Exception as err:  # a failed session counts as unsolved, never silently
        return {"puzzle": spec.name, "depth": depth, "agent": agent, "solved": False,
                "error": f"{type(err).__name__}: {err}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", default="1-5")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--seeds-at", action="append", default=[], metavar="DEPTH:SEEDS",
                        help="more seeds at one depth, e.g. 5:6 (repeatable)")
    parser.add_argument("--max-attempts", type=int, default=30)
    parser.add_argument("--max-robot-s", type=float, default=900.0)
    parser.add_argument("--agents", default=",".join(AGENTS),
                        help=f"comma-separated subset of {','.join(AGENTS)}; a subset (or other depths) writes "
                             "solve_<agents>_d<depths>.* beside the full run's results")
    parser.add_argument("--quick", action="store_true", help="one depth-1 lockbox (under a minute)")
    parser.add_argument("--runs", type=Path, default=Path("outputs/benchmarks/solve"))
    parser.add_argument("--jobs", type=int, default=1, help="episodes run at once, each in its own process")
    args = parser.parse_args()
    agents = parse_agents(args.agents)
    depths, seeds = ([1], 1) if args.quick else (parse_depths(args.depths), args.seeds)
    budget = SolveConfig(max_attempts=args.max_attempts, max_robot_s=args.max_robot_s)
    seeds_at = {} if args.quick else parse_seeds_at(args.seeds_at)
    puzzles = held_out_puzzles(depths, seeds, seeds_at)
    t0 = time.monotonic()
    tasks = [(i, depth, spec, agent) for i, (depth, spec) in enumerate(puzzles) for agent in agents]
    checkpoint = episode_checkpoint(args)
    rows = run_episodes(tasks, partial(_run_one, budget=budget, runs=args.runs), args.jobs,
                        label=lambda task: f"{task[2].name}: {task[3]}",
                        checkpoint=checkpoint)
    goal_of = {spec.name: task_goals(spec)[0].part for _, spec in puzzles}
    for row in rows:  # one process, nothing else running: the throughput is not shared with an episode
        if row.get("fitted_model"):
            row["rollout_throughput"] = rehearsal_throughput(args.runs / row["fitted_model"], goal_of[row["puzzle"]])
    summary = summarize(rows, depths, agents)
    meta = {"puzzles": len(puzzles), "agents": list(agents), "depths": f"{depths[0]}-{depths[-1]}", "seeds": seeds,
            "seeds_at": seeds_at,
            "quick": args.quick,
            "jobs": args.jobs,
            "max_attempts": args.max_attempts, "max_robot_s": args.max_robot_s,
            "machine": machine(),
            "wall_s": time.monotonic() - t0, "resumed_episodes": checkpoint.resumed,
            "code": checkpoint.fingerprint["code"]}
    name = results_name(agents, depths, args.quick)
    write_results(RESULTS, name, summary, meta, rows, markdown(summary, rows, meta),
                  lambda path: plot(summary, path))


if __name__ == "__main__":
    main()
