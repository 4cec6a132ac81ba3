"""puzzlebot-author end to end: new -> validate -> render -> solve -> export -> load in MuJoCo, plus
broken files and a generated suite. Every check reads the files the tool wrote, not its return values alone.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering; must precede the first mujoco import

from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from puzzlebot.cli import preview  # noqa: E402
from puzzlebot.cli.author import main  # noqa: E402
from puzzlebot.sim.build import puzzle_scene  # noqa: E402
from puzzlebot.sim.logic import PuzzleLogic  # noqa: E402
from puzzlebot.sim.mechanisms import DEFAULTS  # noqa: E402
from puzzlebot.sim.spec import MECHANISMS, load_spec  # noqa: E402

_JOINT_TYPES = {"slide": mujoco.mjtJoint.mjJNT_SLIDE, "hinge": mujoco.mjtJoint.mjJNT_HINGE}


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    """Exit code and everything printed (stdout + stderr) by one CLI call."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def new_puzzle(tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    code, out = _run(capsys, "new", "my_box", "--template", "bolt_drawer", "-o", tmp_path)
    assert code == 0, out
    return tmp_path / "my_box.yaml"


def test_round_trip(new_puzzle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = load_spec(new_puzzle)
    assert spec.name == "my_box"
    assert "#" in new_puzzle.read_text(), "template comments should survive into the new file"

    code, out = _run(capsys, "validate", new_puzzle)
    assert code == 0 and "OK" in out and "2 parts, depth 2" in out, out

    png = tmp_path / "preview.png"
    code, out = _run(capsys, "render", new_puzzle, "-o", png, "--views", "front,top,side", "--size", "240x320")
    assert code == 0 and str(png) in out, out
    assert png.stat().st_size > 20_000
    image = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    assert image.shape == (240, 3 * 320, 3)
    assert image.std() > 15, "preview looks blank"
    label_pixels = np.all(np.abs(image.astype(int) - preview.LABEL_RGB) < 10, axis=-1).sum()
    assert label_pixels > 50, "part names are missing from the preview"

    code, out = _run(capsys, "solve", new_puzzle, "--plan-only")
    assert code == 0, out
    assert out.index("bolt") < out.index("drawer"), "the bolt must be opened before the drawer"
    assert "sim time" not in out, "--plan-only must not simulate"

    code, out = _run(capsys, "solve", new_puzzle, "--robot", "gripper")
    assert code == 0 and "solved: sim time" in out and "attempts 2" in out, out

    code, out = _run(capsys, "export", new_puzzle, "-o", tmp_path / "mjcf")
    xml = tmp_path / "mjcf" / "my_box.xml"
    assert code == 0 and xml.exists(), out
    for part in spec.parts:
        assert (tmp_path / "mjcf" / f"aruco_{part.marker_id}.png").exists()
    model = mujoco.MjModel.from_xml_path(str(xml))
    for part in spec.parts:
        joint = model.joint(f"{part.name}/joint")
        assert joint.type[0] == _JOINT_TYPES[MECHANISMS[part.mechanism]]
        expected = (part.joint or DEFAULTS[part.mechanism][1]).range
        np.testing.assert_allclose(model.jnt_range[joint.id], expected)
    assert model.njnt == len(spec.parts)
    # The exported file is the same model as the in-memory scene, marker textures included.
    reference = puzzle_scene(spec).compile()
    for field in ("body_pos", "body_quat", "body_mass", "geom_size", "geom_pos", "geom_type", "jnt_axis",
                  "dof_frictionloss", "dof_damping", "pair_solref", "cam_pos", "cam_quat", "tex_data"):
        np.testing.assert_allclose(getattr(model, field), getattr(reference, field), atol=1e-5, err_msg=field)


def test_new_refuses_to_overwrite(new_puzzle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    new_puzzle.write_text("edited by hand\n")
    code, out = _run(capsys, "new", "my_box", "-o", tmp_path)
    assert code == 1 and "--force" in out
    assert new_puzzle.read_text() == "edited by hand\n"
    code, out = _run(capsys, "new", "my_box", "--template", "minimal", "-o", tmp_path, "--force")
    assert code == 0, out
    assert len(load_spec(new_puzzle).parts) == 1


def _broken(new_puzzle: Path, edit) -> Path:
    data = yaml.safe_load(new_puzzle.read_text())
    edit(data)
    path = new_puzzle.with_name("broken.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def _unknown_mechanism(data: dict) -> None:
    data["parts"][1]["mechanism"] = "trapdoor"


def _cycle(data: dict) -> None:
    data["parts"][1]["blocked_by"] = [{"blocker": "drawer", "locked_range": [0.0, 0.05]}]


@pytest.mark.parametrize("edit, field, reason", [
    (_unknown_mechanism, "puzzle.parts[1].mechanism", "unknown mechanism 'trapdoor'"),
    (_cycle, "puzzle.parts", "blocker cycle"),
])
def test_validate_names_the_field(new_puzzle: Path, capsys: pytest.CaptureFixture, edit, field: str,
                                  reason: str) -> None:
    broken = _broken(new_puzzle, edit)
    code, out = _run(capsys, "validate", new_puzzle, broken)
    assert code == 1
    assert f"OK {new_puzzle}" in out, "the valid file is still reported"
    assert f"{broken}: {field}: " in out and reason in out, out


def test_solve_explains_an_unsolvable_file(new_puzzle: Path, capsys: pytest.CaptureFixture) -> None:
    # Drawer open *and* bolt shut: the bolt cannot close across a drawer that is already out.
    broken = _broken(new_puzzle, lambda data: data["goal"].append({"part": "bolt", "max": 0.01}))
    code, out = _run(capsys, "solve", broken, "--plan-only")
    assert code == 1
    assert "puzzle.goal: unreachable goal" in out and "never all at once" in out, out


def test_usage_errors_exit_2(new_puzzle: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["render", str(new_puzzle), "--size", "big"])
    assert exit_info.value.code == 2
    code, out = _run(capsys, "render", new_puzzle, "--views", "front,underneath")
    assert code == 1 and "underneath" in out


def test_generate_suite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out = _run(capsys, "generate", "-o", tmp_path, "--depths", "1-3", "--seeds", "2")
    assert code == 0, out
    index = yaml.safe_load((tmp_path / "suite.yaml").read_text())["puzzles"]
    assert [(e["depth"], e["seed"]) for e in index] == [(d, s) for d in (1, 2, 3) for s in (0, 1)]
    for entry in index:
        assert entry["file"] == f"gen_d{entry['depth']}_s{entry['seed']}.yaml"
        spec = load_spec(tmp_path / entry["file"])  # validation includes solvability
        assert spec.name == Path(entry["file"]).stem
        assert PuzzleLogic(spec).depth() == entry["depth"]
    # Same seeds, same files.
    again = tmp_path / "again"
    assert _run(capsys, "generate", "-o", again, "--depths", "2", "--seeds", "1")[0] == 0
    assert (again / "gen_d2_s0.yaml").read_text() == (tmp_path / "gen_d2_s0.yaml").read_text()
