"""Learning across a family of puzzles: the k-th lockbox of one family against a fresh agent.

The family: `--puzzles` lockboxes from one generator config (depth `--depth`, one distractor),
seeds used by no other benchmark or test. Two agents solve each one on the lockstep reality
emulator (hidden gap, same emulator seed for both):

- `continual`: puzzlebot solving them one after another, starting each from what the earlier
  ones taught it (`agent/memory.py`: the family's lock pattern, which way parts of each handle
  kind gave, dynamics), and learning from each when it is done;
- `fresh`: the same puzzlebot with the default priors on every puzzle.

Real time per puzzle is the arm's clock plus the agent's compute (what the puzzle would take
on a real arm; the emulator's own rendering and physics, faster or slower than real time on
this CPU, are not counted). The memory is learned only from the agent's own probes; the
puzzles' truth is read after each episode, to score it, and never reaches the memory.

Distilled against planner: on free slides and grasped hinges of held-out lockboxes (the
`mpc_skill` trial protocol), the MPC that paces moves with a target (the planner) and a small
policy distilled from that MPC in the same fitted model (`agent/policy/distill.py`, DAgger),
each moving the part to its target on the emulator; success within 5 mm at the handle, and
the compute per control step of each.

Writes benchmarks/results/continual.json, .md and .png; a stopped run resumes (`--runs`).

    python benchmarks/continual.py --jobs 2
    python benchmarks/continual.py --quick      # 3 depth-2 puzzles, 1 skill part: a smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from held_out import HELD_OUT_SEED, episode_checkpoint, machine, run_episodes, write_results
from mpc_skill import run_one, trial_parts

from puzzlebot.agent.affordances import marker_sheet, task_goals
from puzzlebot.agent.agents import solve_setup
from puzzlebot.agent.memory import FamilyMemory
from puzzlebot.agent.part_state import hinge_radius
from puzzlebot.agent.policy.distill import DistillConfig, distil_mpc
from puzzlebot.agent.policy.skill_policy import PolicyPace
from puzzlebot.agent.session import SessionConfig, run_solve
from puzzlebot.agent.solve import solve
from puzzlebot.files import write_text_atomic
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig
from puzzlebot.sim.generator import GeneratorConfig, generate

RESULTS = Path(__file__).resolve().parent / "results"
FAMILY_OFFSET = 50  # seed indices from here on, at the family's depth, are used by no other benchmark
SUCCESS_MM = 5.0
SKILL_VARIANTS = ("planner", "distilled")


def family(depth: int, puzzles: int) -> list:
    return [generate(GeneratorConfig(depth=depth, seed=HELD_OUT_SEED + 100 * depth + FAMILY_OFFSET + k))
            for k in range(puzzles)]


def solve_one(spec, seed: int, memory: FamilyMemory | None, max_attempts: int, max_robot_s: float,
              folder: Path) -> tuple[dict[str, Any], Any]:
    """One solve on the emulator, with the family's memory (continual) or without (fresh)."""
    emulator = EmulatorBackend(EmulatorConfig(puzzle=spec, robot="gripper", seed=seed, cameras=("closeup", "top"),
                                              image_size=(480, 640), realtime=False, lockstep=True))
    config, _ = solve_setup("puzzlebot", seed, max_attempts, max_robot_s)
    session = SessionConfig(record_episode=False)
    solver = solve
    if memory is not None:
        session = SessionConfig(record_episode=False, probe=memory.probe_config(session.probe))
        solver = partial(solve, memory=memory)
    result = run_solve(emulator, marker_sheet(spec), task_goals(spec), folder, session, config, solver)
    outcome = result.outcome
    compute = outcome.decide_s + result.fit_s
    row = {"puzzle": spec.name, "solved": result.solved, "attempts": len(outcome.attempts),
           "failed_attempts": sum(not a.moved for a in outcome.attempts),
           "directions_tried": sum(len(i.tried) for i in outcome.interactions),
           "robot_time_s": outcome.robot_time_s, "robot_s_by_activity": outcome.robot_s_by_activity,
           "compute_s": compute, "real_time_s": outcome.robot_time_s + compute,
           "wall_s": result.wall_s, "reason": outcome.reason}
    return row, result


