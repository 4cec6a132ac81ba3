"""Lock-graph exploration at logic level: the active explorer against the random one, no robot.

`model_building.py` compares the two explorers through the emulator, where a probe costs about
a minute of robot time and its outcome is read by the hand and the cameras: two puzzles per
depth. Here the outcome comes from the true lock graph (`locks.graph_moves`), a test misread
with a given probability (the emulator's runs misread 4 of 110 tests and none of 75 opens), so
the explorers alone are compared over many puzzles and repeats in a few minutes, with the same
beliefs, prior, skills (tests in place and opens, no closes) and stopping rule as on the arm.

Probes count as `model_building.py` counts them: the exploration's, plus one open for each part
it left unopened (the model-building phase opens every part; one open each when the graph is
right), and a run that ends with a wrong graph costs a restart (`probes_per_exact_graph`).
This is the best case for the probe ratio with these skills and this baseline.

Writes benchmarks/results/lock_exploration.json, .md and .png.

    python benchmarks/lock_exploration.py            # depths 1-5, 8 seeds each, 3 repeats
    python benchmarks/lock_exploration.py --quick    # depths 1-3, 2 seeds, 1 repeat
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from held_out import held_out_puzzles, machine, parse_depths, run_note, write_results
from model_building import probes_per_exact_graph
from rich.progress import track

from puzzlebot.agent.affordances import marker_sheet
from puzzlebot.agent.explorer import ExplorerConfig, lock_prior
from puzzlebot.agent.locks import (
    OPEN,
    TEST,
    ActiveExplorer,
    MoveOutcome,
    RandomExplorer,
    graph_moves,
    simulate_exploration,
)
from puzzlebot.agent.scoring import true_lock_graph

RESULTS = Path(__file__).resolve().parent / "results"
EXPLORERS = {"active": lambda config: ActiveExplorer(horizon=config.horizon), "random": lambda config: RandomExplorer()}


def misread_tests(truth: dict[str, frozenset[str]], misread: float, rng: np.random.Generator) -> MoveOutcome:
    """The lock logic's outcomes, each test's flipped with probability `misread` (opens are read right)."""
    exact = graph_moves(truth)

    def moves(part: str, direction: str, displaced: frozenset[str]) -> bool:
        moved = exact(part, direction, displaced)
        return (not moved) if direction == TEST and rng.random() < misread else moved

    return moves


def explore_logic(spec, strategy: str, misread: float, seed: int, config: ExplorerConfig | None = None
                  ) -> dict[str, Any]:
    """One exploration of `spec`'s true lock graph: probes (unopened parts' opens added) and exactness."""
    config = config or ExplorerConfig()
    truth = true_lock_graph(spec)
    sheet = marker_sheet(spec)
    beliefs = lock_prior({p.name: sheet.affordances[p.name].mode for p in spec.parts}, config)
    rng = np.random.default_rng(seed)
    result = simulate_exploration(misread_tests(truth, misread, rng), list(beliefs.parts),
                                  EXPLORERS[strategy](config), rng, config.max_probes, beliefs=beliefs,
                                  threshold=config.confidence, truth=truth)
    opened = {a.part for a in result.attempts if a.moved and a.direction == OPEN}
    return {"puzzle": spec.name, "strategy": strategy, "misread": misread, "seed": seed,
            "lock_probes": result.probes, "probes": result.probes + len(beliefs.parts) - len(opened),
            "lock_graph": {"exact": bool(result.correct)}, "confident": result.confident,
            "exhausted": result.exhausted}


def summarize(rows: list[dict[str, Any]], depth_of: dict[str, int]) -> dict[str, Any]:
    """Per misread rate: each explorer's probes per exact graph and exact rate, by depth and pooled,
    and the ratio random over active."""
    out: dict[str, Any] = {}
    for misread in sorted({r["misread"] for r in rows}):
        level: dict[str, Any] = {}
        for strategy in EXPLORERS:
            mine = [r for r in rows if r["misread"] == misread and r["strategy"] == strategy]
            depths = sorted({depth_of[r["puzzle"]] for r in mine})
            level[strategy] = {
                "probes_per_exact_graph": probes_per_exact_graph(mine),
                "exact_rate": float(np.mean([r["lock_graph"]["exact"] for r in mine])),
                "probes_per_exact_graph_by_depth": {str(d): probes_per_exact_graph(
                    [r for r in mine if depth_of[r["puzzle"]] == d]) for d in depths},
                "exact_rate_by_depth": {str(d): float(np.mean([r["lock_graph"]["exact"] for r in mine
                                                               if depth_of[r["puzzle"]] == d])) for d in depths},
            }
        active, random_ = level["active"], level["random"]
        level["probes_ratio_random_over_active"] = random_["probes_per_exact_graph"] / active["probes_per_exact_graph"]
        level["probes_ratio_by_depth"] = {d: random_["probes_per_exact_graph_by_depth"][d] / v
                                          for d, v in active["probes_per_exact_graph_by_depth"].items()}
        out[f"misread_{misread:g}"] = level
    return out


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = ["# Lock-graph exploration at logic level (no robot)", "",
             f"{meta['puzzles']} held-out generated lockboxes (depths {meta['depths']}, "
             f"{meta['seeds']} seed(s) each), "
             f"{meta['repeats']} repeat(s) per explorer; outcomes from the true lock graph, tests misread at the "
             f"given rate; tests in place and opens, no closes; {meta['machine']}; {run_note(meta)}.", "",
             "Probes per exact lock graph (restarts counted, unopened parts' opens added) and the share of runs "
             "that ended with the exact graph.", "",
             "| tests misread | depth | active probes | active exact | random probes | random exact "
             "| random / active |",
             "|---|---|---|---|---|---|---|"]
    for key, level in summary.items():
        a, r = level["active"], level["random"]
        for d in a["probes_per_exact_graph_by_depth"]:
            lines.append(f"| {key.removeprefix('misread_')} | {d} | {a['probes_per_exact_graph_by_depth'][d]:.1f} | "
                         f"{a['exact_rate_by_depth'][d]:.0%} | {r['probes_per_exact_graph_by_depth'][d]:.1f} | "
                         f"{r['exact_rate_by_depth'][d]:.0%} | {level['probes_ratio_by_depth'][d]:.2f} |")
        lines.append(f"| {key.removeprefix('misread_')} | all | {a['probes_per_exact_graph']:.1f} | "
                     f"{a['exact_rate']:.0%} | {r['probes_per_exact_graph']:.1f} | {r['exact_rate']:.0%} | "
                     f"**{level['probes_ratio_random_over_active']:.2f}** |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (key, level), style in zip(summary.items(), ("-", "--", ":", "-."), strict=False):
        for strategy, colour in (("active", "tab:blue"), ("random", "tab:orange")):
            by_depth = level[strategy]["probes_per_exact_graph_by_depth"]
            ax.plot([int(d) for d in by_depth], list(by_depth.values()), style, color=colour, marker="o",
                    label=f"{strategy}, tests {key.replace('_', ' ')}")
    ax.set_xlabel("depth")
    ax.set_ylabel("probes per exact lock graph")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", default="1-5")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="explorations per puzzle, explorer and misread rate")
    parser.add_argument("--misread", default="0,0.036", help="comma-separated test misread rates")
    parser.add_argument("--quick", action="store_true", help="depths 1-3, 2 seeds, 1 repeat (a smoke run)")
    args = parser.parse_args()
    depths, seeds, repeats = ([1, 2, 3], 2, 1) if args.quick else (parse_depths(args.depths), args.seeds, args.repeats)
    rates = [float(v) for v in args.misread.split(",")]
    if any(not 0.0 <= v < 0.5 for v in rates):
        raise SystemExit(f"--misread {args.misread!r}: each rate must be in [0, 0.5)")
    puzzles = held_out_puzzles(depths, seeds)
    t0 = time.monotonic()
    jobs = [(spec, strategy, rate, k) for _, spec in puzzles for strategy in EXPLORERS for rate in rates
            for k in range(repeats)]
    rows = [explore_logic(spec, strategy, rate, seed=k) for spec, strategy, rate, k in track(jobs, "explorations")]
    summary = summarize(rows, {spec.name: d for d, spec in puzzles})
    meta = {"puzzles": len(puzzles), "depths": f"{depths[0]}-{depths[-1]}", "seeds": seeds, "repeats": repeats,
            "misread": rates, "quick": args.quick, "machine": machine(), "wall_s": time.monotonic() - t0}
    name = "lock_exploration_quick" if args.quick else "lock_exploration"
    write_results(RESULTS, name, summary, meta, rows, markdown(summary, meta), lambda path: plot(summary, path))


if __name__ == "__main__":
    main()
