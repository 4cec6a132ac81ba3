"""Sessions on an arm: connect, then explore and fit (model building) or solve, and save.

The arm is the reality emulator by default (hardware takes the same path through the
`Driver`); the agent gets the puzzle's printed marker sheet, the cameras' calibration and, to
solve, the task (which part to open how far), and nothing else about the puzzle. The run
folder receives the fitted model (MJCF + posterior + lock graph), the exploration or solve
log, and the driver's episode log. A solve is scored on the world: the emulator reports where
the episode left its puzzle once it is over (never to the agent).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from puzzlebot.agent.affordances import MarkerSheet, TaskGoal
from puzzlebot.agent.explorer import Exploration, ExplorerConfig, explore
from puzzlebot.agent.fitted_model import FittedModel
from puzzlebot.agent.model_building import build_model, fit_model
from puzzlebot.agent.perception.registration import camera_poses
from puzzlebot.agent.probing import Interaction, ProbeConfig, Prober
from puzzlebot.agent.robot_io import RobotIO
from puzzlebot.agent.solve import SolveConfig, SolveOutcome, solve
from puzzlebot.files import write_text_atomic
from puzzlebot.real.driver import Driver
from puzzlebot.real.emulator import EmulatorBackend
from puzzlebot.real.recording import EpisodeWriter
from puzzlebot.real.safety import SafetyConfig
from puzzlebot.sim.robots.gripper import GripperController

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionConfig:
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    cameras: tuple[str, ...] = ("closeup", "top")  # part markers big enough: the front face, and lids
    settle_s: float = 0.5  # s of watching before the first probe (base registration)
    record_episode: bool = True  # the driver's full log (states, commands, frames) in the run folder


@dataclass
class SessionResult:
    exploration: Exploration
    model: FittedModel
    explore_wall_s: float
    fit_s: float  # compute spent building the model
    gap: dict[str, Any] | None  # the emulator's hidden gap, readable only after the episode (scoring)
    unseen: list[str] = field(default_factory=list)  # parts the cameras never showed: not modelled


@dataclass
class _Connected:
    """A live session: the arm and cameras through the driver, the parts the cameras see."""

    io: RobotIO
    prober: Prober
    seen: list[str]
    unseen: list[str]


@contextlib.contextmanager
def connected(emulator: EmulatorBackend, sheet: MarkerSheet, out_dir: Path, config: SessionConfig,
               gap_out: dict[str, Any]) -> Iterator[_Connected]:
    """Connect through the driver (recording the episode), locate the base, list the seen parts;
    on the way out, fill `gap_out` with the emulator's report (hidden gap, final state: scoring only)."""
    if emulator.config.robot != "gripper":
        raise NotImplementedError("the prober drives the floating gripper only so far; the Jaco's hand "
                                  "geometry is not wired into it yet")
    missing = [c for c in config.cameras if c not in emulator.config.cameras]
    if missing:
        raise ValueError(f"SessionConfig.cameras: {missing} not served by the emulator ({emulator.config.cameras})")
    out_dir.mkdir(parents=True, exist_ok=True)
    recorder = EpisodeWriter(out_dir / "episode", {"session": _jsonable(asdict(config))},
                             emulator.capabilities) if config.record_episode else None
    clock = emulator.clock if hasattr(emulator, "clock") else time.monotonic
    driver = Driver(emulator, SafetyConfig(), recorder=recorder, clock=clock)
    gap = None
    try:
        with driver:
            driver.activate()
            cameras = [emulator.camera(name) for name in config.cameras]
            for camera in cameras:
                camera.connect()
            io = RobotIO(driver, cameras, sheet, camera_poses(config.cameras), config.probe.max_frame_age)
            io.hold(config.settle_s)
            if io.T_world_base is None:
                raise RuntimeError(f"the base marker was not seen by {config.cameras} in {config.settle_s} s: "
                                   "cannot locate the puzzle")
            prober = Prober(io, GripperController.hand, config.probe)
            unseen = sorted(part for part in sheet.affordances if not io.tracker.tracks[part].times)
            if unseen:  # the hand itself may hide them: look again from other parks
                unseen = sorted(prober.find_park(unseen))
            seen = [part for part in sheet.affordances if part not in unseen]
            if not seen:
                raise RuntimeError(f"no part marker was seen by {config.cameras}: nothing to explore")
            if unseen:
                note = (f"parts {unseen} were never seen by {config.cameras}: they are left out of the "
                        "exploration and the model")
                log.warning(note)
                if recorder is not None:
                    recorder.log_event("unseen_parts", parts=unseen, note=note)
            yield _Connected(io, prober, seen, unseen)
        gap = emulator.episode_gap()
        gap_out.update(gap)
    finally:
        if recorder is not None:
            recorder.close(gap=gap)


