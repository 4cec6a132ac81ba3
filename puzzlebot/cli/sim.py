"""puzzlebot-sim: the simulation experiment runner (hydra).

With no arguments it generates a depth-3 lockbox and the agent solves it on the reality
emulator through the driver layer, writing a run folder: the resolved config (.hydra/), the
puzzle (puzzle.yaml), the driver's episode log with camera frames (episode/), the solve log
(solve.json: every step, why it was chosen, its outcome), the fitted model (fitted_model.*),
metrics (metrics.json, scored on the emulator's own final state) and a video (solve.mp4).

Agents: `puzzlebot` (the default); its baselines with the same skills and budget, on the same
emulator: `random` (moves drawn uniformly) and `nominal` (plans on its prior model and never
refits it), both in the solve loop, and `ppo` (model-free PPO learning on the puzzle itself
within the budget); and `oracle` (reads the true puzzle and acts in simulation: the upper bound).

Sweeps (`-m`, e.g. `-m puzzle.depth=1,2,3 agent=puzzlebot,oracle seed=0,1`) write one run folder
per job under `hydra.sweep.dir`. Jobs run one after another by default; the launcher presets in
`configs/hydra/launcher/` run them elsewhere: `local_parallel` (joblib processes), `slurm`
(submitit job array) and `ray_local` (a Ray instance started for the sweep). Each run logs its
metrics to wandb in its own folder, offline unless `experiment.wandb=online`;
`experiment.wandb=disabled` turns it off.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from puzzlebot.files import write_text_atomic

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # hydra/launcher=ray*: never phone home

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from puzzlebot.agent.agents import EMULATOR_AGENTS  # noqa: E402
from puzzlebot.configs.schema import register as register_schema  # noqa: E402
from puzzlebot.sim.external import load_puzzle  # noqa: E402
from puzzlebot.sim.generator import GeneratorConfig, generate  # noqa: E402
from puzzlebot.sim.spec import PuzzleSpec, save_spec  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "puzzles"
AGENTS = ("puzzlebot", "random", "nominal", "ppo", "oracle")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def resolve_puzzle(cfg: DictConfig, seed: int) -> PuzzleSpec:
    """Build the puzzle the config names: generated from a seed, or read from a file."""
    kind = cfg.puzzle.kind
    if kind == "generated":
        return generate(GeneratorConfig(depth=int(cfg.puzzle.depth), n_parts=cfg.puzzle.n_parts,
                                        branching=int(cfg.puzzle.branching), seed=seed))
    if kind == "file":
        path = Path(str(cfg.puzzle.path))
        if not path.suffix:
            path = ASSETS / f"{path}.yaml"
        return load_puzzle(path)
    raise ValueError(f"puzzle.kind: unknown kind {kind!r} (use 'generated' or 'file')")


def _atomic_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=float))


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run one experiment into `out_dir`; returns the metrics written to metrics.json."""
    from rich.console import Console

    from puzzlebot.sim.oracle import Oracle
    from puzzlebot.sim.world import PuzzleWorld, WorldConfig

    console = Console()
    if cfg.agent.name not in AGENTS:
        raise ValueError(f"agent={cfg.agent.name!r}: unknown agent; the agents are {', '.join(AGENTS)}")
    seed = int(cfg.seed)
    spec = resolve_puzzle(cfg, seed)
    if not isinstance(spec, PuzzleSpec):  # an MJCF puzzle: keep it with the run, then say why we stop
        shutil.copy(spec.source, out_dir / "puzzle.yaml")
        shutil.copy(spec.mjcf, out_dir / spec.mjcf.name)
        reason = (f"{spec.name} is an MJCF puzzle with no declared locks or marker sheet: "
                  f"agent {cfg.agent.name!r} cannot play it yet")
        _atomic_json(out_dir / "metrics.json", {"puzzle": spec.name, "agent": str(cfg.agent.name), "solved": False,
                                                "reason": reason, "seed": seed})
        raise TypeError(reason)
    save_spec(spec, out_dir / "puzzle.yaml")
    if cfg.agent.name in EMULATOR_AGENTS:
        return _run_puzzlebot(cfg, spec, seed, out_dir, console)
    world = PuzzleWorld(spec, WorldConfig(robot=str(cfg.robot.name)))
    recorder = _VideoRecorder(world, cfg.experiment, out_dir) if cfg.experiment.video else None
    oracle = Oracle(spec, max_attempts=int(cfg.agent.max_attempts), world=world,
                    on_control=recorder.capture if recorder else None)
    console.print(f"[bold]puzzlebot-sim[/] puzzle [cyan]{spec.name}[/] ({len(spec.parts)} parts), "
                  f"robot [cyan]{cfg.robot.name}[/], agent [cyan]oracle[/] (ground truth, upper bound)")
    start = time.perf_counter()
    try:
        with console.status("solving with the oracle..."):
            result = oracle.solve()
    finally:
        if recorder:
            recorder.close()
    wall = time.perf_counter() - start
    for i, step in enumerate(result.executed):
        mark = "[green]ok[/]" if step.success else "[red]missed[/]"
        console.print(f"  {i + 1}. {step.part} -> {step.target:.3f} reached {step.reached:.3f} {mark}")
    metrics = {
        "puzzle": spec.name, "agent": "oracle", "robot": str(cfg.robot.name), "seed": seed,
        "depth": len(result.plan), "solved": bool(result.solved), "attempts": result.attempts,
        "robot_time_s": result.sim_time_s, "compute_s": wall, "reason": result.reason,
    }
    _atomic_json(out_dir / "episode.json", {"plan": [str(m) for m in result.plan],
                                            "executed": [asdict(s) for s in result.executed]})
    _atomic_json(out_dir / "metrics.json", metrics)
    _log_wandb(cfg, metrics, out_dir)
    colour = "green" if result.solved else "red"
    console.print(f"[{colour}]solved={result.solved}[/] in {result.attempts} moves, "
                  f"{result.sim_time_s:.1f} s robot time, {wall:.1f} s compute -> {out_dir}")
    return metrics


