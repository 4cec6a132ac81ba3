"""Domain randomization of a `LockboxEnv`'s compiled model, redrawn at every reset.

Nominal values are read once, at wrap time; each reset writes nominal x factor (or nominal +
offset), so values never drift however many resets run. Draws come from the env's
`np_random` (seeded by `reset(seed=...)`); the draw is hidden ground truth, kept as
`privileged_draw` and put in `info["privileged"]["randomization"]` only for privileged envs.
Every element is reached by name (`model.joint(name)`, `model.body(name)`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from puzzlebot.sim.env import LockboxEnv


@dataclass(frozen=True)
class RandomizationConfig:
    """Ranges drawn uniformly at each reset.

    Scale ranges are placeholders until system identification on a physical lockbox: wide
    enough that a policy cannot rely on the nominal values (dry friction of wooden slides
    easily halves or doubles with humidity and wear).
    """

    joint_friction: tuple[float, float] = (0.5, 2.0)
    """Factor on each part joint's dry friction (`frictionloss`)."""
    joint_damping: tuple[float, float] = (0.5, 2.0)
    """Factor on each part joint's viscous damping."""
    joint_armature: tuple[float, float] = (0.5, 2.0)
    """Factor on each part joint's armature (reflected guide inertia)."""
    part_mass: tuple[float, float] = (0.7, 1.5)
    """Factor on each part body's mass; its inertia scales with it (same shape, other density)."""
    light_intensity: tuple[float, float] = (0.6, 1.4)
    """Factor on each light's diffuse colour."""
    base_rgba: float = 0.08
    """Half-width of the offset added to each RGB channel of the base's colour (clipped to [0, 1])."""
    texture_tint: float = 0.25
    """Half-width of the factor offset on each RGB channel of every textured material except the
    markers' (the table's checker): a texture's look changes, its pattern stays."""
    camera_pos: float = 0.01
    """Half-width of the offset added to each camera position coordinate, m."""
    camera_angle: float = 0.02
    """Half-width of each component of a rotation vector applied to each camera, rad (camera frame)."""

    def __post_init__(self) -> None:
        for f in ("joint_friction", "joint_damping", "joint_armature", "part_mass", "light_intensity"):
            lo, hi = getattr(self, f)
            if not 0.0 < lo <= hi:
                raise ValueError(f"RandomizationConfig.{f}: ({lo}, {hi}) must satisfy 0 < low <= high")
        for f in ("base_rgba", "texture_tint", "camera_pos", "camera_angle"):
            if getattr(self, f) < 0.0:
                raise ValueError(f"RandomizationConfig.{f}: {getattr(self, f)} must be >= 0")


