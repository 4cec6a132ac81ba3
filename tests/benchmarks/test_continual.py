"""The continual benchmark's skill rows: compute per control step, from the policy's own counters
or from the MPC's replans."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from continual import skill_row  # noqa: E402

from puzzlebot.agent.policy.skill_policy import PolicyPace  # noqa: E402


class _Constant:
    """A policy that asks for one speed (what `PolicyPace` needs of a policy)."""

    spec = {"part": "drawer", "lever": 1.0, "rest_speed": 0.001, "tolerance": 0.002, "max_s": 10.0,
            "max_speed": 0.05}

    def speed(self, obs: np.ndarray) -> float:
        return 0.02


def test_a_distilled_rows_step_time_is_its_paces_compute_per_call():
    paces = [PolicyPace(_Constant(), 0.0, 0.05, revolute=False) for _ in range(2)]
    for k, pace in enumerate(paces):
        for i in range(3 + k):
            assert pace(0.1 * i, 0.001 * i) == 0.02
    row = skill_row({"variant": "distilled", "policy_paces": paces})
    assert "policy_paces" not in row  # the live objects never reach the results file
    assert row["step_time_s"] == sum(p.compute_s for p in paces) / 7


def test_a_planner_rows_step_time_is_its_compute_per_replan():
    row = skill_row({"variant": "planner", "paced": [{"replans": 4, "compute_s": 2.0}, {"replans": 0, "compute_s": 0.0},
                                                      {"replans": 6, "compute_s": 3.0}]})
    assert row["step_time_s"] == 0.5
