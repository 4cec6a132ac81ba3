"""puzzlebot-deploy: run an agent on an arm through the driver layer, recording everything.

Order of events: build the backend (the reality emulator by default, or a real arm), wrap
it in the `Driver` (safety layer + state machine) with an `EpisodeWriter` in the run folder,
connect, check (calibration, joint limits, workspace, cameras), then either stop there
(`dry_run=true`: nothing moves) or ask for confirmation on real hardware and run the agent.
Ctrl-C, SIGTERM or any exception stops the arm and closes the log; the emulator's hidden gap
is written into the log only after the episode.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import hydra  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from puzzlebot.real.calibration import RobotCalibration  # noqa: E402
from puzzlebot.real.driver import Driver, DriverState  # noqa: E402
from puzzlebot.real.interface import Command, ControlMode, RobotBackend, StaleFrameError  # noqa: E402
from puzzlebot.real.recording import EpisodeWriter  # noqa: E402
from puzzlebot.real.safety import SafetyConfig  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "deploy"
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "puzzles"


class DeployCheckError(RuntimeError):
    """A pre-motion check failed: nothing was moved."""


def make_backend(cfg: DictConfig) -> RobotBackend:
    """The backend the config names; vendor SDKs are imported only when asked for."""
    kind = str(cfg.robot.kind)
    if kind == "emulator":
        from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig

        puzzle = Path(str(cfg.puzzle))
        if not puzzle.suffix:
            puzzle = ASSETS / f"{puzzle}.yaml"
        return EmulatorBackend(EmulatorConfig(puzzle=puzzle, seed=int(cfg.seed), control_hz=float(cfg.robot.control_hz),
                                              realtime=bool(cfg.robot.realtime), cameras=tuple(cfg.cameras)))
    from puzzlebot.real import arms

    return arms.make_arm(kind, address=str(cfg.robot.address), control_hz=float(cfg.robot.control_hz))


def preflight(driver: Driver, cfg: DictConfig) -> list[str]:
    """Checks before any motion; raises DeployCheckError naming what failed, returns what passed."""
    passed = []
    state = driver.read_state()
    if driver.state is not DriverState.IDLE:
        raise DeployCheckError(f"the arm reports a fault: {driver.fault.kind.value}: {driver.fault.message}")
    passed.append(f"connected: {driver.capabilities.name}, {driver.capabilities.dof} joints, state seq {state.seq}")
    if driver.calibration is not None:
        driver.calibration.verify(driver.capabilities, driver.address)
        passed.append(f"calibration matches ({driver.calibration.fingerprint})")
    elif bool(cfg.robot.real_hardware):
        raise DeployCheckError("real hardware needs a calibration file: set calibration=path/to/cal.yaml")
    caps, margin = driver.capabilities, float(cfg.safety.joint_margin)
    q = state.joint_positions
    inside = (q >= caps.joint_lower + margin) & (q <= caps.joint_upper - margin)
    if not np.all(inside):
        bad = [caps.joint_names[i] for i in np.flatnonzero(~inside)]
        raise DeployCheckError(f"joints {bad} are within {margin} rad of their limits: jog them clear first")
    passed.append("joints inside their limits with margin")
    low, high = np.array(driver.safety.config.workspace_low), np.array(driver.safety.config.workspace_high)
    tcp = driver.backend.forward_kinematics(q)
    if not np.all((tcp >= low) & (tcp <= high)):
        raise DeployCheckError(f"the TCP {np.round(tcp, 3).tolist()} is outside the workspace box "
                               f"{low.tolist()}..{high.tolist()}")
    passed.append(f"TCP {np.round(tcp, 3).tolist()} inside the workspace box")
    return passed


def probe_agent(driver: Driver, start: np.ndarray, t: float) -> Command:
    """A gentle joint wiggle around the start pose (0.05 rad, 0.5 Hz): exercises the loop safely."""
    offset = np.zeros_like(start)
    offset[: min(3, len(start))] = 0.05 * np.sin(2 * np.pi * 0.5 * t)
    return Command(ControlMode.JOINT, start + offset, grip=0.0, t=time.monotonic())


AGENTS = ("probe", "puzzlebot")


def run(cfg: DictConfig, out_dir: Path, confirm=input) -> dict[str, Any]:
    """Deploy once into `out_dir`; returns a summary (also in the log's events)."""
    console = Console()
    if str(cfg.agent) not in AGENTS:
        raise ValueError(f"agent={cfg.agent!r}: unknown agent; the agents are {', '.join(AGENTS)}")
    if str(cfg.agent) == "puzzlebot":
        return run_puzzlebot(cfg, out_dir, console)
    if cfg.policies:
        raise ValueError("policies: skill policies pace the puzzlebot agent's moves; agent=probe takes none")
    backend = make_backend(cfg)
    calibration = RobotCalibration.load(cfg.calibration) if cfg.calibration else None
    safety = SafetyConfig(joint_margin=float(cfg.safety.joint_margin), max_joint_step=float(cfg.safety.max_joint_step),
                          watchdog_s=float(cfg.safety.watchdog_s),
                          workspace_low=tuple(float(v) for v in cfg.robot.workspace_low),
                          workspace_high=tuple(float(v) for v in cfg.robot.workspace_high))
    recorder = EpisodeWriter(out_dir, OmegaConf.to_container(cfg, resolve=True), backend.capabilities)
    driver = Driver(backend, safety, calibration=calibration, address=str(cfg.robot.address), recorder=recorder)
    summary: dict[str, Any] = {"dry_run": bool(cfg.dry_run), "commands": 0, "rejected": 0, "faults": []}
    gap = None
    try:
        with driver:
            for line in preflight(driver, cfg):
                console.print(f"[green]ok[/] {line}")
            if cfg.dry_run:
                console.print("[bold]dry run:[/] all checks passed, nothing moved")
                summary["sent_while_dry"] = 0
                return summary
            if bool(cfg.robot.real_hardware) and not cfg.assume_yes:
                answer = confirm(f"About to move the {cfg.robot.name} at {cfg.robot.address}. Type 'move' to go: ")
                if answer.strip() != "move":
                    console.print("not confirmed: nothing moved")
                    return summary
            driver.activate()
            cameras = [backend.camera(name) for name in cfg.cameras] if hasattr(backend, "camera") else []
            for camera in cameras:
                camera.connect()
            start = driver.read_state().joint_positions.copy()
            last_seq: dict[str, int] = {}
            period = 1.0 / float(cfg.robot.control_hz)
            t0 = time.monotonic()
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(f"agent {cfg.agent}", total=float(cfg.duration_s))
                while (elapsed := time.monotonic() - t0) < float(cfg.duration_s):
                    driver.read_state()
                    if driver.state is not DriverState.ACTIVE:
                        summary["faults"].append(f"{driver.fault.kind.value}: {driver.fault.message}")
                        console.print(f"[red]fault:[/] {driver.fault.kind.value}: {driver.fault.message} "
                                      "(arm stopped; clear_faults() needed)")
                        break
                    for camera in cameras:
                        try:
                            frame = camera.read_latest(max_age=float(cfg.max_frame_age_s))
                            if frame.seq != last_seq.get(camera.name):  # log each frame once
                                recorder.log_frame(frame)
                                last_seq[camera.name] = frame.seq
                        except StaleFrameError as err:  # flagged and logged, never reused
                            summary["stale_frames"] = summary.get("stale_frames", 0) + 1
                            recorder.log_event("stale_frame", camera=camera.name, error=str(err))
                    report = driver.send(probe_agent(driver, start, elapsed))
                    summary["commands"] += 1
                    summary["rejected"] += int(report.rejected)
                    driver.tick()
                    progress.update(task, completed=elapsed)
                    time.sleep(max(0.0, period - (time.monotonic() - t0 - elapsed)))
        if hasattr(backend, "episode_gap"):
            gap = backend.episode_gap()  # readable only now that the episode is over
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] the arm was stopped and the log closed")
        summary["interrupted"] = True
    finally:
        recorder.close(gap=gap)
    console.print(f"{summary['commands']} commands ({summary['rejected']} rejected by the safety layer) -> {out_dir}")
    return summary


