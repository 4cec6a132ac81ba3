"""Bringing a part to a target opening on the emulator: MPC against a fixed-speed follow.

The solve loop's moves with a target (a goal part pushed on to its goal, a knocked-back part
put back) are paced by predictive-sampling MPC in the refitted model (`agent/mpc.py`). This
measures how close that leaves the part to the target, on the world, against:

- `follow`: the same move at the probe's fixed follow speed, stopping at the target by the
  hand's travel (model-free);
- `to_stop`: no pace, the follow until the part stops (what every move did before).

One episode per part and variant, on the lockstep reality emulator with its hidden gap and
the floating gripper: the part is opened a first `--first` m of hand travel (model-free), the
model is fitted to that, and the paced move takes it `--more` m of hand travel further. The
parts are the free slides and grasped hinges (the parts the MPC paces) of held-out generated
lockboxes. The error is the world's final opening (the emulator's joint, read after the
episode) minus the target, in mm at the handle (hinges: times the fitted lever arm).

Writes benchmarks/results/mpc_skill.json, .md and .png (`--quick`: mpc_skill_quick.*).

    python benchmarks/mpc_skill.py --jobs 2     # depths 1-2, 3 seeds: 6 parts x 3 variants
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from held_out import episode_checkpoint, held_out_puzzles, machine, parse_depths, run_episodes, run_note, write_results

from puzzlebot.agent.affordances import marker_sheet
from puzzlebot.agent.explorer import ArmMoves, ExplorerConfig, prior_beliefs
from puzzlebot.agent.locks import OPEN
from puzzlebot.agent.mpc import TargetFollow
from puzzlebot.agent.part_state import hinge_radius, opening
from puzzlebot.agent.session import SessionConfig, connected
from puzzlebot.agent.solve import SolveConfig, WorldModel
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("mpc", "follow", "to_stop")
SLIDES = ("drawer", "bolt", "slider")  # mechanisms with a prismatic joint


def paced_parts(spec) -> list[str]:
    """The parts free from the start that the MPC paces: slides, and hinges the hand grasps."""
    sheet = marker_sheet(spec)
    out = []
    for part in spec.parts:
        if part.blocked_by or part.name not in sheet.affordances:
            continue
        slide = part.mechanism in SLIDES
        if slide or sheet.affordances[part.name].mode == "grasp":
            out.append(part.name)
    return out


Pacer = Callable[[str, float, float], Any]  # (part, opening now, target) -> a probe's pace, as `ArmMoves.pacer`


def skill_pacer(variant: str, world_model: WorldModel, prober, part: str, lever: float,
                revolute: bool) -> tuple[Pacer | None, dict[str, Any]]:
    """This benchmark's variants: the MPC, a fixed-speed follow stopped at the target, or none."""
    if variant == "mpc":
        return world_model.pace, {}
    if variant == "follow":
        speed = prober.config.follow_speed
        radius = hinge_radius(prober, world_model.interactions, part) if revolute else None
        return (lambda p, s, t: TargetFollow(speed, s, t, radius or lever, revolute)), {}
    if variant == "to_stop":
        return None, {}
    raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")


def trial_parts(depths: list[int], seeds: int, quick: bool) -> list[tuple[Any, str, int]]:
    """(spec, part, emulator seed) for every paced part of the held-out lockboxes (the first only if `quick`)."""
    puzzles = held_out_puzzles(depths, seeds)
    parts = [(spec, part, i) for i, (_, spec) in enumerate(puzzles) for part in paced_parts(spec)]
    return parts[:1] if quick else parts


