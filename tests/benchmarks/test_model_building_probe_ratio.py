"""The model-building benchmark's probe ratio: what it costs each explorer to end with the exact
lock graph, restarts included."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from model_building import probes_per_exact_graph  # noqa: E402


def _run(probes: int, exact: bool) -> dict:
    return {"probes": probes, "lock_graph": {"exact": exact}}


def test_a_run_that_ended_wrong_costs_its_probes_and_a_restart():
    lucky_and_wrong = [_run(4, True), _run(6, False), _run(5, False), _run(5, True)]
    careful = [_run(12, True), _run(14, True)]
    assert probes_per_exact_graph(lucky_and_wrong) == 10.0  # 20 probes for 2 exact graphs
    assert probes_per_exact_graph(careful) == 13.0
    # The wrong runs' probes count: counting only runs that ended exact would make this 4.5.
    assert probes_per_exact_graph(lucky_and_wrong) > 2 * 4.5


def test_an_explorer_that_never_ends_exact_costs_without_bound():
    assert math.isinf(probes_per_exact_graph([_run(8, False), _run(3, False)]))
