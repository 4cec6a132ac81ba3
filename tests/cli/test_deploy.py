"""puzzlebot-deploy on the reality emulator: dry runs never move, runs log everything, Ctrl-C stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from puzzlebot.real.replay import EpisodeReader


def _deploy(tmp_path, *overrides: str, timeout: float = 120.0) -> tuple[subprocess.CompletedProcess, EpisodeReader]:
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "puzzlebot.cli.deploy", f"hydra.run.dir={run_dir}", *overrides],
                          capture_output=True, text=True, timeout=timeout)
    return proc, EpisodeReader(run_dir / "episode")


@pytest.mark.fault
def test_dry_run_checks_and_never_moves(tmp_path):
    proc, log = _deploy(tmp_path, "dry_run=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "nothing moved" in proc.stdout
    assert not log.commands and log.ends_cleanly


def test_deploy_on_the_emulator_records_commands_frames_and_the_gap_after(tmp_path):
    proc, log = _deploy(tmp_path, "duration_s=1.5", "cameras=[front]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(log.commands) > 20 and all(c.sent is not None for c in log.commands)
    seqs = [frame.seq for frame in log.frames["front"]]
    assert len(seqs) > 3 and len(set(seqs)) == len(seqs)  # each frame logged once
    assert log.gap  # the emulator's hidden gap, written only after the episode
    assert log.ends_cleanly


@pytest.mark.fault
def _as_background_job() -> None:
    """What a shell does to `cmd &` in a script (and nohup runs): SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_ctrl_c_stops_the_arm_and_closes_the_log(tmp_path, stop):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "puzzlebot.cli.deploy", f"hydra.run.dir={run_dir}",
                             "duration_s=60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_background_job)
    deadline = time.monotonic() + 60
    log_file = run_dir / "episode" / "episode.jsonl"
    while time.monotonic() < deadline and (not log_file.exists() or '"command"' not in log_file.read_text()):
        time.sleep(0.1)
    assert proc.poll() is None, "the deploy ended before it was stopped"
    os.kill(proc.pid, stop)
    out, err = proc.communicate(timeout=60)
    assert "interrupted" in out, err[-2000:]
    log = EpisodeReader(run_dir / "episode")
    assert log.ends_cleanly and log.commands
    assert any(e.text == "disconnect" for e in log.events)


def _real_arm_config(tmp_path, *overrides: str):
    from hydra import compose, initialize_config_dir

    from puzzlebot.cli.deploy import CONFIGS

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=["robot=ur5e", "robot.address=10.0.0.2", *overrides])