def _run_puzzlebot(cfg: DictConfig, spec: PuzzleSpec, seed: int, out_dir: Path, console) -> dict[str, Any]:
    """The agent (or its random or nominal baseline) on the lockstep reality emulator, through the
    driver layer; scored on the emulator."""
    from puzzlebot.agent.affordances import marker_sheet, task_goals
    from puzzlebot.agent.session import SessionConfig, run_solve
    from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig

    agent = str(cfg.agent.name)
    if str(cfg.robot.name) != "gripper":
        raise NotImplementedError(f"agent={agent} drives the floating gripper only so far (robot="
                                  f"{cfg.robot.name!r}): the Jaco's hand is not wired into the prober yet")
    session = SessionConfig()
    emulator = EmulatorBackend(EmulatorConfig(puzzle=spec, robot="gripper", seed=seed, cameras=session.cameras,
                                              image_size=(480, 640), realtime=False, lockstep=True))
    goals = task_goals(spec)
    console.print(f"[bold]puzzlebot-sim[/] puzzle [cyan]{spec.name}[/] ({len(spec.parts)} parts), agent "
                  f"[cyan]{agent}[/] on the reality emulator (hidden gap, seed {seed}); task: "
                  + ", ".join(f"open {g.part} by {g.min_opening:.3g}" for g in goals if g.min_opening is not None))
    solve_config, solver = agent_solve_config(cfg, seed)
    memory, memory_path = None, cfg.agent.get("memory")
    if memory_path is not None:
        if agent != "puzzlebot":
            raise ValueError(f"agent.memory is puzzlebot's (agent={agent} carries nothing across puzzles)")
        from functools import partial

        from puzzlebot.agent.memory import FamilyMemory

        memory = FamilyMemory.open(memory_path)
        session = replace(session, probe=memory.probe_config(session.probe))
        solver = partial(solver, memory=memory)
        console.print(f"family memory {memory_path}: {len(memory.puzzles)} puzzle(s) learned so far")
    with console.status("exploring and solving through the driver (lockstep emulator)..."):
        result = run_solve(emulator, marker_sheet(spec), goals, out_dir, session, solve_config, solver)
    outcome = result.outcome
    if memory is not None:
        memory.learn(spec.name, outcome.beliefs, outcome.views, outcome.interactions, result.model)
        memory.save(memory_path)
    for i, step in enumerate(outcome.steps):
        mark = {True: "[green]moved[/]", False: "[red]stayed[/]", None: "[yellow]not engaged[/]"}[step["moved"]]
        console.print(f"  {i + 1}. {step['direction']} {step['part']}: {mark}  ({step['why']})")
    closeup = out_dir / "episode" / "closeup.mp4"  # the episode log's own video of the close-up camera
    if cfg.experiment.video and closeup.exists():
        shutil.copyfile(closeup, out_dir / "solve.mp4")
    metrics = {
        "puzzle": spec.name, "agent": agent, "robot": "gripper", "seed": seed,
        "solved": result.solved, "believed_solved": outcome.believed_solved, "attempts": len(outcome.attempts),
        "robot_time_s": outcome.robot_time_s, "compute_s": outcome.decide_s + result.fit_s,
        "wall_s": result.wall_s, "reason": outcome.reason,
    }
    _atomic_json(out_dir / "metrics.json", metrics)
    _log_wandb(cfg, metrics, out_dir)
    colour = "green" if result.solved else "red"
    console.print(f"[{colour}]solved on the emulator={result.solved}[/] (agent believes {outcome.believed_solved}: "
                  f"{outcome.reason}) in {len(outcome.attempts)} probes, {outcome.robot_time_s:.0f} s robot time, "
                  f"{metrics['compute_s']:.1f} s compute -> {out_dir}")
    return metrics