def run_fresh(task, max_attempts: int, max_robot_s: float, runs: Path) -> dict[str, Any]:
    k, spec = task
    try:
        row, _ = solve_one(spec, k, None, max_attempts, max_robot_s, runs / "fresh" / spec.name)
    except Exception as err:  # a failed episode is reported, never dropped
        row = {"puzzle": spec.name, "solved": False, "error": f"{type(err).__name__}: {err}"}
    return {"agent": "fresh", "index": k, **row}


def run_continual(specs: list, max_attempts: int, max_robot_s: float, runs: Path, fingerprint: dict) -> None:
    """The continual agent over the family in order; its state (memory and rows) is saved after
    every puzzle, atomically, so a stopped run resumes at the next puzzle."""
    state_path = runs / "continual" / "state.json"
    state = {"fingerprint": fingerprint, "memory": None, "rows": []}
    if state_path.exists():
        saved = json.loads(state_path.read_text())
        if saved.get("fingerprint") == fingerprint:
            state = saved
    memory = FamilyMemory(**state["memory"]) if state["memory"] else FamilyMemory()
    for k, spec in enumerate(specs):
        if k < len(state["rows"]):
            continue
        try:
            row, result = solve_one(spec, k, memory, max_attempts, max_robot_s, runs / "continual" / spec.name)
            tic = time.perf_counter()
            outcome = result.outcome
            memory.learn(spec.name, outcome.beliefs, outcome.views, outcome.interactions, result.model)
            row["learn_s"] = time.perf_counter() - tic
        except Exception as err:
            row = {"puzzle": spec.name, "solved": False, "error": f"{type(err).__name__}: {err}"}
        row.update(agent="continual", index=k, memory_puzzles=len(memory.puzzles),
                   lock_odds=dict(zip(("push>grasp", "push>push", "grasp>grasp", "grasp>push", "nearest", "second"),
                                      np.exp(memory.lock_weights()).round(3).tolist(), strict=True)),
                   direction_order=[list(o) for o in memory.direction_order()])
        state["rows"].append(row)
        state["memory"] = asdict(memory)
        write_text_atomic(state_path, json.dumps(state))
        print(f"continual {k + 1}/{len(specs)} {spec.name}: solved={row['solved']} "
              f"real {row.get('real_time_s', float('nan')):.0f} s", flush=True)
    memory.save(runs / "continual" / "memory.json")


def distilled_pacer(variant: str, world_model, prober, part: str, lever: float, revolute: bool,
                    config: DistillConfig) -> tuple[Any, dict[str, Any]]:
    """The planner (the MPC pace) or a policy distilled from it now, in the same fitted model."""
    radius = hinge_radius(prober, world_model.interactions, part) if revolute else None
    if variant == "planner":
        return world_model.pace, {}
    if variant != "distilled":
        raise ValueError(f"unknown variant {variant!r}; choose from {SKILL_VARIANTS}")
    pushing = prober.io.sheet.affordances[part].mode == "push"
    tic = time.perf_counter()
    policy, report = distil_mpc(world_model.refitted(), part, pushing, config)
    paces: list[PolicyPace] = []  # each counts its own calls and compute (read by `skill_row`)

    def pace(p: str, start: float, target: float) -> PolicyPace:
        paces.append(PolicyPace(policy, start, target, revolute, radius))
        return paces[-1]
    return pace, {"distil_s": time.perf_counter() - tic, "labels": report.labels, "policy_paces": paces}


def skill_row(row: dict[str, Any]) -> dict[str, Any]:
    """A trial's row with its compute per control step (the MPC's replans, the policy's calls)."""
    paces = row.pop("policy_paces", None)
    calls = sum(p.calls for p in paces) if paces else 0
    if calls:
        row["step_time_s"] = sum(p.compute_s for p in paces) / calls
    elif row.get("paced"):
        paced = [p for p in row["paced"] if p.get("replans")]
        if paced:
            row["step_time_s"] = sum(p["compute_s"] for p in paced) / sum(p["replans"] for p in paced)
    return row


def run_skill(task, first, more, runs: Path, distill: DistillConfig) -> dict[str, Any]:
    return skill_row(run_one(task, first, more, runs, partial(distilled_pacer, config=distill)))