@pytest.mark.fault
def test_real_hardware_needs_calibration_and_confirmation(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mocks.ur_rtde import URController

    from puzzlebot.cli import deploy
    from puzzlebot.real.arms import URBackend, URConfig
    from puzzlebot.real.calibration import RobotCalibration
    from puzzlebot.sim.robots.base import Mount

    mock = URController()
    backend = URBackend(URConfig(ip="10.0.0.2", mount=Mount(pos=(0.0, 0.0, 0.0), yaw=0.0)), mock.sdk)
    monkeypatch.setattr(deploy, "make_backend", lambda cfg: backend)
    # No calibration on real hardware: refused before any motion.
    with pytest.raises(deploy.DeployCheckError, match="calibration"):
        deploy.run(_real_arm_config(tmp_path), tmp_path / "a")
    cal = tmp_path / "cal.yaml"
    RobotCalibration.for_backend(backend.capabilities, address="10.0.0.2").save(cal)
    # Calibrated, but the operator does not confirm: nothing moves.
    summary = deploy.run(_real_arm_config(tmp_path, f"calibration={cal}"), tmp_path / "b", confirm=lambda _: "no")
    assert summary["commands"] == 0 and not mock.called("servoJ")
    # Confirmed: the probe runs through the safety layer on the (mock) arm.
    summary = deploy.run(_real_arm_config(tmp_path, f"calibration={cal}", "duration_s=0.5"), tmp_path / "c",
                         confirm=lambda _: "move")
    assert summary["commands"] > 5 and mock.called("servoJ")


def _deploy_config(*overrides: str, **values):
    """The deploy app's config with hydra `overrides`, then `values` set on it: `agent=` and
    `puzzle=` cannot be overrides in a process where puzzlebot-sim's schema is registered (its
    ConfigStore has groups of those names), as it is when the whole suite runs."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from puzzlebot.cli.deploy import CONFIGS

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    for key, value in values.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def _exported_policy(folder: Path, part: str) -> Path:
    """A skill policy exported as training exports one: half the top speed, whatever it sees (the
    deployment's plumbing is under test here, not the learning)."""
    import torch

    from puzzlebot.agent.policy.skill_env import OBS_SCALE, SkillEnvConfig
    from puzzlebot.agent.policy.skill_policy import OBS_FIELDS, SkillPolicy

    env = SkillEnvConfig()
    module = torch.nn.Linear(len(OBS_FIELDS), 1)
    torch.nn.init.zeros_(module.weight)
    torch.nn.init.zeros_(module.bias)
    spec = {"part": part, "pushing": False, "lever": 1.0, "max_speed": env.max_speed, "max_s": env.max_s,
            "control_s": env.control_s, "tolerance": env.tolerance, "rest_speed": env.rest_speed,
            "observation": OBS_FIELDS, "obs_scale": OBS_SCALE.tolist()}
    SkillPolicy(module, spec).save(folder)
    return folder


@pytest.mark.slow
def test_the_agent_solves_through_the_driver_with_an_exported_policy_loaded(tmp_path):
    import json

    from puzzlebot.cli import deploy

    policy = _exported_policy(tmp_path / "policy", "drawer")
    cfg = _deploy_config("robot.realtime=false", agent="puzzlebot", puzzle="first_drawer", policies=[str(policy)])
    summary = deploy.run(cfg, tmp_path / "run")
    log = json.loads((tmp_path / "run" / "solve.json").read_text())
    assert summary["solved"] and log["solved_on_world"]  # judged on the emulator's world
    assert EpisodeReader(tmp_path / "run" / "episode").ends_cleanly  # everything went through the driver
    drawer_paces = [p for p in log["mpc_paced_moves"] if p["part"] == "drawer"]
    assert all(p["pacer"] == "policy" for p in drawer_paces)  # never the MPC where the policy is given
    assert (tmp_path / "run" / "policies" / "drawer" / "skill_policy.pt2").exists()  # kept with the run


def test_a_policy_for_a_part_the_puzzle_lacks_is_refused_before_anything_moves(tmp_path):
    from puzzlebot.cli import deploy

    policy = _exported_policy(tmp_path / "policy", "hatch")
    cfg = _deploy_config("robot.realtime=false", agent="puzzlebot", puzzle="first_drawer", policies=[str(policy)])
    with pytest.raises(ValueError, match="hatch"):
        deploy.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_agent_asks_for_the_lockstep_emulator(tmp_path):
    from puzzlebot.cli import deploy

    with pytest.raises(ValueError, match="robot.realtime=false"):
        deploy.run(_deploy_config(agent="puzzlebot"), tmp_path / "run")
    with pytest.raises(ValueError, match="policies"):
        deploy.run(_deploy_config(policies=[str(tmp_path)]), tmp_path / "run")
    policy = _exported_policy(tmp_path / "policy", "drawer")  # no network description: it cannot learn
    with pytest.raises(ValueError, match="trainable network"):
        deploy.run(_deploy_config("robot.realtime=false", agent="puzzlebot", puzzle="first_drawer",
                                  policies=[str(policy)], learn_on_the_job=True), tmp_path / "run")
    with pytest.raises(ValueError, match="no policy to learn"):
        deploy.run(_deploy_config("robot.realtime=false", agent="puzzlebot", learn_on_the_job=True),
                   tmp_path / "run")
