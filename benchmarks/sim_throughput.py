"""Simulation throughput: what `LockboxEnv.step` costs over raw `mujoco.mj_step`, and render rates.

Method (all in one process, on the same compiled model and data):
  1. Reset the env with a fixed seed and run N env steps with fixed random actions, recording
     the controls the env wrote (`ctrl`, mocap pose) at each step.
  2. Time the env: reset with the same seed, run the same N steps (no cameras: the fast path).
  3. Time the baseline: restore the reset state and call `mj_step(model, data)` N x substeps
     times in a Python loop, writing the recorded controls every `substeps` calls. The final
     `qpos` must equal the env's bit for bit, so both did exactly the same physics.
  Each timing is the best of several repeats after a warm-up. The overhead is
  (env time per physics step) / (raw mj_step time per call); the target is <= 1.3.

Run: `python benchmarks/sim_throughput.py` (well under a minute); writes
`benchmarks/results/sim_throughput.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco picks a GL backend

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

import puzzlebot.sim  # noqa: E402, F401  (registers the env ids)
from puzzlebot.sim.env import EnvConfig, LockboxEnv  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TARGET = 1.3  # the bound on env overhead over raw mj_step
CASES = {  # label -> registered id; cameras=() everywhere
    "gripper (ee)": "puzzlebot/Lockbox-v0",
    "jaco (ee)": "puzzlebot/LockboxJaco-v0",
    "jaco (joint)": "puzzlebot/LockboxJacoJoint-v0",
}
DEFAULT_CASE = "gripper (ee)"


def _best(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls of `fn` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def step_overhead(env_id: str, n_steps: int, repeats: int) -> dict[str, float]:
    """Time env.step (gymnasium.make'd and unwrapped) against raw mj_step on the same physics."""
    env = gym.make(env_id, cameras=())
    lockbox: LockboxEnv = env.unwrapped
    model, data, substeps = lockbox.model, lockbox.data, lockbox.config.control_substeps
    actions = np.random.default_rng(0).uniform(-1, 1, (n_steps, 7)).astype(np.float32)

    # 1. Record the controls the env writes and the state it starts from.
    env.reset(seed=0)
    kind = mujoco.mjtState.mjSTATE_INTEGRATION
    start = np.empty(mujoco.mj_stateSize(model, kind))
    mujoco.mj_getState(model, data, start, kind)
    ctrl = np.empty((n_steps, model.nu))
    mocap_pos, mocap_quat = np.empty((n_steps, model.nmocap, 3)), np.empty((n_steps, model.nmocap, 4))
    for i, action in enumerate(actions):
        env.step(action)
        ctrl[i], mocap_pos[i], mocap_quat[i] = data.ctrl, data.mocap_pos, data.mocap_quat
    env_qpos = data.qpos.copy()

    def time_env(target: gym.Env) -> float:
        target.reset(seed=0)  # not timed
        start_time = time.perf_counter()
        for action in actions:
            target.step(action)
        return time.perf_counter() - start_time

    def time_raw() -> float:
        mujoco.mj_setState(model, data, start, kind)
        start_time = time.perf_counter()
        for i in range(n_steps):
            data.ctrl[:], data.mocap_pos[:], data.mocap_quat[:] = ctrl[i], mocap_pos[i], mocap_quat[i]
            for _ in range(substeps):
                mujoco.mj_step(model, data)
        elapsed = time.perf_counter() - start_time
        if not np.array_equal(data.qpos, env_qpos):
            raise RuntimeError(f"{env_id}: raw replay diverged from the env; the comparison would be unfair")
        return elapsed

    # 2.-3. Interleaved, so that all three see the same machine conditions; round 0 warms up.
    best = {"make": np.inf, "unwrapped": np.inf, "raw": np.inf}
    for round_ in range(repeats + 1):
        times = {"make": time_env(env), "unwrapped": time_env(lockbox), "raw": time_raw()}
        if round_:
            best = {key: min(best[key], times[key]) for key in best}
    made, unwrapped, raw = best["make"], best["unwrapped"], best["raw"]
    env.close()
    n_physics = n_steps * substeps
    return {
        "raw_mj_step_us": 1e6 * raw / n_physics,
        "raw_mj_step_steps_per_s": n_physics / raw,
        "env_step_us": 1e6 * made / n_steps,
        "env_steps_per_s": n_steps / made,
        "env_us_per_physics_step": 1e6 * made / n_physics,
        "overhead_vs_mj_step": made / raw,
        "overhead_unwrapped_vs_mj_step": unwrapped / raw,
    }


def render_rates(frames: int, repeats: int) -> dict[str, float]:
    """Frames/s of one camera: observation images (96x128) and `render()` (480x640)."""
    obs_env = LockboxEnv(EnvConfig(cameras=("front",), image_size=(96, 128)))
    obs_env.reset(seed=0)
    big_env = LockboxEnv(EnvConfig(cameras=(), render_size=(480, 640)), render_mode="rgb_array")
    big_env.reset(seed=0)

    def observe() -> None:
        for _ in range(frames):
            obs_env.observation()

    def render() -> None:
        for _ in range(frames):
            big_env.render()

    rates = {"fps_96x128": frames / _best(observe, repeats), "fps_480x640": frames / _best(render, repeats)}
    obs_env.close()
    big_env.close()
    return rates


def machine() -> dict[str, object]:
    return {
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mujoco": mujoco.__version__,
        "numpy": np.__version__,
        "gymnasium": gym.__version__,
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
    }


def to_markdown(result: dict) -> str:
    rows = [
        "# Simulation throughput",
        "",
        f"Machine: {result['machine']['cpu_count']} CPUs ({result['machine']['processor']}), "
        f"MuJoCo {result['machine']['mujoco']}, GL backend {result['machine']['mujoco_gl']}. "
        f"{result['n_steps']} env steps x {result['control_substeps']} substeps of {result['timestep']} s, "
        f"best of {result['repeats']} repeats.",
        "",
        f"**env_overhead_vs_mj_step ({DEFAULT_CASE}, gymnasium.make): "
        f"{result['env_overhead_vs_mj_step']:.3f}** (target <= {TARGET})",
        "",
        "| env | raw mj_step µs/call | raw mj_step steps/s | env step µs | env µs / physics step "
        "| overhead (make) | overhead (unwrapped) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in result["robots"].items():
        rows.append(f"| {label} | {r['raw_mj_step_us']:.2f} | {r['raw_mj_step_steps_per_s']:,.0f} "
                    f"| {r['env_step_us']:.1f} | {r['env_us_per_physics_step']:.2f} "
                    f"| {r['overhead_vs_mj_step']:.3f} | {r['overhead_unwrapped_vs_mj_step']:.3f} |")
    render = result["render"]
    rows += ["", "| render, one camera, no shadows/reflections | frames/s |", "|---|---|",
             f"| 96x128 (observation) | {render['fps_96x128']:.1f} |",
             f"| 480x640 (`render()`) | {render['fps_480x640']:.1f} |", ""]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="env steps per timed run (< the 500-step limit)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats; the best is kept")
    parser.add_argument("--frames", type=int, default=20, help="frames per render timing")
    args = parser.parse_args()
    robots = {label: step_overhead(env_id, args.steps, args.repeats) for label, env_id in CASES.items()}
    config = EnvConfig()
    result = {
        "machine": machine(),
        "n_steps": args.steps,
        "repeats": args.repeats,
        "control_substeps": config.control_substeps,
        "timestep": config.timestep,
        "env_overhead_vs_mj_step": robots[DEFAULT_CASE]["overhead_vs_mj_step"],
        "env_overhead_target": TARGET,
        "robots": robots,
        "render": render_rates(args.frames, max(3, args.repeats // 2)),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sim_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "sim_throughput.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
