"""The solve benchmark run for a subset of its agents: checked names, its own results file, and a
summary of only the agents that played."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from solve import AGENTS, markdown, parse_agents, results_name, summarize  # noqa: E402


def test_agents_are_parsed_in_order_and_unknown_names_are_named():
    assert parse_agents("puzzlebot, nominal") == ("puzzlebot", "nominal")
    with pytest.raises(SystemExit, match="unknown: planner"):
        parse_agents("puzzlebot,planner")
    with pytest.raises(SystemExit, match="distinct"):
        parse_agents("puzzlebot,puzzlebot")


def test_only_the_full_comparison_writes_the_solve_results():
    assert results_name(AGENTS, [1, 2, 3, 4, 5], quick=False) == "solve"
    assert results_name(("puzzlebot",), [5], quick=False) == "solve_puzzlebot_d5"
    assert results_name(AGENTS, [4, 5], quick=False) == "solve_" + "_".join(AGENTS) + "_d45"
    assert results_name(AGENTS, [1], quick=True) == "solve_quick"


def test_a_subset_summary_holds_only_the_agents_that_played():
    rows = [{"puzzle": f"p{k}", "depth": 5, "agent": "puzzlebot", "solved": k != 2, "believed_solved": True,
             "attempts": 4 + k, "robot_time_s": 60.0 * (k + 1), "compute_s": 5.0} for k in range(4)]
    summary = summarize(rows, [5], ("puzzlebot",))
    assert list(summary) == ["puzzlebot"]
    assert summary["puzzlebot"]["solve_rate_by_depth"] == {"5": 0.75}
    assert summary["puzzlebot"]["false_beliefs"] == 1  # p2 believed solved, not solved on the world
    assert summary["puzzlebot"]["median_attempts"] == 5.5
    meta = {"puzzles": 4, "agents": ["puzzlebot"], "depths": "5-5", "seeds": 4, "max_attempts": 30,
            "max_robot_s": 900.0, "machine": "test", "wall_s": 60.0, "resumed_episodes": 0, "code": "abc"}
    text = markdown(summary, rows, meta)
    assert "puzzlebot on the lockstep" in text and "oracle" not in text.split("\n")[2]