def summarize(continual: list[dict[str, Any]], fresh: list[dict[str, Any]], skills: list[dict[str, Any]]) -> dict:
    nan = float("nan")
    real = [r.get("real_time_s", nan) for r in continual]
    real_fresh = [r.get("real_time_s", nan) for r in fresh]
    ratio = [f / c if c > 0 else nan for c, f in zip(real, real_fresh, strict=True)]
    half = len(real) // 2
    last = min(9, len(real) - 1)  # the 10th puzzle (the last of a shorter run)

    def med(values):
        values = [v for v in values if np.isfinite(v)]
        return float(np.median(values)) if values else None

    distilled_vs_planner: dict[str, dict[str, Any]] = {"success": {}, "step_time_s": {}, "abs_error_mm_median": {}}
    for variant in SKILL_VARIANTS:
        mine = [r for r in skills if r["variant"] == variant and "error_mm" in r]
        distilled_vs_planner["success"][variant] = (float(np.mean([abs(r["error_mm"]) <= SUCCESS_MM for r in mine]))
                                                    if mine else None)
        distilled_vs_planner["abs_error_mm_median"][variant] = med([abs(r["error_mm"]) for r in mine])
        distilled_vs_planner["step_time_s"][variant] = med([r["step_time_s"] for r in mine if "step_time_s" in r])
    distilled_vs_planner["success"] = {"distilled": distilled_vs_planner["success"]["distilled"],
                                       "planner": distilled_vs_planner["success"]["planner"]}
    return {
        "real_time_by_puzzle": real,
        "fresh_real_time_by_puzzle": real_fresh,
        "speedup_10th_vs_1st": real[0] / real[last] if real[last] > 0 else nan,
        "speedup_vs_fresh_by_puzzle": ratio,
        "speedup_vs_fresh_first_half_median": med(ratio[:half]),
        "speedup_vs_fresh_second_half_median": med(ratio[half:]),
        "solved_continual": float(np.mean([bool(r.get("solved")) for r in continual])),
        "solved_fresh": float(np.mean([bool(r.get("solved")) for r in fresh])),
        "attempts_continual_median": med([r.get("attempts", nan) for r in continual]),
        "attempts_fresh_median": med([r.get("attempts", nan) for r in fresh]),
        "directions_tried_continual_median": med([r.get("directions_tried", nan) for r in continual]),
        "directions_tried_fresh_median": med([r.get("directions_tried", nan) for r in fresh]),
        "distilled_vs_planner": distilled_vs_planner,
        "distil_s_median": med([r.get("distil_s", nan) for r in skills]),
        "failed_episodes": sum("error" in r for r in continual + fresh + skills),
    }


def markdown(summary: dict[str, Any], continual, fresh, skills, meta: dict[str, Any]) -> str:
    fmt = (lambda v, f="{:.1f}": "-" if v is None or not np.isfinite(v) else f.format(v))  # noqa: E731
    lines = ["# Learning across a family of lockboxes (emulator, hidden gap)", "",
             f"{meta['puzzles']} depth-{meta['depth']} lockboxes of one generator family, solved in order by the "
             f"continual agent (memory carried) and each by a fresh agent; real time = arm clock + agent compute; "
             f"{meta['machine']}; {meta['wall_s'] / 60:.0f} min.", "",
             f"- speedup, 10th vs 1st puzzle (continual): {fmt(summary['speedup_10th_vs_1st'], '{:.2f}x')}",
             f"- continual vs fresh, median of fresh/continual real time: first half "
             f"{fmt(summary['speedup_vs_fresh_first_half_median'], '{:.2f}x')}, second half "
             f"{fmt(summary['speedup_vs_fresh_second_half_median'], '{:.2f}x')}",
             f"- solved: continual {summary['solved_continual']:.0%}, fresh {summary['solved_fresh']:.0%}", "",
             "| # | puzzle | continual real s | attempts (failed) | directions | fresh real s | attempts (failed) "
             "| directions |", "|---|---|---|---|---|---|---|---|"]
    for c, f in zip(continual, fresh, strict=True):
        lines.append(f"| {c['index'] + 1} | {c['puzzle']} | {fmt(c.get('real_time_s'), '{:.0f}')}"
                     f"{'' if c.get('solved') else ' (unsolved)'} | {c.get('attempts', '-')} "
                     f"({c.get('failed_attempts', '-')}) | {c.get('directions_tried', '-')} | "
                     f"{fmt(f.get('real_time_s'), '{:.0f}')}{'' if f.get('solved') else ' (unsolved)'} | "
                     f"{f.get('attempts', '-')} ({f.get('failed_attempts', '-')}) | {f.get('directions_tried', '-')} |")
    d = summary["distilled_vs_planner"]
    lines += ["", f"Distilled policy against the MPC it learned from ({len(skills)} trials; success within "
              f"{SUCCESS_MM:.0f} mm on the world):", "",
              "| | success | median abs error mm | compute per control step |", "|---|---|---|---|"]
    for v in SKILL_VARIANTS:
        lines.append(f"| {v} | {fmt(d['success'][v], '{:.0%}')} | {fmt(d['abs_error_mm_median'][v])} | "
                     f"{fmt(d['step_time_s'][v] and 1000 * d['step_time_s'][v], '{:.2f} ms')} |")
    return "\n".join(lines) + "\n"


