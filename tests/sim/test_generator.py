"""Generated lockboxes: valid, of the requested depth, seeded, and physically locked."""

from __future__ import annotations

import pytest

from puzzlebot.sim.generator import GeneratorConfig, generate, load_preset
from puzzlebot.sim.logic import PuzzleLogic
from puzzlebot.sim.spec import spec_from_dict


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_generated_puzzles_have_requested_depth_over_many_seeds(depth):
    for seed in range(12):
        spec = generate(GeneratorConfig(depth=depth, seed=seed))
        again = spec_from_dict(spec.to_dict())  # full validation, lock geometry included
        assert PuzzleLogic(again).depth() == depth
        plan = PuzzleLogic(again).solve()
        assert plan[-1].part in {g.part for g in spec.goal}


def test_branching_and_distractors():
    spec = generate(GeneratorConfig(depth=4, n_parts=6, branching=2, seed=3))
    assert len(spec.parts) == 6
    assert PuzzleLogic(spec).depth() == 4
    assert max(len(p.blocked_by) for p in spec.parts) <= 2


def test_same_seed_same_puzzle_and_seeds_differ():
    a = generate(GeneratorConfig(depth=3, seed=7)).to_dict()
    b = generate(GeneratorConfig(depth=3, seed=7)).to_dict()
    c = generate(GeneratorConfig(depth=3, seed=8)).to_dict()
    assert a == b
    assert a != c


def test_goal_is_locked_initially():
    """Depth d > 1 means the goal part cannot be opened first."""
    for seed in range(5):
        spec = generate(GeneratorConfig(depth=3, seed=seed))
        logic = PuzzleLogic(spec)
        state = dict(zip(logic.names, logic.initial_state(), strict=True))
        goal = spec.goal[0]
        assert not logic.can_move(goal.part, logic.joints[goal.part].range[1], state)


def test_bad_configs_raise_clear_errors():
    with pytest.raises(ValueError, match="depth must be in"):
        generate(GeneratorConfig(depth=0))
    with pytest.raises(ValueError, match="n_parts"):
        generate(GeneratorConfig(depth=3, n_parts=2))


@pytest.mark.parametrize("preset", ["easy", "medium", "hard", "wide_base"])
def test_shipped_presets_generate_their_depth(preset):
    config = load_preset(preset, seed=1)
    spec = generate(config)
    assert PuzzleLogic(spec).depth() == config.depth
    assert len(spec.parts) == config.n_parts


def test_unknown_preset_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped: "):
        load_preset("nonexistent")
    bad = tmp_path / "bad.yaml"
    bad.write_text("depth: 2\ncolour: red\n")
    with pytest.raises(ValueError, match="unknown generator field 'colour'"):
        load_preset(str(bad))
