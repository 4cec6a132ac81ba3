"""puzzlebot-deploy on the reality emulator: dry runs never move, runs log everything, Ctrl-C stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

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
def test_ctrl_c_stops_the_arm_and_closes_the_log(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "puzzlebot.cli.deploy", f"hydra.run.dir={run_dir}",
                             "duration_s=60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    log_file = run_dir / "episode" / "episode.jsonl"
    while time.monotonic() < deadline and (not log_file.exists() or '"command"' not in log_file.read_text()):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "interrupted" in out, err[-2000:]
    log = EpisodeReader(run_dir / "episode")
    assert log.ends_cleanly and log.commands
    assert any(e.text == "disconnect" for e in log.events)
