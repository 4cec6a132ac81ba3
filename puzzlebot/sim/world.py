"""A compiled puzzle + robot scene at run time: named access to parts, goal, and the robot.

`PuzzleWorld` is what the gymnasium env, the oracle's executor and the authoring tool share.
It reads part states by joint name (never raw indices) and is the *ground truth* of the
world: agents see it only through observations, or through the labelled privileged key.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from puzzlebot.sim.build import (
    DEFAULT_CAMERAS,
    CameraSpec,
    CompiledPuzzle,
    Placement,
    add_cameras,
    add_puzzle,
    lay_out,
    new_scene,
)
from puzzlebot.sim.external import PREFIX as EXTERNAL_PREFIX
from puzzlebot.sim.external import ExternalPuzzleSpec, add_external
from puzzlebot.sim.robots import make_robot
from puzzlebot.sim.robots.base import ArmController, Mount, RobotModel
from puzzlebot.sim.spec import PuzzleSpec


@dataclass(frozen=True)
class WorldConfig:
    """How to assemble a scene around a puzzle."""

    robot: str = "gripper"
    """'gripper' (floating parallel gripper) or 'jaco' (Kinova Jaco arm + hand)."""
    placement: Placement = Placement()
    mount: Mount | None = None
    """Robot base (floating gripper: home) pose; None takes the robot's own `default_mount`."""
    cameras: tuple[CameraSpec, ...] = DEFAULT_CAMERAS
    timestep: float = 0.002


_DIVERGENCE_WARNINGS = (int(mujoco.mjtWarning.mjWARN_BADQACC), int(mujoco.mjtWarning.mjWARN_BADQVEL),
                        int(mujoco.mjtWarning.mjWARN_BADQPOS))


class PuzzleWorld:
    """Model, data and named handles for one puzzle with one robot."""

    def __init__(self, spec: PuzzleSpec | ExternalPuzzleSpec, config: WorldConfig = WorldConfig(),
                 compiled: CompiledPuzzle | None = None):
        self.spec = spec
        self.config = config
        scene = new_scene(config.timestep)
        if isinstance(spec, ExternalPuzzleSpec):
            # An MJCF puzzle: its hinge/slide joints are the parts; no declared lock logic.
            self.compiled = None
            self.part_names = spec.joints
            self._joint_names = tuple(f"{EXTERNAL_PREFIX}{j}" for j in spec.joints)
            add_external(scene, spec, np.array([*config.placement.pos, 0.0]), config.placement.quat())
        else:
            self.compiled = compiled or lay_out(spec)
            self.part_names = tuple(p.name for p in spec.parts)
            self._joint_names = tuple(f"{n}/joint" for n in self.part_names)
            add_puzzle(scene, self.compiled, config.placement)
        self.robot: RobotModel = make_robot(config.robot)
        self.mount: Mount = config.mount or self.robot.default_mount
        self.robot.attach(scene, self.mount)
        add_cameras(scene, config.cameras)
        self.mjspec = scene
        self.model = scene.compile()
        self.data = mujoco.MjData(self.model)
        self.arm: ArmController = self.robot.bind(self.model, self.data)
        self._qpos = np.array([self.model.joint(j).qposadr[0] for j in self._joint_names])
        self._dof = np.array([self.model.joint(j).dofadr[0] for j in self._joint_names])
        self._goals = self._goal_table()
        self.reset()

    def joint_name(self, part: str) -> str:
        """The MuJoCo joint of a part (``P/joint``, or ``ext/<joint>`` for an MJCF puzzle)."""
        return self._joint_names[self.part_names.index(part)]

    def reset(self) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self.arm.reset(self.data)
        mujoco.mj_forward(self.model, self.data)

    def part_positions(self) -> np.ndarray:
        """Joint values of all parts, in `part_names` order (ground truth)."""
        return self.data.qpos[self._qpos].copy()

    def part_velocities(self) -> np.ndarray:
        return self.data.qvel[self._dof].copy()

    def part_position(self, name: str) -> float:
        return float(self.data.qpos[self._qpos[self.part_names.index(name)]])

    def part_state(self) -> dict[str, float]:
        return dict(zip(self.part_names, self.part_positions().tolist(), strict=True))

    def _goal_table(self) -> list[tuple[int, float, float, float, float, float, float]]:
        """Per goal condition: qpos address, bounds and spans, resolved once (env hot path)."""
        table = []
        for goal in self.spec.goal:
            joint = self.model.joint(self.joint_name(goal.part))
            lo, hi = (float(v) for v in joint.range)
            gmin = -np.inf if goal.min is None else float(goal.min)
            gmax = np.inf if goal.max is None else float(goal.max)
            table.append((int(joint.qposadr[0]), gmin, gmax, lo, max(gmin - lo, 1e-9), hi, max(hi - gmax, 1e-9)))
        return table

    def measure_goal(self) -> tuple[float, bool]:
        """Mean progress towards the goal conditions in [0, 1], and whether all of them hold.

        A condition that holds counts 1; otherwise, the fraction of the way from the joint's
        far limit to the condition's bound.
        """
        total, reached = 0.0, True
        qpos = self.data.qpos
        for adr, gmin, gmax, lo, below_span, hi, above_span in self._goals:
            q = float(qpos[adr])
            if gmin <= q <= gmax:
                total += 1.0
                continue
            reached = False
            if q < gmin:
                total += min(max((q - lo) / below_span, 0.0), 1.0)
            else:
                total += min(max((hi - q) / above_span, 0.0), 1.0)
        return total / len(self._goals), reached

    def goal_reached(self) -> bool:
        return self.measure_goal()[1]

    def goal_progress(self) -> float:
        return self.measure_goal()[0]

    def step(self, nstep: int = 1) -> None:
        """Advance physics; raise if MuJoCo had to reset a diverged state (it does so silently)."""
        warnings = self.data.warning
        before = sum(int(warnings[w].number) for w in _DIVERGENCE_WARNINGS)
        mujoco.mj_step(self.model, self.data, nstep)
        after = sum(int(warnings[w].number) for w in _DIVERGENCE_WARNINGS)
        if after > before or not np.all(np.isfinite(self.data.qpos)):
            raise FloatingPointError(f"physics diverged (MuJoCo reset a NaN/huge state) near t={self.data.time:.3f} s "
                                     f"in puzzle {self.spec.name!r}; check part masses and joint dynamics")