def agent_solve_config(cfg: DictConfig, seed: int):
    """The solve loop's config and the solver for an emulator agent (`agent.agents.solve_setup`):
    `random` draws its moves uniformly, `nominal` never updates its prior beliefs, `ppo` learns
    a policy on the puzzle, `puzzlebot` is the agent."""
    from puzzlebot.agent.agents import solve_setup

    ppo = OmegaConf.to_container(cfg.agent.ppo) if cfg.agent.get("ppo") is not None else None
    if ppo is not None and "hidden" in ppo:
        ppo["hidden"] = tuple(ppo["hidden"])
    return solve_setup(str(cfg.agent.name), seed, int(cfg.agent.max_attempts), float(cfg.agent.max_robot_s), ppo)


class _VideoRecorder:
    """Writes frames from one camera to an mp4 while the oracle acts."""

    def __init__(self, world, experiment: DictConfig, out_dir: Path):
        import cv2
        import mujoco

        from puzzlebot.sim.skills import SkillConfig

        height, width = experiment.video_size
        self.world = world
        self.renderer = mujoco.Renderer(world.model, int(height), int(width))
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self.camera = str(experiment.video_camera)
        dt = world.model.opt.timestep
        substeps = SkillConfig().control_substeps  # the skills call back once per control step
        self.every = max(1, int(round(1.0 / (experiment.video_fps * dt * substeps))))
        self.count = 0
        self.path = out_dir / "solve.mp4"
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), float(experiment.video_fps),
                                      (int(width), int(height)))

    def capture(self, world) -> None:
        import cv2

        self.count += 1
        if self.count % self.every:
            return
        self.renderer.update_scene(world.data, camera=self.camera)
        self.writer.write(cv2.cvtColor(self.renderer.render(), cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.writer.release()
        self.renderer.close()


def _log_wandb(cfg: DictConfig, metrics: dict[str, Any], out_dir: Path) -> None:
    mode = str(cfg.experiment.wandb)
    if mode == "disabled":
        return
    import wandb

    # The previous job's run is finished below, so jobs sharing a process (the basic and joblib
    # launchers) each start a fresh run without `reinit`.
    run = wandb.init(project="puzzlebot", mode=mode, dir=str(out_dir), config=OmegaConf.to_container(cfg))
    run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float, bool))})
    run.finish()


register_schema()
if not OmegaConf.has_resolver("stem"):
    OmegaConf.register_new_resolver("stem", lambda path: Path(str(path)).stem)


@hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="config")
def _main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    run(cfg, Path(HydraConfig.get().runtime.output_dir))


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
