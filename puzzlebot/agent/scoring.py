"""Scoring a fitted model against the hidden truth: for tests and benchmarks, never for the agent.

The truth is the puzzle's spec with the emulator's drawn gap applied (read from
`EmulatorBackend.episode_gap()`, which is only available after the episode). Everything is
expressed in the frame the agent models in: base marker 0's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from puzzlebot.agent.fitted_model import FittedModel
from puzzlebot.agent.perception.privileged import site_pose
from puzzlebot.sim.spec import PuzzleSpec
from puzzlebot.sim.world import PuzzleWorld, WorldConfig


@dataclass(frozen=True)
class TrueJoint:
    kind: str  # "prismatic" | "revolute"
    axis: np.ndarray  # unit, base marker 0's frame, opening direction
    origin: np.ndarray  # a point on the axis (revolute), base frame
    range: tuple[float, float]
    friction: float  # N or N·m (dry)
    damping: float  # N·s/m or N·m·s/rad
    inertia: float  # kg or kg·m²: everything the joint accelerates (mass, rotor inertia, armature)


def true_joints(spec: PuzzleSpec, gap: dict[str, Any] | None) -> dict[str, TrueJoint]:
    """Every part's joint as the emulator ran it (the spec with the drawn gap, if any)."""
    world = PuzzleWorld(spec, WorldConfig(robot="gripper"))
    model, data = world.model, world.data
    drawn = (gap or {}).get("drawn", {})
    for part in world.part_names:
        joint = model.joint(world.joint_name(part))
        for key, attr in (("joint_friction", "frictionloss"), ("joint_damping", "damping"),
                          ("joint_armature", "armature")):
            getattr(joint, attr)[:] *= drawn.get(key, {}).get(part, 1.0)
        body = model.body(int(model.jnt_bodyid[joint.id]))
        factor = drawn.get("part_mass", {}).get(part, 1.0)
        body.mass[:] *= factor
        body.inertia[:] *= factor
        if part in drawn.get("axis_tilt", {}):
            model.jnt_axis[joint.id] = drawn["axis_tilt"][part]["axis"]
    mujoco.mj_setConst(model, data)
    mujoco.mj_forward(model, data)
    mass_matrix = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, mass_matrix)
    T_base_world = np.linalg.inv(site_pose(world, "base_front/marker"))
    R, t = T_base_world[:3, :3], T_base_world[:3, 3]
    out = {}
    for part in world.part_names:
        joint = model.joint(world.joint_name(part))
        dof = int(joint.dofadr[0])
        kind = "prismatic" if joint.type[0] == mujoco.mjtJoint.mjJNT_SLIDE else "revolute"
        out[part] = TrueJoint(kind=kind, axis=R @ data.xaxis[joint.id], origin=R @ data.xanchor[joint.id] + t,
                              range=tuple(float(v) for v in model.jnt_range[joint.id]),
                              friction=float(joint.frictionloss[0]), damping=float(joint.damping[0]),
                              inertia=float(mass_matrix[dof, dof]))
    return out


def true_lock_graph(spec: PuzzleSpec) -> dict[str, frozenset[str]]:
    return {part.name: frozenset(lock.blocker for lock in part.blocked_by) for part in spec.parts}


def graph_f1(predicted: dict[str, frozenset[str]] | dict[str, list[str]], truth: dict[str, frozenset[str]]) -> dict:
    """Precision, recall and F1 over blocker -> part edges (1.0 for two empty graphs)."""
    pred = {(b, p) for p, blockers in predicted.items() for b in blockers}
    true = {(b, p) for p, blockers in truth.items() for b in blockers}
    hits = len(pred & true)
    precision = hits / len(pred) if pred else float(not true)
    recall = hits / len(true) if true else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "exact": pred == true}


def score_model(model: FittedModel, truth: dict[str, TrueJoint]) -> list[dict[str, Any]]:
    """Per-part errors of a fitted model against the true joints (NaN where not estimated)."""
    rows = []
    for part in model.parts:
        true = truth[part.name]
        art = part.articulation
        row: dict[str, Any] = {"part": part.name, "true_kind": true.kind, "kind": art.kind,
                               "kind_correct": art.kind == true.kind, "axis_error_deg": float("nan"),
                               "origin_error_mm": float("nan"), "friction_rel_error": float("nan"),
                               "damping_rel_error": float("nan"), "inertia_rel_error": float("nan")}
        if art.kind == true.kind:
            row["axis_error_deg"] = float(np.degrees(np.arccos(np.clip(art.axis @ true.axis, -1.0, 1.0))))
            if true.kind == "revolute":
                delta = art.origin - true.origin
                row["origin_error_mm"] = 1000 * float(np.linalg.norm(delta - (delta @ true.axis) * true.axis))
            if part.dynamics is not None:
                values = part.dynamics.values
                row["friction_rel_error"] = abs(values["friction"] - true.friction) / true.friction
                row["damping_rel_error"] = abs(values["damping"] - true.damping) / true.damping
                row["inertia_rel_error"] = abs(values["inertia"] - true.inertia) / true.inertia
        rows.append(row)
    return rows
