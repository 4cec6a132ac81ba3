"""`LockboxEnv`: the gymnasium face of a `PuzzleWorld` (one puzzle, one robot).

The model is compiled once; each reset moves the puzzle's base body in the compiled model
(placement jitter drawn from `self.np_random`) and resets the state. Agents see proprioception
and camera images; the ground-truth part joint values appear only under the key
"privileged", and only when asked for. Time limits are left to gymnasium's `TimeLimit`
(see `puzzlebot.sim.registry`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from puzzlebot.sim.build import Placement
from puzzlebot.sim.external import ExternalPuzzleSpec, load_puzzle
from puzzlebot.sim.spec import PuzzleSpec
from puzzlebot.sim.world import PuzzleWorld, WorldConfig

ROBOTS = ("gripper", "jaco")
CONTROLS = ("ee", "joint")


def default_puzzle() -> Path:
    """The shipped first lockbox, found inside the installed package."""
    return Path(str(resources.files("puzzlebot") / "assets" / "puzzles" / "bolt_drawer.yaml"))


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines a `LockboxEnv`; each default says why it is what it is."""

    puzzle: PuzzleSpec | ExternalPuzzleSpec | str | Path = field(default_factory=default_puzzle)
    """A PuzzleSpec, an MJCF puzzle, or the path of either's YAML file."""
    robot: str = "gripper"
    """'gripper' (floating parallel gripper) or 'jaco' (Kinova Jaco arm + hand)."""
    control: str = "ee"
    """'ee' (TCP deltas + grip) or 'joint' (normalized arm joint targets + grip; jaco only)."""
    control_substeps: int = 20
    """Physics steps per env step: 20 x 2 ms = 40 ms, a 25 Hz controller (as in test_jaco.py)."""
    timestep: float = 0.002
    """Physics timestep, s (NOTES.md: the settings the grasping checks were done with)."""
    cameras: tuple[str, ...] = ("front",)
    """World cameras rendered into observations ('front', 'top', 'side', 'closeup'); () renders nothing."""
    image_size: tuple[int, int] = (96, 128)
    """Observation image height and width, px."""
    render_size: tuple[int, int] = (480, 640)
    """`render()` image height and width, px (the scene's offscreen buffer is 640x480)."""
    privileged: bool = False
    """Add the ground-truth part joint values under the observation key 'privileged'."""
    placement: Placement = Placement()
    """Nominal puzzle placement; the jitter below is drawn around it at every reset."""
    jitter_pos: float = 0.02
    """Half-width of the uniform placement jitter in x and y, m."""
    jitter_yaw: float = 0.05
    """Half-width of the uniform placement jitter in yaw, rad."""
    max_translation: float = 0.01
    """TCP target change per step and axis at action 1, m (0.25 m/s at 25 Hz; NOTES.md: 0.1-0.5 m/s)."""
    max_rotation: float = 0.05
    """TCP target rotation per step and axis at action 1, rad."""
    max_lead: float = 0.03
    """How far the commanded TCP may lead the measured one per axis, m: a blocked robot must
    not wind up an ever larger pull on the puzzle."""
    workspace_low: tuple[float, float, float] = (-0.45, -0.30, 0.01)
    """Lower corner of the box the TCP target is clipped to, world frame, m (chosen here: the
    0.30 x 0.40 x 0.25 m base, placement jitter and a drawer pulled 15 cm out fit inside)."""
    workspace_high: tuple[float, float, float] = (0.20, 0.30, 0.55)
    """Upper corner of the TCP workspace box, m."""
    unlimited_joint_span: float = np.pi
    """Joint control: endless Jaco joints map action [-1, 1] to home -+ this, rad."""
    progress_weight: float = 1.0
    """Reward per step per unit of `PuzzleWorld.goal_progress()` (dense term)."""
    success_bonus: float = 10.0
    """Reward on the step the goal holds (the episode then terminates)."""

    def __post_init__(self) -> None:
        if self.robot not in ROBOTS:
            raise ValueError(f"EnvConfig.robot: {self.robot!r} is not one of {ROBOTS}")
        if self.control not in CONTROLS:
            raise ValueError(f"EnvConfig.control: {self.control!r} is not one of {CONTROLS}")
        if self.control == "joint" and self.robot == "gripper":
            raise ValueError("EnvConfig.control: 'joint' needs an arm; the floating gripper has no arm joints "
                             "(use robot='jaco', or control='ee')")
        if self.control_substeps < 1:
            raise ValueError(f"EnvConfig.control_substeps: {self.control_substeps} must be >= 1")