def run_puzzlebot(cfg: DictConfig, out_dir: Path, console: Console) -> dict[str, Any]:
    """The solve loop on the emulator through the driver, its moves paced by exported skill
    policies (`policies`: folders written by `SkillPolicy.save`) where one is given for the
    part, by the MPC otherwise; scored on the emulator's world. With `learn_on_the_job`, each
    policy's weights are refitted on the moves it made (`distill.DeployedPolicies`); the
    policies as they end up are saved in the run folder's `policies/`.

    The emulator runs in lockstep (the loop plans between control periods, as in puzzlebot-sim);
    hardware is refused: the agent needs its cameras registered to the arm, not built yet.
    """
    from functools import partial

    from puzzlebot.agent.affordances import marker_sheet, task_goals
    from puzzlebot.agent.agents import solve_setup
    from puzzlebot.agent.policy.distill import DeployedPolicies, DistillConfig
    from puzzlebot.agent.session import SessionConfig, run_solve
    from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig
    from puzzlebot.sim.spec import load_spec

    if str(cfg.robot.kind) != "emulator":
        raise NotImplementedError(f"agent=puzzlebot on robot={cfg.robot.name!r}: the agent locates the puzzle "
                                  "through cameras registered to the arm, which is built for the emulator's "
                                  "cameras only; run it on robot=emulator")
    if bool(cfg.robot.realtime):
        raise ValueError("agent=puzzlebot runs the emulator in lockstep: set robot.realtime=false (the loop "
                         "plans between control periods; it is not validated against a free-running clock)")
    deployed = DeployedPolicies.load([Path(str(f)) for f in cfg.policies or ()],
                                     DistillConfig() if cfg.learn_on_the_job else None)
    if cfg.learn_on_the_job and not deployed.policies:
        raise ValueError("learn_on_the_job: there is no policy to learn (policies=[])")
    policies = deployed.policies
    puzzle = Path(str(cfg.puzzle))
    spec = load_spec(puzzle if puzzle.suffix else ASSETS / f"{puzzle}.yaml")
    unknown = sorted(set(policies) - {p.name for p in spec.parts})
    if unknown:
        raise ValueError(f"policies: trained for parts {unknown}, which puzzle {spec.name!r} does not have")
    seed = int(cfg.seed)
    session = SessionConfig()
    emulator = EmulatorBackend(EmulatorConfig(puzzle=spec, robot="gripper", seed=seed, cameras=session.cameras,
                                              image_size=(480, 640), realtime=False, lockstep=True))
    solve_config, solver = solve_setup("puzzlebot", seed, int(cfg.max_attempts), float(cfg.max_robot_s))
    paced_by = ", ".join(f"{part} by its policy" for part in policies) or "every move by the MPC"
    console.print(f"[bold]puzzlebot-deploy[/] agent puzzlebot on the emulator, puzzle [cyan]{spec.name}[/]; "
                  f"paced: {paced_by}")
    with console.status("solving through the driver (lockstep emulator)..."):
        result = run_solve(emulator, marker_sheet(spec), task_goals(spec), out_dir, session, solve_config,
                           partial(solver, policies=deployed))
    outcome = result.outcome
    summary = {"agent": "puzzlebot", "puzzle": spec.name, "solved": result.solved,
               "attempts": len(outcome.attempts), "robot_time_s": outcome.robot_time_s,
               "compute_s": outcome.decide_s + result.fit_s, "reason": outcome.reason,
               "policy_paced_moves": sum(p["pacer"] == "policy" for p in outcome.mpc),
               "mpc_paced_moves": sum(p["pacer"] == "mpc" for p in outcome.mpc),
               "policy_updates": deployed.updates}
    if deployed.policies:  # as they stand after the solve (learned on the job if asked), with their labels
        deployed.save(out_dir / "policies")
    colour = "green" if result.solved else "red"
    console.print(f"[{colour}]solved on the emulator={result.solved}[/] ({outcome.reason}) in "
                  f"{summary['attempts']} attempts, {outcome.robot_time_s:.0f} s robot time; "
                  f"{summary['policy_paced_moves']} move(s) paced by a policy -> {out_dir}")
    return summary


@hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="config")
def _main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    run(cfg, Path(HydraConfig.get().runtime.output_dir) / "episode")


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise `KeyboardInterrupt` (the arm is stopped, the log closed) while
    the deploy runs, restoring the previous handlers after.

    Why both, and why always: a shell starts background jobs (`cmd &` in a script, nohup) with
    SIGINT ignored, and Python then keeps ignoring it, so `kill -INT` did nothing to such a
    deploy; and SIGTERM (kill, systemd, docker stop) killed it with the log left open."""
    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    with stop_signals():
        _main()


if __name__ == "__main__":
    main()