def trial(spec, part: str, variant: str, seed: int, first: float, more: float, runs: Path,
          pacer_for: Callable[..., tuple[Pacer | None, dict[str, Any]]] = skill_pacer) -> dict[str, Any]:
    """One episode: open `part` `first` m of hand travel model-free, fit, then move it `more` m
    further to a target, paced by `pacer_for(variant, ...)`; the world's error at the end."""
    row: dict[str, Any] = {"puzzle": spec.name, "part": part, "variant": variant, "seed": seed}
    emulator = EmulatorBackend(EmulatorConfig(puzzle=spec, robot="gripper", seed=seed, cameras=("closeup", "top"),
                                              image_size=(480, 640), realtime=False, lockstep=True))
    gap: dict[str, Any] = {}
    with connected(emulator, marker_sheet(spec), runs / spec.name / part / variant,
                   SessionConfig(record_episode=False), gap) as live:
        prober = live.prober
        beliefs = prior_beliefs(prober, live.seen, ExplorerConfig())
        arm = ArmMoves(prober, None, beliefs.cannot)
        world_model = WorldModel(prober, beliefs, arm.interactions, SolveConfig())
        try:
            follow = prober.config.follow_speed
            row["first_moved"] = arm(part, OPEN, frozenset(), pace=TargetFollow(follow, 0.0, first, 1.0, False))
            rehearser = world_model.refitted()
            if not row["first_moved"] or part not in rehearser.parts:
                return {**row, "error": "the first open did not move the part: nothing fitted to pace it"}
            lever = rehearser.lever(part)
            revolute = world_model.model.part(part).articulation.kind == "revolute"
            start = opening(prober, arm.interactions, part)
            target = start + (2 * np.arcsin(min(1.0, more / (2 * lever))) if revolute else more / lever)
            arm.pacer, extra = pacer_for(variant, world_model, prober, part, lever, revolute)
            row.update(extra)
            tic = time.perf_counter()
            row["moved"] = arm(part, OPEN, frozenset({part}), target=target)
            row["wall_s"] = time.perf_counter() - tic
            row.update(start=start, target=target, lever=lever, kind="revolute" if revolute else "prismatic",
                       estimate=opening(prober, arm.interactions, part), paced=world_model.paced)
        finally:
            world_model.close()
    world = abs(float(gap["final"]["part_positions"][part]))
    true_kind = "prismatic" if spec.part(part).mechanism in SLIDES else "revolute"
    if row["kind"] != true_kind:  # the target was in the wrong units: no error to speak of
        return {**row, "world": world, "error": f"fitted {row['kind']}, the part is {true_kind}"}
    return {**row, "world": world, "error_mm": 1000.0 * (world - row["target"]) * row["lever"]}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        ok = [r for r in rows if r["variant"] == variant and "error_mm" in r]
        errors = np.array([r["error_mm"] for r in ok])
        out[variant] = {
            "trials": len(ok), "failed": sum(1 for r in rows if r["variant"] == variant and "error_mm" not in r),
            "abs_error_mm_median": float(np.median(np.abs(errors))) if len(ok) else None,
            "abs_error_mm_max": float(np.max(np.abs(errors))) if len(ok) else None,
            "overshoot_mm_median": float(np.median(np.maximum(errors, 0.0))) if len(ok) else None,
            "within_5mm": float(np.mean(np.abs(errors) <= 5.0)) if len(ok) else None,
        }
    paced = [p for r in rows if r["variant"] == "mpc" for p in r.get("paced", [])]
    if paced:
        out["mpc"]["replan_ms_median"] = float(np.median([1000 * p["compute_s"] / p["replans"]
                                                          for p in paced if p["replans"]]))
        out["mpc"]["rollout_steps_per_s"] = float(sum(p["rollout_steps"] for p in paced)
                                                  / max(sum(p["compute_s"] for p in paced), 1e-9))
    return out


