"""Control-loop rate through the driver layer (safety layer + reality emulator) vs a raw MuJoCo loop.

Writes benchmarks/results/driver_loop.json and .md, measured in one run on this machine:
- `loop_hz`: read_state -> safety filter -> send cycles per second through `Driver` with the
  emulator in its own process, not paced to the wall clock (`realtime=False`), so the number
  is what the layer costs, not the emulator's 100 Hz schedule;
- `raw_hz`: the same control period simulated in-process on the same puzzle and arm with
  plain `mj_step` (joint targets written straight to the actuators), no safety, no process;
- `safety_us_per_command`: `SafetyLayer.filter` alone, per joint command.

    python benchmarks/driver_loop.py [--cycles 600]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from puzzlebot.real.driver import Driver  # noqa: E402
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig  # noqa: E402
from puzzlebot.real.interface import Command, ControlMode  # noqa: E402
from puzzlebot.real.safety import SafetyConfig, SafetyLayer  # noqa: E402
from puzzlebot.sim.external import load_puzzle  # noqa: E402
from puzzlebot.sim.world import PuzzleWorld, WorldConfig  # noqa: E402

PUZZLE = Path(__file__).resolve().parents[1] / "puzzlebot" / "assets" / "puzzles" / "bolt_drawer.yaml"
RESULTS = Path(__file__).resolve().parent / "results"
CONTROL_HZ = 100.0


def wiggle(start: np.ndarray, i: int) -> np.ndarray:
    target = start.copy()
    target[:3] += 0.03 * np.sin(i * 0.05)
    return target


def driver_loop(cycles: int) -> float:
    backend = EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, control_hz=CONTROL_HZ, realtime=False, cameras=()))
    with Driver(backend, SafetyConfig()) as driver:
        driver.activate()
        start = driver.read_state().joint_positions.copy()
        for i in range(20):  # warm-up
            driver.read_state()
            driver.send(Command(ControlMode.JOINT, wiggle(start, i)))
        t0 = time.perf_counter()
        for i in range(cycles):
            driver.read_state()
            driver.send(Command(ControlMode.JOINT, wiggle(start, i)))
        return cycles / (time.perf_counter() - t0)


def raw_loop(cycles: int) -> float:
    world = PuzzleWorld(load_puzzle(PUZZLE), WorldConfig(robot="jaco"))
    substeps = max(1, int(round(1.0 / (CONTROL_HZ * world.model.opt.timestep))))
    start = world.arm.joint_positions()
    t0 = time.perf_counter()
    for i in range(cycles):
        world.arm.set_joint_targets(wiggle(start, i))
        mujoco.mj_step(world.model, world.data, substeps)
        world.arm.joint_positions()
    return cycles / (time.perf_counter() - t0)


def safety_cost_us(commands: int = 20000) -> float:
    backend = EmulatorBackend(EmulatorConfig(puzzle=PUZZLE, control_hz=CONTROL_HZ, cameras=()))
    caps = backend.capabilities  # known before connect: no child process needed
    layer = SafetyLayer(caps, SafetyConfig(), backend.forward_kinematics)
    start = np.clip(np.zeros(caps.dof), caps.joint_lower + 0.1, caps.joint_upper - 0.1)
    layer.resync(start, 0.0)
    targets = [wiggle(start, i) for i in range(commands)]
    t0 = time.perf_counter()
    for i, target in enumerate(targets):
        layer.filter(Command(ControlMode.JOINT, target), (i + 1) / CONTROL_HZ)
    return (time.perf_counter() - t0) / commands * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=600)
    args = parser.parse_args()
    loop = max(driver_loop(args.cycles) for _ in range(2))
    raw = max(raw_loop(args.cycles) for _ in range(3))
    safety = min(safety_cost_us() for _ in range(3))
    results = {
        "loop_hz": loop, "raw_hz": raw, "safety_us_per_command": safety, "loop_over_raw": loop / raw,
        "control_hz_of_the_arm": CONTROL_HZ, "cycles": args.cycles,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "mujoco": mujoco.__version__},
    }
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / "driver_loop.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(RESULTS / "driver_loop.json")
    table = "\n".join([
        "# Driver loop", "",
        f"{os.cpu_count()} CPUs, MuJoCo {mujoco.__version__}; bolt_drawer with the Jaco arm, {args.cycles} cycles; "
        f"one control period = {1000 / CONTROL_HZ:.0f} ms of simulated time.", "",
        "| loop | cycles/s |", "|---|---|",
        f"| driver (safety layer + emulator process, not paced) | {loop:.0f} |",
        f"| raw MuJoCo in-process (same period, no safety) | {raw:.0f} |",
        "", f"Safety layer: {safety:.1f} µs per joint command "
        f"({safety / (1e6 / CONTROL_HZ) * 100:.2f} % of a {1000 / CONTROL_HZ:.0f} ms control period).", "",
    ])
    (RESULTS / "driver_loop.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
