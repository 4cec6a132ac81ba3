"""Spec parsing and validation: every error names the file, the field and the reason."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from puzzlebot.sim.spec import SpecError, load_spec, save_spec, spec_from_dict

PUZZLES = Path(__file__).resolve().parents[2] / "puzzlebot" / "assets" / "puzzles"
BASE = yaml.safe_load((PUZZLES / "bolt_drawer.yaml").read_text())


def rename_bolt(data: dict, name: str) -> None:
    """Rename the bolt everywhere, putting it first so its name is the first thing checked."""
    bolt = data["parts"].pop(1)
    bolt["name"] = name
    data["parts"].insert(0, bolt)
    data["parts"][1]["blocked_by"][0]["blocker"] = name


def broken(edit) -> dict:
    data = copy.deepcopy(BASE)
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (lambda d: d["parts"][0].update(mechanism="trapdoor"), "puzzle.parts[0].mechanism", "unknown mechanism"),
        (lambda d: d["parts"][0].update(colour="red"), "puzzle.parts[0].colour", "unknown field"),
        (lambda d: d["parts"][1].pop("mechanism"), "puzzle.parts[1].mechanism", "required field is missing"),
        (lambda d: d["parts"][0]["blocked_by"][0].update(blocker="ghost"), "puzzle.parts[0].blocked_by[0].blocker",
         "unknown part 'ghost'"),
        (lambda d: d["parts"][1].update(blocked_by=[{"blocker": "drawer", "locked_range": [0.0, 0.05]}]),
         "puzzle.parts", "blocker cycle"),
        (lambda d: d["goal"][0].update(min=0.5), "puzzle.goal[0]", "unreachable goal"),
        (lambda d: d["parts"][1].update(position=[0.5, 0.09]), "puzzle.parts[1].position", "outside the base"),
        (lambda d: d["parts"][1].update(position=[-0.05, 0.09]), "puzzle.parts[0].position", "overlap"),
        (lambda d: d["parts"][0].update(joint={"range": [0.1, 0.0]}), "puzzle.parts[0].joint.range",
         "lower limit must be below upper"),
        (lambda d: d["parts"][0].update(position=[0.0, "high"]), "puzzle.parts[0].position[1]", "expected a number"),
        (lambda d: d["parts"][0].update(joint={"range": [0.0, 0.1], "friction": -1.0}),
         "puzzle.parts[0].joint.friction", "must be >= 0"),
        (lambda d: d["parts"][1].update(mechanism="button"), "puzzle.parts[0].blocked_by[0]", "cannot block it"),
        (lambda d: d["parts"][0].update(marker_id=1), "puzzle.parts[0].marker_id", "0 and 1 mark the base"),
        (lambda d: d["parts"][0].update(position=[10**400, 0.1]), "puzzle.parts[0].position[0]", "too large"),
        (lambda d: rename_bolt(d, "base_front"), "puzzle.parts[0].name", "reserved"),
        (lambda d: rename_bolt(d, "bolt/1"), "puzzle.parts[0].name", "ASCII letters"),
        (lambda d: rename_bolt(d, "riegel_ö"), "puzzle.parts[0].name", "ASCII letters"),
        (lambda d: d.update(name="../escape"), "puzzle.name", "ASCII letters"),
        (lambda d: d["parts"][0].update(mass=1e-300), "puzzle.parts[0].mass", "must be within"),
        (lambda d: d["parts"][0].update(joint={"range": [0.0, 0.12], "stiffness": 10.0, "springref": 100.0}),
         "puzzle.parts[0].joint.springref", "outside the range"),
        (lambda d: (d["parts"][0].update(joint={"range": [0.0, 0.12], "initial": 0.05}),
                    d["parts"][0]["blocked_by"][0].update(at=0.0)),
         "puzzle.parts[0].blocked_by[0].at", "starts before"),
        (lambda d: d["goal"][0].update(min=0.0), "puzzle.goal", "already holds at the start"),
        (lambda d: d.update(source="elsewhere.yaml"), "puzzle.source", "unknown field"),
    ],
)
def test_validation_errors_name_field_and_reason(tmp_path, edit, field, reason):
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken(edit)))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field_path == field
    assert reason in info.value.reason
    assert str(path) in str(info.value)


def test_unreachable_because_blocker_is_blocked_forever():
    data = broken(lambda d: d["parts"][0]["blocked_by"][0].update(locked_range=[0.0, 0.045]))
    with pytest.raises(SpecError, match="could never be unlocked"):
        spec_from_dict(data)


def test_unreachable_goal_explains_why():
    """Drawer out *and* bolt shut: the bolt cannot close across an open drawer."""
    with pytest.raises(SpecError) as info:
        spec_from_dict(broken(lambda d: d["goal"].append({"part": "bolt", "max": 0.01})))
    assert info.value.field_path == "puzzle.goal"
    assert "never all at once" in info.value.reason


def test_malformed_yaml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read the file"):
        load_spec(tmp_path)  # a directory
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="cannot read the file|not valid YAML"):
        load_spec(binary)
    bad = tmp_path / "bad.yaml"
    bad.write_text("parts: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_round_trip_and_marker_assignment(tmp_path):
    spec = load_spec(PUZZLES / "bolt_drawer.yaml")
    assert sorted(p.marker_id for p in spec.parts) == [2, 3]  # 0 and 1 belong to the base
    save_spec(spec, tmp_path / "copy.yaml")
    again = load_spec(tmp_path / "copy.yaml")
    assert again.to_dict() == spec.to_dict()