class LockboxEnv(gym.Env):
    """Open a lockbox with a simulated robot; reward = dense goal progress + success bonus.

    Actions, 7 numbers in [-1, 1]: "ee" = TCP target deltas (x, y, z, then a rotation vector,
    world frame, scaled per axis by `max_translation` / `max_rotation`) and grip (-1 open,
    +1 closed); "joint" = 6 Jaco joint targets (see `_joint_action_range`) and grip.
    Observations: "proprio" = TCP position (3), TCP quaternion wxyz (4), grip closure (1),
    then for the Jaco arm joint positions (6) and velocities (6); "images" = one uint8 HxWx3
    per configured camera; "privileged" (only if configured) = part joint values.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, config: EnvConfig | None = None, render_mode: str | None = None, **overrides: Any):
        """Build the world once.

        Args:
            config: the env's settings; None means `EnvConfig()`.
            render_mode: None or 'rgb_array' (`render()` returns the 'front' camera's image).
            **overrides: `EnvConfig` fields replacing those of `config` (what `gymnasium.make` passes).
        """
        cfg = dataclasses.replace(config or EnvConfig(), **overrides)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r} is not one of {self.metadata['render_modes']}")
        self.config, self.render_mode = cfg, render_mode
        self.metadata = {**self.metadata, "render_fps": round(1.0 / (cfg.timestep * cfg.control_substeps))}
        spec = cfg.puzzle if isinstance(cfg.puzzle, (PuzzleSpec, ExternalPuzzleSpec)) else load_puzzle(cfg.puzzle)
        self.world = PuzzleWorld(spec, WorldConfig(robot=cfg.robot, placement=cfg.placement, timestep=cfg.timestep))
        self.model, self.data, self.arm = self.world.model, self.world.data, self.world.arm
        self.placement = cfg.placement
        self._base = self.model.body("base")
        self._has_arm = cfg.robot != "gripper"
        for name in cfg.cameras:
            if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name) < 0:
                raise ValueError(f"EnvConfig.cameras: no camera {name!r} in the scene")
        self._low = np.array(cfg.workspace_low, dtype=float)
        self._high = np.array(cfg.workspace_high, dtype=float)
        self._target_pos, self._target_quat = np.zeros(3), np.array([1.0, 0, 0, 0])
        self._tcp_pos = np.zeros(3)
        self._dquat, self._quat = np.zeros(4), np.zeros(4)
        if cfg.control == "joint":
            self._joint_lo, self._joint_hi = self._joint_action_range()
        self.action_space = spaces.Box(-1.0, 1.0, (7,), dtype=np.float32)
        self.observation_space = self._observation_space()
        self._obs_renderer = self._make_renderer(cfg.image_size) if cfg.cameras else None
        self._render_renderer: mujoco.Renderer | None = None

    # ----------------------------------------------------------------------------- pickling

    _STATE_FIELDS = ("qpos", "qvel", "act", "ctrl", "qacc_warmstart", "mocap_pos", "mocap_quat")

    def __getstate__(self) -> dict[str, Any]:
        """Config plus the simulation state: MuJoCo objects and renderers are rebuilt, not copied."""
        return {
            "config": self.config, "render_mode": self.render_mode, "placement": self.placement,
            "time": float(self.data.time), "np_random": self.np_random,
            "data": {f: getattr(self.data, f).copy() for f in self._STATE_FIELDS},
            "target": (self._target_pos.copy(), self._target_quat.copy()),
            "controller": self.arm.controller_state(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["render_mode"])
        self.placement = state["placement"]
        self._base.pos[:] = (*self.placement.pos, 0.0)
        self._base.quat[:] = self.placement.quat()
        for field_name, value in state["data"].items():
            getattr(self.data, field_name)[:] = value
        self.data.time = state["time"]
        mujoco.mj_forward(self.model, self.data)
        self._target_pos, self._target_quat = (v.copy() for v in state["target"])
        self.np_random = state["np_random"]
        self.arm.restore_controller_state(state["controller"])  # e.g. the Jaco's IK warm start
        self._tcp_pos = self.arm.tcp_pose()[0]  # what the last observation measured

    # ----------------------------------------------------------------------------- spaces

    def _joint_action_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint targets at action -1 and +1: the range where limited, home -+ span where endless."""
        joints = [self.model.joint(n) for n in self.arm.joint_names]
        home = self.arm.joint_positions()  # PuzzleWorld.__init__ left the arm at home
        limited = np.array([bool(j.limited[0]) for j in joints])
        rng = np.array([j.range for j in joints])
        span = self.config.unlimited_joint_span
        return np.where(limited, rng[:, 0], home - span), np.where(limited, rng[:, 1], home + span)

    def _observation_space(self) -> spaces.Dict:
        cfg = self.config
        n_proprio = 3 + 4 + 1 + (2 * len(self.arm.joint_names) if self._has_arm else 0)
        obs = {"proprio": spaces.Box(-np.inf, np.inf, (n_proprio,), dtype=np.float64)}
        if cfg.cameras:
            shape = (*cfg.image_size, 3)
            obs["images"] = spaces.Dict({c: spaces.Box(0, 255, shape, dtype=np.uint8) for c in cfg.cameras})
        if cfg.privileged:
            obs["privileged"] = spaces.Box(-np.inf, np.inf, (len(self.world.part_names),), dtype=np.float64)
        return spaces.Dict(obs)

    def _make_renderer(self, size: tuple[int, int]) -> mujoco.Renderer:
        """A renderer without shadows and reflections (NOTES.md: 160 ms -> 27 ms per 480x640 frame)."""
        renderer = mujoco.Renderer(self.model, *size)
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return renderer

    # --------------------------------------------------------------------------- gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Place the puzzle (nominal + jitter, or `options['placement']`), home the robot.

        Args:
            seed: seeds `self.np_random`, the only source of randomness.
            options: {'placement': Placement} puts the puzzle exactly there, without jitter.
        """
        super().reset(seed=seed)
        cfg = self.config
        if options and "placement" in options:
            self.placement = options["placement"]
        else:
            dx, dy = self.np_random.uniform(-cfg.jitter_pos, cfg.jitter_pos, size=2)
            dyaw = self.np_random.uniform(-cfg.jitter_yaw, cfg.jitter_yaw)
            nominal = cfg.placement
            self.placement = Placement((nominal.pos[0] + dx, nominal.pos[1] + dy), nominal.yaw + dyaw)
        self._base.pos[:] = (*self.placement.pos, 0.0)
        self._base.quat[:] = self.placement.quat()
        self.world.reset()  # mj_resetData, robot home, mj_forward: sees the moved base
        self._target_pos, self._target_quat = self.arm.tcp_pose()
        # The drawn placement is hidden ground truth: reported only to privileged runs.
        return self.observation(), ({"privileged": {"placement": self.placement}} if cfg.privileged else {})

    def step(self, action: np.ndarray):
        """Apply one action for `control_substeps` physics steps.

        Raises:
            FloatingPointError: the physics diverged (from `PuzzleWorld.step`).
        """
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (7,):
            raise ValueError(f"action has shape {a.shape}, expected (7,)")
        a = np.minimum(np.maximum(a, -1.0), 1.0)  # np.clip costs more on 7 numbers
        if self.config.control == "ee":
            self._command_tcp(a)
        else:
            self.arm.set_joint_targets(self._joint_lo + 0.5 * (a[:6] + 1.0) * (self._joint_hi - self._joint_lo))
        self.arm.set_grip(0.5 * (a[6] + 1.0))
        self.world.step(self.config.control_substeps)
        obs = self.observation()
        progress, success = self.world.measure_goal()
        terms = {"progress": self.config.progress_weight * progress,
                 "success": self.config.success_bonus if success else 0.0}
        # Reward and success are the task's signal (computed from the true state, as any RL
        # env's); the raw goal progress is ground truth and only privileged runs see it.
        info = {"reward_terms": terms, "is_success": success}
        if self.config.privileged:
            info["privileged"] = {"goal_progress": progress}
        return obs, terms["progress"] + terms["success"], success, False, info

    def _command_tcp(self, a: np.ndarray) -> None:
        """Move the commanded TCP by the action (world frame) and hand it to the robot.

        In-place MuJoCo and numpy calls on preallocated arrays: this runs every step, and
        allocating versions cost a tenth of the physics time of a step.
        """
        cfg, pos, quat = self.config, self._target_pos, self._target_quat
        mujoco.mju_addToScl(pos, a[:3], cfg.max_translation)
        # The target stays in the workspace box and within max_lead of the measured TCP.
        lo, hi = self._tcp_pos - cfg.max_lead, self._tcp_pos + cfg.max_lead
        np.maximum(lo, self._low, out=lo)
        np.minimum(hi, self._high, out=hi)
        np.maximum(pos, lo, out=pos)
        np.minimum(pos, hi, out=pos)
        dquat = self._dquat
        dquat[:] = (1.0, 0.0, 0.0, 0.0)
        mujoco.mju_quatIntegrate(dquat, a[3:6], cfg.max_rotation)  # exp(rotation vector)
        mujoco.mju_mulQuat(self._quat, dquat, quat)  # left product: a world-frame rotation
        mujoco.mju_normalize4(self._quat)
        self._target_quat, self._quat = self._quat, quat
        self.arm.set_tcp_target(pos, self._target_quat)

    def observation(self) -> dict[str, Any]:
        """The observation of the current state (wrappers that change the model call this)."""
        pos, quat = self.arm.tcp_pose()
        self._tcp_pos = pos
        if self._has_arm:
            proprio = np.concatenate([pos, quat, (self.arm.grip(),), self.arm.joint_positions(),
                                      self.arm.joint_velocities()])
        else:
            proprio = np.concatenate([pos, quat, (self.arm.grip(),)])
        obs: dict[str, Any] = {"proprio": proprio}
        if self._obs_renderer is not None:
            obs["images"] = {name: self._render(self._obs_renderer, name) for name in self.config.cameras}
        if self.config.privileged:
            obs["privileged"] = self.world.part_positions()
        return obs

    def _render(self, renderer: mujoco.Renderer, camera: str) -> np.ndarray:
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()

    def render(self) -> np.ndarray | None:
        """An rgb image (render_size) from the 'front' camera; None unless render_mode='rgb_array'."""
        if self.render_mode != "rgb_array":
            return None
        if self._render_renderer is None:
            self._render_renderer = self._make_renderer(self.config.render_size)
        return self._render(self._render_renderer, "front")

    def close(self) -> None:
        """Free the renderers' GL contexts (OSMesa complains at exit otherwise, NOTES.md)."""
        for renderer in (self._obs_renderer, self._render_renderer):
            if renderer is not None:
                renderer.close()
        self._obs_renderer = self._render_renderer = None