def markdown(summary: dict[str, Any], rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# Bringing a part to a target opening (emulator)", "",
             f"{meta['trials']} episodes: {meta['parts']} free slides and grasped hinges of held-out lockboxes (depths "
             f"{meta['depths']}), each opened {1000 * meta['first'][0]:.0f} mm (slides) or "
             f"{1000 * meta['first'][1]:.0f} mm (hinges) of hand travel model-free, fitted, then moved "
             f"{1000 * meta['more'][0]:.0f} or {1000 * meta['more'][1]:.0f} mm further to a target; {meta['machine']}; "
             f"{run_note(meta)}. Error: the world's final opening minus the target, mm at the handle.", "",
             "| variant | trials | median abs error mm | max abs error mm | median overshoot mm | within 5 mm |",
             "|---|---|---|---|---|---|"]
    fmt = (lambda v: "-" if v is None else f"{v:.1f}")  # noqa: E731
    for variant, s in summary.items():
        lines.append(f"| {variant} | {s['trials']} | {fmt(s['abs_error_mm_median'])} | {fmt(s['abs_error_mm_max'])} | "
                     f"{fmt(s['overshoot_mm_median'])} | "
                     f"{'-' if s['within_5mm'] is None else format(s['within_5mm'], '.0%')} |")
    if "replan_ms_median" in summary["mpc"]:
        lines += ["", f"MPC replan: {summary['mpc']['replan_ms_median']:.0f} ms median "
                      f"({summary['mpc']['rollout_steps_per_s'] / 1e3:.0f}k rollout steps/s)."]
    lines += ["", "| puzzle | part | kind | variant | target | world | error mm |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error_mm" in r:
            lines.append(f"| {r['puzzle']} | {r['part']} | {r['kind']} | {r['variant']} | {r['target']:.3f} | "
                         f"{r['world']:.3f} | {r['error_mm']:+.1f} |")
        else:
            lines.append(f"| {r['puzzle']} | {r['part']} | - | {r['variant']} | - | - | {r['error']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    data = [[r["error_mm"] for r in rows if r["variant"] == v and "error_mm" in r] for v in VARIANTS]
    ax.boxplot(data, tick_labels=VARIANTS)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_ylabel("final opening - target (mm at the handle)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_one(task, first: tuple[float, float], more: tuple[float, float], runs: Path,
            pacer_for: Callable[..., tuple[Pacer | None, dict[str, Any]]] = skill_pacer) -> dict[str, Any]:
    """`trial` for one (spec, part, variant, seed), its failure turned into a row."""
    spec, part, variant, seed = task
    # the protocol, not the agent, knows the mechanism: how far to open first and then further
    hinge = int(spec.part(part).mechanism not in SLIDES)
    try:
        return trial(spec, part, variant, seed, first[hinge], more[hinge], runs, pacer_for)
    except Exception as err:  # a failed episode is reported, never dropped
        return {"puzzle": spec.name, "part": part, "variant": variant, "seed": seed,
                "error": f"{type(err).__name__}: {err}"}


def add_protocol_args(parser: argparse.ArgumentParser, quick_help: str, runs: str) -> None:
    """The trial protocol's options, shared with `transfer.py`."""
    parser.add_argument("--depths", default="1-2")  # deeper lockboxes have no free slide or grasped hinge
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first", type=float, nargs=2, default=(0.02, 0.05), metavar=("SLIDE", "HINGE"),
                        help="m of hand travel opened model-free first (a hinge needs an arc to be told from a line)")
    parser.add_argument("--more", type=float, nargs=2, default=(0.02, 0.04), metavar=("SLIDE", "HINGE"),
                        help="m of hand travel further, to the target (a door turns 1.0-1.4 rad on ~10 cm)")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--runs", type=Path, default=Path(runs))
    parser.add_argument("--jobs", type=int, default=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_protocol_args(parser, quick_help="one part, mpc and follow", runs="outputs/benchmarks/mpc_skill")
    args = parser.parse_args()
    depths, seeds = ([1], 1) if args.quick else (parse_depths(args.depths), args.seeds)
    parts = trial_parts(depths, seeds, args.quick)
    variants = VARIANTS[:2] if args.quick else VARIANTS
    tasks = [(spec, part, variant, seed) for spec, part, seed in parts for variant in variants]
    t0 = time.monotonic()
    checkpoint = episode_checkpoint(args)
    rows = run_episodes(tasks, partial(run_one, first=args.first, more=args.more, runs=args.runs), args.jobs,
                        label=lambda t: f"{t[0].name} {t[1]}: {t[2]}",
                        checkpoint=checkpoint)
    summary = summarize(rows)
    meta = {"trials": len(tasks), "parts": len(parts), "depths": f"{depths[0]}-{depths[-1]}", "seeds": seeds,
            "first": args.first, "more": args.more, "jobs": args.jobs, "quick": args.quick, "machine": machine(),
            "wall_s": time.monotonic() - t0, "resumed_episodes": checkpoint.resumed,
            "code": checkpoint.fingerprint["code"]}
    write_results(RESULTS, "mpc_skill_quick" if args.quick else "mpc_skill", summary, meta, rows,
                  markdown(summary, rows, meta), lambda path: plot(rows, path))


if __name__ == "__main__":
    main()