def run_session(emulator: EmulatorBackend, sheet: MarkerSheet, out_dir: Path, config: SessionConfig = SessionConfig(),
                on_probe: Callable[[Interaction], None] | None = None) -> SessionResult:
    """Explore the emulator's puzzle through the driver and fit its model into `out_dir`."""
    t0 = time.monotonic()
    gap: dict[str, Any] = {}
    with connected(emulator, sheet, out_dir, config, gap) as live:
        exploration = explore(live.prober, live.seen, config.explorer, on_probe)
    explore_wall = time.monotonic() - t0
    tic = time.perf_counter()
    model = build_model(exploration, live.io.tracker.tracks, sheet, live.io.T_world_base)
    fit_s = time.perf_counter() - tic
    model.save(out_dir)
    write_text_atomic(out_dir / "exploration.json",
                      json.dumps({**exploration_log(exploration), "unseen_parts": live.unseen}, indent=1))
    return SessionResult(exploration, model, explore_wall, fit_s, gap or None, live.unseen)


@dataclass
class SolveResult:
    """A solve on the emulator: what the agent did and believes, and the world's verdict."""

    outcome: SolveOutcome
    model: FittedModel
    solved: bool  # on the world (the emulator's final state), never the agent's belief
    final_positions: dict[str, float]  # the world's joints at the end (scoring only)
    wall_s: float
    fit_s: float
    gap: dict[str, Any]
    unseen: list[str] = field(default_factory=list)


def run_solve(emulator: EmulatorBackend, sheet: MarkerSheet, goals: list[TaskGoal], out_dir: Path,
              config: SessionConfig = SessionConfig(), solve_config: SolveConfig = SolveConfig(),
              solver: Callable[..., SolveOutcome] = solve) -> SolveResult:
    """Solve the emulator's puzzle through the driver (with `solver`: the solve loop, or a
    baseline's, see `agent.agents`), fit its model, and score on the world."""
    t0 = time.monotonic()
    gap: dict[str, Any] = {}
    with connected(emulator, sheet, out_dir, config, gap) as live:
        outcome = solver(live.prober, live.seen, goals, solve_config)
    wall = time.monotonic() - t0
    tic = time.perf_counter()
    model = fit_model(outcome.beliefs, outcome.interactions, live.io.tracker.tracks, sheet, live.io.T_world_base,
                      previous=outcome.model)
    fit_s = time.perf_counter() - tic
    model.save(out_dir)
    final = gap["final"]
    result = SolveResult(outcome, model, bool(final["goal_reached"]), dict(final["part_positions"]), wall, fit_s,
                         gap, live.unseen)
    write_text_atomic(out_dir / "solve.json", json.dumps(solve_log(result), indent=1))
    return result


def solve_log(result: SolveResult) -> dict[str, Any]:
    """A solve's steps, beliefs and verdicts, JSON-friendly."""
    outcome = result.outcome
    return {"solved_on_world": result.solved, "believed_solved": outcome.believed_solved, "reason": outcome.reason,
            "attempts": len(outcome.attempts), "robot_time_s": outcome.robot_time_s,
            "robot_s_by_activity": outcome.robot_s_by_activity, "decide_s": outcome.decide_s,
            "fit_s": result.fit_s, "wall_s": result.wall_s, "goal_openings_estimated": outcome.openings,
            "final_part_positions_on_world": result.final_positions, "unseen_parts": result.unseen,
            "lock_graph": {p: sorted(b) for p, b in outcome.beliefs.map_graph().items()},
            "steps": outcome.steps,
            "mpc_paced_moves": outcome.mpc,
            "interactions": [{"part": i.part, "direction": i.direction, "moved": i.moved, "contact": i.contact,
                              "travel_m": i.travel} for i in outcome.interactions]}


def exploration_log(exploration: Exploration) -> dict[str, Any]:
    """The probes and their outcomes, JSON-friendly."""
    return {"probes": exploration.probes, "lock_probes": exploration.lock_probes,
            "confident": exploration.result.confident, "robot_time_s": exploration.robot_time_s,
            "decide_s": exploration.decide_s,
            "lock_graph": {p: sorted(b) for p, b in exploration.result.graph.items()},
            "attempts": [{"part": a.part, "direction": a.direction, "moved": a.moved,
                          "displaced": sorted(a.displaced)} for a in exploration.result.attempts],
            "interactions": [{"part": i.part, "direction": i.direction, "moved": i.moved, "contact": i.contact,
                              "travel_m": i.travel, "directions_tried": len(i.tried), "samples": len(i.times)}
                             for i in exploration.interactions]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
