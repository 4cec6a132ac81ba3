"""Domain-randomized skill policies on the emulator's hidden gap: none, uniform, posterior.

The skill is the solve loop's move with a target (`benchmarks/mpc_skill.py`): bring a part
a few centimetres further to a target opening and leave it there. Per free slide or grasped
hinge of held-out lockboxes, one episode per variant on the lockstep reality emulator: the
part is opened part way model-free and the model fitted to that, as in `mpc_skill`; then a
PPO policy is trained in that fitted model (`agent/policy/skill_env.py`,
`agent/policy/skill_policy.py`) and moves the part to its target through the driver:

- `no_dr`: trained on the fitted point estimate alone, no latency, noise or delay;
- `uniform_dr`: friction, damping and inertia log-uniform within 10x of the estimate either
  way, plus action latency (0-3 ticks), observation delay (0-2 ticks) and noise (0.5 mm);
- `posterior_dr`: the fitted posterior's draws, plus the same latency, delay and noise.

Success: the world's final opening (the emulator's joint, read after the episode) within
5 mm of the target at the handle. Training runs in the episode, the lockstep emulator's
clock stopped (the arm holds); its time is `train_s`, per skill on this machine.

Writes benchmarks/results/transfer.json, .md and .png (`--quick`: transfer_quick.*).

    python benchmarks/transfer.py --jobs 2
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from held_out import episode_checkpoint, machine, parse_depths, run_episodes, write_results
from mpc_skill import add_protocol_args, run_one, trial_parts

from puzzlebot.agent.part_state import hinge_radius
from puzzlebot.agent.policy.skill_env import SkillEnvConfig
from puzzlebot.agent.policy.skill_policy import PolicyPace, SkillTrainConfig, train_skill

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"no_dr": "none", "uniform_dr": "uniform", "posterior_dr": "posterior"}
SUCCESS_MM = 5.0


def policy_pacer(variant: str, world_model, prober, part: str, lever: float, revolute: bool, steps: int,
                 folder: Path) -> tuple[Any, dict[str, Any]]:
    """Train the variant's policy in the fitted model now; pace the move with it."""
    pushing = prober.io.sheet.affordances[part].mode == "push"
    config = SkillTrainConfig(steps=steps, env=SkillEnvConfig(randomization=VARIANTS[variant]))
    policy, train_s = train_skill(world_model.refitted(), part, pushing, config)
    policy.save(folder / part / variant / "policy")
    radius = hinge_radius(prober, world_model.interactions, part) if revolute else None
    return (lambda p, s, t: PolicyPace(policy, s, t, revolute, radius)), {"train_s": train_s, "pushing": pushing}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    success, errors, failed = {}, {}, {}
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        ok = [r for r in mine if "error_mm" in r]
        success[variant] = float(np.mean([abs(r["error_mm"]) <= SUCCESS_MM for r in ok])) if ok else None
        errors[variant] = float(np.median([abs(r["error_mm"]) for r in ok])) if ok else None
        failed[variant] = len(mine) - len(ok)
    train = [r["train_s"] for r in rows if "train_s" in r]
    return {"success_by_variant": success, "abs_error_mm_median_by_variant": errors,
            "failed_episodes_by_variant": failed, "train_s_per_skill": float(np.median(train)) if train else None,
            "success_mm": SUCCESS_MM}


def markdown(summary: dict[str, Any], rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    fmt = (lambda v, f="{:.1f}": "-" if v is None else f.format(v))  # noqa: E731
    lines = ["# Domain-randomized skill policies on the hidden gap (emulator)", "",
             f"{meta['trials']} episodes: {meta['parts']} free slides and grasped hinges of held-out lockboxes "
             f"(depths {meta['depths']}); per part and variant a PPO policy ({meta['steps']} ticks) trained in the "
             f"model fitted on the emulator, then moving the part to a target there; success within "
             f"{SUCCESS_MM:.0f} mm; {meta['machine']}; {meta['wall_s'] / 60:.0f} min.", "",
             "| variant | success | median abs error mm | failed episodes |", "|---|---|---|---|"]
    for v in VARIANTS:
        lines.append(f"| {v} | {fmt(summary['success_by_variant'][v], '{:.0%}')} | "
                     f"{fmt(summary['abs_error_mm_median_by_variant'][v])} | "
                     f"{summary['failed_episodes_by_variant'][v]} |")
    lines += ["", f"Training: {fmt(summary['train_s_per_skill'], '{:.0f}')} s per skill (median, this CPU).", "",
              "| puzzle | part | variant | train s | error mm |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['puzzle']} | {r['part']} | {r['variant']} | {fmt(r.get('train_s'), '{:.0f}')} | "
                     f"{fmt(r.get('error_mm'), '{:+.1f}') if 'error_mm' in r else r.get('error', '')} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    data = [[r["error_mm"] for r in rows if r["variant"] == v and "error_mm" in r] for v in VARIANTS]
    ax.boxplot(data, tick_labels=list(VARIANTS))
    ax.axhspan(-SUCCESS_MM, SUCCESS_MM, color="green", alpha=0.1)
    ax.set_ylabel("final opening - target (mm at the handle)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_protocol_args(parser, quick_help="one part, posterior_dr only", runs="outputs/benchmarks/transfer")
    parser.add_argument("--steps", type=int, default=20_000, help="PPO ticks per policy")
    args = parser.parse_args()
    depths, seeds = ([1], 1) if args.quick else (parse_depths(args.depths), args.seeds)
    parts = trial_parts(depths, seeds, args.quick)
    variants = ["posterior_dr"] if args.quick else list(VARIANTS)
    tasks = [(spec, part, variant, seed) for spec, part, seed in parts for variant in variants]
    t0 = time.monotonic()
    pacer = partial(policy_pacer, steps=args.steps, folder=args.runs / "policies")
    rows = run_episodes(tasks, partial(run_one, first=tuple(args.first), more=tuple(args.more), runs=args.runs,
                                       pacer_for=pacer), args.jobs, label=lambda t: f"{t[0].name} {t[1]}: {t[2]}",
                        checkpoint=episode_checkpoint(args))
    summary = summarize(rows)
    meta = {"trials": len(tasks), "parts": len(parts), "depths": f"{depths[0]}-{depths[-1]}", "seeds": seeds,
            "steps": args.steps, "first": args.first, "more": args.more, "jobs": args.jobs, "quick": args.quick,
            "machine": machine(), "wall_s": time.monotonic() - t0}
    write_results(RESULTS, "transfer_quick" if args.quick else "transfer", summary, meta, rows,
                  markdown(summary, rows, meta), lambda path: plot(rows, path))


if __name__ == "__main__":
    main()