class DomainRandomization(gym.Wrapper):
    """Redraw physical and visual parameters of the wrapped `LockboxEnv` at every reset.

    Wrap the `LockboxEnv` directly or through wrappers that leave observations unchanged
    (`TimeLimit`, `OrderEnforcing`): the reset observation is recomputed after the draw.
    """

    def __init__(self, env: gym.Env, config: RandomizationConfig | None = None):
        """Read the nominal values the draws scale.

        Args:
            env: a `LockboxEnv`, possibly wrapped.
            config: the ranges; None means `RandomizationConfig()`.
        """
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, LockboxEnv):
            raise TypeError(f"DomainRandomization wraps a LockboxEnv, got {type(base).__name__}")
        self.config = config or RandomizationConfig()
        self._lockbox = base
        model = base.model
        parts = base.world.part_names
        self._joints = {p: model.joint(base.world.joint_name(p)) for p in parts}
        self._bodies = {p: model.body(int(model.jnt_bodyid[j.id])) for p, j in self._joints.items()}
        self._lights = {model.light(i).name: model.light(i) for i in range(model.nlight)}
        self._cameras = {model.camera(i).name: model.camera(i) for i in range(model.ncam)}
        self._base_geoms = _static_puzzle_geoms(model)
        # Textured materials other than the ArUco markers (tinting a marker fakes a marker).
        self._tinted = np.array([m for m in range(model.nmat) if not model.material(m).name.startswith("aruco_")],
                                dtype=int)
        # Values as compiled: every draw starts from these.
        self.nominal: dict[str, Any] = {
            "joint_friction": {p: j.frictionloss.copy() for p, j in self._joints.items()},
            "joint_damping": {p: j.damping.copy() for p, j in self._joints.items()},
            "joint_armature": {p: j.armature.copy() for p, j in self._joints.items()},
            "part_mass": {p: (b.mass.copy(), b.inertia.copy()) for p, b in self._bodies.items()},
            "light_intensity": {n: light.diffuse.copy() for n, light in self._lights.items()},
            "base_rgba": model.geom_rgba[self._base_geoms].copy(),
            "texture_tint": model.mat_rgba[self._tinted].copy(),
            "camera_pose": {n: (c.pos.copy(), c.quat.copy()) for n, c in self._cameras.items()},
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env (seeding its `np_random`), then draw and apply new parameters."""
        _, info = self.env.reset(seed=seed, options=options)
        drawn = self._apply(self._lockbox.np_random)
        # What was drawn is the hidden gap: kept as `privileged_draw` on the wrapper and put in
        # info only for privileged runs, never in what an agent sees by default.
        self.privileged_draw = drawn
        if self._lockbox.config.privileged:
            info.setdefault("privileged", {})["randomization"] = drawn
        return self._lockbox.observation(), info

    def _apply(self, rng: np.random.Generator) -> dict[str, Any]:
        """Write nominal x factor (or + offset) into the model; return what was drawn."""
        cfg, nom, model = self.config, self.nominal, self._lockbox.model
        drawn: dict[str, Any] = {}
        for key, attr in (("joint_friction", "frictionloss"), ("joint_damping", "damping"),
                          ("joint_armature", "armature")):
            drawn[key] = {}
            for part, joint in self._joints.items():
                factor = float(rng.uniform(*getattr(cfg, key)))
                getattr(joint, attr)[:] = nom[key][part] * factor
                drawn[key][part] = factor
        drawn["part_mass"] = {}
        for part, body in self._bodies.items():
            factor = float(rng.uniform(*cfg.part_mass))
            mass, inertia = nom["part_mass"][part]
            body.mass[:], body.inertia[:] = mass * factor, inertia * factor
            drawn["part_mass"][part] = factor
        drawn["light_intensity"] = {}
        for name, light in self._lights.items():
            factor = float(rng.uniform(*cfg.light_intensity))
            light.diffuse[:] = nom["light_intensity"][name] * factor
            drawn["light_intensity"][name] = factor
        offset = rng.uniform(-cfg.base_rgba, cfg.base_rgba, size=3)
        model.geom_rgba[self._base_geoms, :3] = np.clip(nom["base_rgba"][:, :3] + offset, 0.0, 1.0)
        drawn["base_rgba"] = offset.tolist()
        tint = 1.0 + rng.uniform(-cfg.texture_tint, cfg.texture_tint, size=(len(self._tinted), 3))
        model.mat_rgba[self._tinted, :3] = np.clip(nom["texture_tint"][:, :3] * tint, 0.0, 1.0)
        drawn["texture_tint"] = tint.tolist()
        drawn["camera_pose"] = {}
        for name, camera in self._cameras.items():
            pos0, quat0 = nom["camera_pose"][name]
            dpos = rng.uniform(-cfg.camera_pos, cfg.camera_pos, size=3)
            rotvec = rng.uniform(-cfg.camera_angle, cfg.camera_angle, size=3)
            quat = quat0.copy()
            mujoco.mju_quatIntegrate(quat, rotvec, 1.0)  # rotate about the camera's own axes
            camera.pos[:], camera.quat[:] = pos0 + dpos, quat
            drawn["camera_pose"][name] = {"pos_offset": dpos.tolist(), "rotation": rotvec.tolist()}
        self._update_constants()
        return drawn

    def _update_constants(self) -> None:
        """Recompute mass-dependent model constants (mj_setConst) without losing the state.

        mj_setConst works on `data` at qpos0, so the reset state is saved and restored around it.
        """
        model, data = self._lockbox.model, self._lockbox.data
        kind = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(model, kind))
        mujoco.mj_getState(model, data, state, kind)
        mujoco.mj_setConst(model, data)
        mujoco.mj_setState(model, data, state, kind)
        mujoco.mj_forward(model, data)


def _static_puzzle_geoms(model: mujoco.MjModel) -> np.ndarray:
    """Untextured geoms of the puzzle's fixed structure: body "base" and jointless bodies under it.

    Marker plates (textured) are left alone: tinting them would fake a marker, not a lighting change.
    """
    base = model.body("base").id
    static = {b for b in range(model.nbody)
              if b == base or (model.body_rootid[b] == model.body_rootid[base] and model.body_jntnum[b] == 0
                               and _descends_from(model, b, base))}
    return np.array([g for g in range(model.ngeom) if model.geom_bodyid[g] in static and model.geom_matid[g] < 0],
                    dtype=int)


def _descends_from(model: mujoco.MjModel, body: int, ancestor: int) -> bool:
    while body != 0:
        if body == ancestor:
            return True
        body = int(model.body_parentid[body])
    return False