def plot(continual, fresh, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    k = np.arange(1, len(continual) + 1)
    ax.plot(k, [r.get("real_time_s", np.nan) for r in continual], "o-", label="continual (memory carried)")
    ax.plot(k, [r.get("real_time_s", np.nan) for r in fresh], "s--", label="fresh agent")
    ax.set_xlabel("puzzle of the family (in order)")
    ax.set_ylabel("real time to solve (s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--puzzles", type=int, default=10)
    parser.add_argument("--max-attempts", type=int, default=30)
    parser.add_argument("--max-robot-s", type=float, default=900.0)
    parser.add_argument("--skill-depths", default="1-2", help="held-out lockboxes whose free parts the skills move")
    parser.add_argument("--skill-seeds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 depth-2 puzzles, one skill part (a smoke run)")
    parser.add_argument("--runs", type=Path, default=Path("outputs/benchmarks/continual"))
    parser.add_argument("--jobs", type=int, default=2, help="the continual chain runs beside the other episodes")
    args = parser.parse_args()
    depth, puzzles = (2, 3) if args.quick else (args.depth, args.puzzles)
    specs = family(depth, puzzles)
    skill_depths = [int(v) for v in args.skill_depths.split("-")]
    parts = trial_parts(list(range(skill_depths[0], skill_depths[-1] + 1)), args.skill_seeds, args.quick)
    distill = DistillConfig(rounds=2, episodes=4) if args.quick else DistillConfig()
    t0 = time.monotonic()
    checkpoint = episode_checkpoint(args)
    chain = multiprocessing.get_context("spawn").Process(
        target=run_continual, args=(specs, args.max_attempts, args.max_robot_s, args.runs, checkpoint.fingerprint))
    chain.start()  # sequential by nature: each puzzle starts from the memory of the ones before
    tasks = [(k, spec) for k, spec in enumerate(specs)] + [(spec, part, v, seed) for spec, part, seed in parts
                                                         for v in SKILL_VARIANTS]

    def play_label(task) -> str:
        return f"fresh {task[1].name}" if len(task) == 2 else f"skill {task[0].name} {task[1]}: {task[2]}"

    rows = run_episodes(tasks, partial(_play, max_attempts=args.max_attempts, max_robot_s=args.max_robot_s,
                                       runs=args.runs, distill=distill), max(1, args.jobs - 1), play_label, checkpoint)
    chain.join()
    if chain.exitcode != 0:
        raise SystemExit(f"the continual chain failed (exit {chain.exitcode}); rerun to resume it")
    state = json.loads((args.runs / "continual" / "state.json").read_text())
    continual = state["rows"]
    fresh, skills = rows[:len(specs)], rows[len(specs):]
    summary = summarize(continual, fresh, skills)
    meta = {"puzzles": len(specs), "depth": depth, "skill_trials": len(skills), "quick": args.quick,
            "machine": machine(), "wall_s": time.monotonic() - t0, "jobs": args.jobs}
    write_results(RESULTS, "continual_quick" if args.quick else "continual", summary, meta,
                  {"continual": continual, "fresh": fresh, "skills": skills},
                  markdown(summary, continual, fresh, skills, meta), lambda path: plot(continual, fresh, path))


def _play(task, max_attempts: int, max_robot_s: float, runs: Path, distill: DistillConfig) -> dict[str, Any]:
    if len(task) == 2:
        return run_fresh(task, max_attempts, max_robot_s, runs)
    return run_skill(task, (0.02, 0.05), (0.02, 0.04), runs / "skills", distill)


if __name__ == "__main__":
    main()
