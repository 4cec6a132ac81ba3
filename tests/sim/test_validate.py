"""Validation rules that protect what the agent relies on."""

import pytest

from puzzlebot.sim.markers import base_front_plate
from puzzlebot.sim.spec import BaseSpec, SpecError, spec_from_dict


def test_a_part_hiding_base_marker_0_is_rejected() -> None:
    """Every relative pose is measured from base marker 0: a part may not cover it."""
    base = BaseSpec(size=(0.3, 0.4, 0.25))
    center, _ = base_front_plate(base.size)
    data = {"name": "hidden", "base": {"size": list(base.size)},
            "parts": [{"name": "knob", "mechanism": "knob", "position": [float(center[1]) + 0.02, float(center[2])]}],
            "goal": [{"part": "knob", "min": 1.0}]}
    with pytest.raises(SpecError, match="hides base marker 0") as err:
        spec_from_dict(data)
    assert err.value.field_path == "puzzle.parts[0].position"
