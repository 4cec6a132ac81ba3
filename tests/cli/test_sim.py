"""puzzlebot-sim end to end with a tiny budget: the real entry point, a real run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import pytest
import yaml


def test_oracle_run_writes_a_complete_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "-m", "puzzlebot.cli.sim", "agent=oracle", "puzzle.depth=1", "seed=4",
         "experiment.wandb=disabled", "experiment.video_size=[120,160]", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["solved"] is True and metrics["depth"] == 1 and metrics["agent"] == "oracle"
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert config["seed"] == 4 and config["puzzle"]["depth"] == 1
    episode = json.loads((run_dir / "episode.json").read_text())
    assert len(episode["executed"]) == metrics["attempts"] >= 1
    video = cv2.VideoCapture(str(run_dir / "solve.mp4"))
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    video.release()
    assert frames > 10


def test_unknown_agent_fails_loudly(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "puzzlebot.cli.sim", "agent.name=sac", "experiment.wandb=disabled",
         f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "unknown agent" in proc.stderr and "ppo" in proc.stderr


@pytest.mark.slow
def test_the_agent_solves_a_lockbox_on_the_emulator_and_writes_its_run_folder(tmp_path):
    """The default agent, through the driver layer, from camera images; solved means the emulator's own
    final joint values meet the goal (the agent never reads them). A new family memory starts at
    the default priors and learns the puzzle."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "-m", "puzzlebot.cli.sim", "puzzle.depth=1", "seed=4", "experiment.wandb=disabled",
         "agent.max_attempts=8", f"agent.memory={tmp_path / 'family.json'}", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    family = json.loads((tmp_path / "family.json").read_text())  # learned into, for the family's next puzzle
    assert len(family["puzzles"]) == 1 and len(family["locks"]) >= 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["agent"] == "puzzlebot" and metrics["solved"] is True and metrics["believed_solved"] is True
    assert 1 <= metrics["attempts"] <= 8
    solve = json.loads((run_dir / "solve.json").read_text())
    assert solve["solved_on_world"] is True and len(solve["steps"]) >= metrics["attempts"]
    assert (run_dir / "fitted_model.xml").exists() and (run_dir / "episode").is_dir()
    video = cv2.VideoCapture(str(run_dir / "solve.mp4"))
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    video.release()
    assert frames > 10


@pytest.mark.parametrize("agent, strategy, learns, solver", [("puzzlebot", "active", True, "solve"),
                                                              ("random", "random", True, "solve"),
                                                              ("nominal", "active", False, "solve"),
                                                              ("ppo", "active", True, "solve_ppo")])
def test_each_emulator_agent_gets_its_own_solver_and_setting(agent, strategy, learns, solver):
    from hydra import compose, initialize_config_dir

    from puzzlebot.cli.sim import CONFIGS, agent_solve_config
    from puzzlebot.configs.schema import register

    register()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose(config_name="config", overrides=[f"agent={agent}"])
    config, solve = agent_solve_config(cfg, seed=3)
    assert config.explorer.strategy == strategy and config.learn is learns and config.explorer.seed == 3
    assert config.max_attempts == cfg.agent.max_attempts == 30
    assert getattr(solve, "func", solve).__name__ == solver
    if agent == "ppo":  # the learner's settings come from the config, seeded by the run
        assert solve.keywords["ppo"].seed == 3 and solve.keywords["ppo"].n_steps == cfg.agent.ppo.n_steps
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        oracle = compose(config_name="config", overrides=["agent=oracle"])
    with pytest.raises(ValueError, match="does not act through the solve loop"):
        agent_solve_config(oracle, seed=0)
