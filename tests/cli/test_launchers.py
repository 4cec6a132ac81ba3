"""puzzlebot-sim sweeps through each launcher: a real 2-job multirun of the oracle on a depth-1 lockbox.

Each test runs the installed console script (so hydra pickles the task function by reference,
as it does for users) and checks the sweep folder: one run folder per job with metrics.json
saying solved, and the job's offline wandb run inside it. SLURM is exercised through
submitit's local executor (same launcher code, no cluster); Ray through a local instance the
launcher starts (no dashboard, no usage stats, loopback only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from puzzlebot.cli.sim import CONFIGS

_SCRIPT = Path(sys.executable).with_name("puzzlebot-sim")
SIM = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "puzzlebot.cli.sim"]
SEEDS = (0, 1)
# Ray on this machine only: its processes talk over loopback (not the host's interface address),
# and its API server's cloud-provider probe (an HTTP GET to 169.254.169.254 that Ray 2.60 makes
# even with usage stats off) goes to a closed loopback port through a proxy instead.
_DEAD_PROXY = "http://127.0.0.1:9"
RAY_OFFLINE_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "http_proxy": _DEAD_PROXY, "https_proxy": _DEAD_PROXY, "HTTP_PROXY": _DEAD_PROXY, "HTTPS_PROXY": _DEAD_PROXY,
    "no_proxy": "127.0.0.1,localhost,::1", "NO_PROXY": "127.0.0.1,localhost,::1",
}


def _sweep(sweep_dir: Path, *launcher: str, env: dict[str, str] | None = None) -> None:
    """Run `puzzlebot-sim -m` over SEEDS with the given launcher overrides into `sweep_dir`."""
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "WANDB_MODE": "offline", **(env or {})}
    proc = subprocess.run(
        [*SIM, "-m", "agent=oracle", "puzzle.depth=1", f"seed={','.join(map(str, SEEDS))}", "experiment.video=false",
         f"hydra.sweep.dir={sweep_dir}", *launcher],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for num, seed in enumerate(SEEDS):
        run_dir = sweep_dir / str(num)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["agent"] == "oracle" and metrics["seed"] == seed and metrics["depth"] == 1
        assert metrics["solved"] is True, metrics
        assert list((run_dir / "wandb").glob("offline-run-*")), f"no offline wandb run in {run_dir}"


def test_basic_launcher_runs_the_jobs_one_after_another(tmp_path):
    _sweep(tmp_path / "sweep")


def test_local_parallel_preset_runs_joblib_processes(tmp_path):
    _sweep(tmp_path / "sweep", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2")


def test_submitit_local_executor(tmp_path):
    sweep_dir = tmp_path / "sweep"
    _sweep(sweep_dir, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5")
    assert list((sweep_dir / ".submitit").glob("*/*_result.pkl")), "submitit kept no job results"


def test_ray_local_preset_starts_its_own_ray_instance(tmp_path):
    _sweep(tmp_path / "sweep", "hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2", env=RAY_OFFLINE_ENV)


def test_slurm_preset_submits_an_array_with_the_fields_people_edit(tmp_path):
    """No cluster here: a stand-in `sbatch` keeps the script submitit writes and refuses the job,
    so this checks what the preset asks SLURM for, not that jobs run (submitit_local above runs them)."""
    bin_dir, captured = tmp_path / "bin", tmp_path / "job.sbatch"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit only checks that srun exists
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" "{captured}"\necho "no cluster here" >&2\nexit 1\n')
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [*SIM, "-m", "agent=oracle", "puzzle.depth=1", "seed=0,1", "hydra/launcher=slurm",
         "hydra.launcher.partition=cpu", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode != 0 and "no cluster here" in proc.stderr, proc.stderr[-3000:]
    script = captured.read_text()
    assert "#SBATCH --array=0-1%" in script  # one array task per job (at most array_parallelism at once)
    for option in ("--partition=cpu", "--time=60", "--cpus-per-task=2", "--mem=8GB"):
        assert f"#SBATCH {option}\n" in script, option
    assert "--gpus" not in script
    assert "python -u -m submitit.core._submit" in script  # the venv's own python runs each job


@pytest.mark.parametrize("preset, target, fields", [
    ("local_parallel", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", {"n_jobs": -1}),
    ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
     {"partition": None, "timeout_min": 60, "cpus_per_task": 2, "mem_gb": 8, "gpus_per_node": None}),
    ("ray_local", "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", {}),
])
def test_launcher_presets_compose_onto_the_plugins_schemas(preset, target, fields):
    """The presets name fields the installed plugins know (SLURM itself cannot run here)."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={preset}"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == target
    for key, value in fields.items():
        assert launcher[key] == value, key
    if preset == "ray_local":
        assert launcher.ray.init.address == "local" and launcher.ray.init.include_dashboard is False
