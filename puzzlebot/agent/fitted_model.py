"""The agent's belief about a puzzle as a MuJoCo model, with its uncertainty.

A `FittedModel` gathers what model building has found so far: each part's articulation (from
`agent.articulation`), its joint dynamics posterior (from `agent.sysid`) and which part blocks
which (from `agent.locks`). `to_spec` turns one parameter set into a MuJoCo world; `mjcf` is
the point estimate as XML; `sample_params` draws parameter sets for rehearsing a plan under
uncertainty; `save`/`load` keep the whole belief on disk.

The model holds a fixed ``base`` body at the base's pose; each moving part P is a child body
``P`` of the base whose frame is P's marker at rest (so the body pose predicts what the
tracker sees), on one joint ``P/joint`` that is 0 at rest and limited to the range observed
so far. It carries a visual box ``P/marker`` and, where known, a site ``P/handle`` at the
handle point. A fixed part is only a visual box (and handle site) on the base.

Joint dynamics mean exactly what they mean in `sysid`'s replay model, so a replay in this
model matches the fit: dry friction with the same stiff constraint settings, linear damping,
no armature, and the fitted effective inertia put in the body (the mass of a slide; for a
hinge a rotational inertia with a negligible mass centred on the hinge axis). Gravity is
compensated on the parts, as the replay model has none.

Geoms here collide with nothing (contype = conaffinity = 0): the lock graph is data (a
probability per blocker, saved in the JSON and read with `blockers`), not contacts, until
the agent has estimated where the locking tabs are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from puzzlebot.agent.articulation import KINDS, Articulation
from puzzlebot.agent.locks import LockBeliefs
from puzzlebot.agent.sysid import PARAMS, JointFit, cold_prior
from puzzlebot.files import write_text_atomic
from puzzlebot.sim.build import FRICTION_SOLREF, LIMIT_SOLREF, STIFF_SOLIMP

FORMAT_VERSION = 1
XML_NAME, JSON_NAME = "fitted_model.xml", "fitted_model.json"
TIMESTEP = 0.002  # s, as every puzzlebot scene (sim.build.new_scene)
MARKER_HALF = (0.02, 0.02, 0.002)  # m, half sizes of a part's visual box: a 4 cm marker plate
HANDLE_RADIUS = 0.006  # m, of the handle site (as sim.build)
HINGE_MASS = 1e-3  # kg: a hinge's inertia is rotational; this mass sits on the axis (as sysid)
UNIT_TOLERANCE = 1e-4  # axes and quaternions this close to unit norm (float32 data) are renormalised
SLIDE_INERTIA = 1e-6  # kg·m², rotational inertia of a slide's body (its rotation is locked)


def prior_fit(kind: str) -> JointFit:
    """The dynamics prior of a prismatic or revolute part that has no fit yet (`sysid.cold_prior`)."""
    log_mean, log_std = cold_prior(kind)
    return JointFit(values=dict(zip(PARAMS, np.exp(log_mean).tolist(), strict=True)), log_mean=log_mean,
                    log_covariance=np.diag(log_std**2), rms_error=float("nan"), evaluations=0)


def _vector(owner: str, field: str, value, size: int, unit: bool = False) -> np.ndarray:
    """`value` as a finite float vector of `size` (renormalised if `unit`), or a ValueError naming it."""
    try:
        arr = np.asarray(value, dtype=float) if value is not None else None
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (size,):
        raise ValueError(f"{owner}: {field} must be a vector of {size} numbers, got {value!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{owner}: {field} must be finite, got {arr.tolist()}")
    if unit:
        if abs(np.linalg.norm(arr) - 1.0) > UNIT_TOLERANCE:
            raise ValueError(f"{owner}: {field} must have unit norm, got norm {np.linalg.norm(arr):.6g}")
        arr = arr / np.linalg.norm(arr)
    return arr


def _check_fit(owner: str, fit: JointFit) -> None:
    mean = _vector(owner, "dynamics.log_mean", fit.log_mean, len(PARAMS))
    cov = np.asarray(fit.log_covariance, dtype=float)
    if cov.shape != (len(PARAMS),) * 2 or not np.all(np.isfinite(cov)):
        raise ValueError(f"{owner}: dynamics.log_covariance must be a finite {len(PARAMS)}x{len(PARAMS)} matrix")
    if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12) or np.linalg.eigvalsh(cov).min() < -1e-9 * max(
            1.0, np.abs(cov).max()):
        raise ValueError(f"{owner}: dynamics.log_covariance must be symmetric positive semi-definite")
    for name, log_value in zip(PARAMS, mean, strict=True):
        value = fit.values.get(name)
        if value is None or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{owner}: dynamics.values[{name!r}] must be a positive number, got {value!r}")
        if not np.isclose(np.log(value), log_value, rtol=0, atol=1e-6):
            raise ValueError(f"{owner}: dynamics.values[{name!r}] = {value!r} disagrees with dynamics.log_mean")
    if fit.gravity is not None and (len(fit.gravity) not in (1, 2) or not np.all(np.isfinite(fit.gravity))):
        raise ValueError(f"{owner}: dynamics.gravity must be 1 (a slide) or 2 (a hinge) finite numbers, "
                         f"got {fit.gravity!r}")


@dataclass
class FittedPart:
    """One part as the agent believes it to be; all poses at rest, in the base frame."""

    name: str  # the agent's own name for the part, e.g. "drawer_0" or "marker_3"
    marker_id: int
    articulation: Articulation  # kind, axis, origin (revolute) and observed range (joint = 0 at rest)
    rest_position: np.ndarray  # (3,) m, the part's marker at the start
    rest_quaternion: np.ndarray  # (4,) wxyz
    handle: np.ndarray | None = None  # (3,) m, where the agent grasps or pushes it, at rest
    dynamics: JointFit | None = None  # friction/damping/inertia posterior; None: not identified (prior)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the part and the field of the first bad value."""
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"part {self.name!r}: name must be a non-empty string without '/'")
        owner = f"part {self.name!r}"
        if isinstance(self.marker_id, bool) or not isinstance(self.marker_id, (int, np.integer)):
            raise ValueError(f"{owner}: marker_id must be an integer, got {self.marker_id!r}")
        art = self.articulation
        if art.kind not in KINDS:
            raise ValueError(f"{owner}: articulation.kind must be one of {KINDS}, got {art.kind!r}")
        self.rest_position = _vector(owner, "rest_position", self.rest_position, 3)
        self.rest_quaternion = _vector(owner, "rest_quaternion", self.rest_quaternion, 4, unit=True)
        if self.handle is not None:
            self.handle = _vector(owner, "handle", self.handle, 3)
        if art.kind == "fixed":
            return
        art.axis = _vector(owner, "articulation.axis", art.axis, 3, unit=True)
        if art.kind == "revolute":
            if art.origin is None:
                raise ValueError(f"{owner}: articulation.origin is required for a revolute part")
            art.origin = _vector(owner, "articulation.origin", art.origin, 3)
        lo, hi = (float(v) for v in art.observed_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= 0.0 <= hi and lo < hi):
            raise ValueError(f"{owner}: articulation.observed_range must be finite with lo <= 0 (rest) <= hi "
                             f"and lo < hi, got {art.observed_range!r}")
        if self.dynamics is not None:
            _check_fit(owner, self.dynamics)

    def point_estimate(self) -> dict[str, float]:
        """Friction, damping and inertia of the fit, or the prior's median without one."""
        fit = self.dynamics if self.dynamics is not None else prior_fit(self.articulation.kind)
        return {p: float(fit.values[p]) for p in PARAMS}


@dataclass
class FittedModel:
    """The parts, where the base stands, and which part blocks which (probabilities)."""

    parts: list[FittedPart]
    base_position: np.ndarray  # (3,) m, base frame origin in the world
    base_quaternion: np.ndarray  # (4,) wxyz
    lock_graph: dict[str, dict[str, float]]  # blocked part -> {blocker: probability that it blocks}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field of the first bad value."""
        self.base_position = _vector("model", "base_position", self.base_position, 3)
        self.base_quaternion = _vector("model", "base_quaternion", self.base_quaternion, 4, unit=True)
        names = [p.name for p in self.parts]
        for field, values in (("name", names), ("marker_id", [int(p.marker_id) for p in self.parts])):
            dupes = sorted({str(v) for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"model: parts share a {field}: {', '.join(dupes)}")
        for part in self.parts:
            part.validate()
        for blocked, blockers in self.lock_graph.items():
            for name in (blocked, *blockers):
                if name not in names:
                    raise ValueError(f"model: lock_graph names unknown part {name!r}")
            for blocker, p in blockers.items():
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"model: lock_graph[{blocked!r}][{blocker!r}] must be a probability, got {p!r}")

    def part(self, name: str) -> FittedPart:
        for part in self.parts:
            if part.name == name:
                return part
        raise ValueError(f"model: no part named {name!r} (parts: {', '.join(p.name for p in self.parts)})")

    def update_part(self, part: FittedPart) -> None:
        """Replace the part of the same name (after refitting it); no recompilation happens here."""
        index = self.parts.index(self.part(part.name))
        old = self.parts[index]
        self.parts[index] = part
        try:
            self.validate()
        except ValueError:
            self.parts[index] = old
            raise

    def add_part(self, part: FittedPart) -> None:
        """Add a newly tracked part."""
        self.parts.append(part)
        try:
            self.validate()
        except ValueError:
            self.parts.pop()
            raise

    def blockers(self, part: str, threshold: float = 0.5) -> list[str]:
        """The parts that block `part` with probability >= `threshold`, most probable first."""
        self.part(part)
        probs = self.lock_graph.get(part, {})
        return sorted((b for b, p in probs.items() if p >= threshold), key=lambda b: (-probs[b], b))

    def to_spec(self, params: dict[str, dict[str, float]] | None = None) -> mujoco.MjSpec:
        """The model as an MjSpec, with `params` (part -> friction/damping/inertia) overriding the
        point estimate of the parts it names (e.g. one draw of `sample_params`)."""
        self.validate()
        params = params or {}
        moving = {p.name for p in self.parts if p.articulation.kind != "fixed"}
        for name, values in params.items():
            if name not in moving:
                raise ValueError(f"params: {name!r} is not a moving part of the model")
            for key, value in values.items():
                if key not in PARAMS or not np.isfinite(value) or value <= 0:
                    raise ValueError(f"params[{name!r}][{key!r}] must be one of {PARAMS} and positive, got {value!r}")
        spec = mujoco.MjSpec()
        spec.modelname = "fitted_model"
        spec.compiler.degree = False
        spec.option.timestep = TIMESTEP
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        base = spec.worldbody.add_body(name="base", pos=self.base_position, quat=self.base_quaternion)
        for part in self.parts:
            _add_part(base, part, {**part.point_estimate(), **params.get(part.name, {})})
        return spec

    def compile(self, params: dict[str, dict[str, float]] | None = None) -> mujoco.MjModel:
        """`to_spec(params)`, compiled."""
        return self.to_spec(params).compile()

    def mjcf(self) -> str:
        """XML of the point estimate (loads with mujoco.MjModel.from_xml_string).

        MuJoCo's writer keeps 6 significant digits; the JSON written by `save` keeps full precision.
        """
        spec = self.to_spec()
        spec.compile()
        return spec.to_xml()

    def sample_params(self, count: int, rng: np.random.Generator) -> list[dict[str, dict[str, float]]]:
        """`count` parameter sets for the moving parts, from each posterior (the prior where unfitted)."""
        per_part = {p.name: (p.dynamics or prior_fit(p.articulation.kind)).samples(count, rng)
                    for p in self.parts if p.articulation.kind != "fixed"}
        return [{name: draws[i] for name, draws in per_part.items()} for i in range(count)]

    def save(self, folder: Path) -> None:
        """Write fitted_model.xml (point estimate) and fitted_model.json (all of it), atomically."""
        folder = Path(folder)
        write_text_atomic(folder / XML_NAME, self.mjcf())
        data = {"format": FORMAT_VERSION, "base_position": self.base_position.tolist(),
                "base_quaternion": self.base_quaternion.tolist(), "lock_graph": self.lock_graph,
                "parts": [_part_to_json(p) for p in self.parts]}
        write_text_atomic(folder / JSON_NAME, json.dumps(data, indent=1, allow_nan=False) + "\n")

    @classmethod
    def load(cls, folder: Path) -> FittedModel:
        """Read a model written by `save` (the JSON; the XML is derived from it)."""
        data = json.loads((Path(folder) / JSON_NAME).read_text())
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder}: format must be {FORMAT_VERSION}, got {data.get('format')!r}")
        return cls(parts=[_part_from_json(p) for p in data["parts"]], base_position=np.array(data["base_position"]),
                   base_quaternion=np.array(data["base_quaternion"]),
                   lock_graph={k: {b: float(p) for b, p in v.items()} for k, v in data["lock_graph"].items()})


def lock_graph_from(beliefs: LockBeliefs) -> dict[str, dict[str, float]]:
    """Every part's marginal blocker probabilities from the lock beliefs."""
    return {part: {b: beliefs.probability_blocks(b, part) for b in beliefs.parts if b != part}
            for part in beliefs.parts}


def _add_part(base: mujoco.MjsBody, part: FittedPart, params: dict[str, float]) -> None:
    """The part's body and joint (or, if fixed, its visual geom on the base)."""
    art = part.articulation
    # The body's frame is the marker at rest: base-frame vectors are rotated into it.
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, part.rest_quaternion)
    rot = rot.reshape(3, 3)

    def local(point: np.ndarray) -> np.ndarray:
        return rot.T @ (point - part.rest_position)

    if art.kind == "fixed":
        base.add_geom(name=f"{part.name}/marker", type=mujoco.mjtGeom.mjGEOM_BOX, pos=part.rest_position,
                      quat=part.rest_quaternion, size=MARKER_HALF, contype=0, conaffinity=0, group=1,
                      rgba=[0.5, 0.5, 0.5, 1])
        if part.handle is not None:
            base.add_site(name=f"{part.name}/handle", pos=part.handle, size=[HANDLE_RADIUS, 0, 0], group=4)
        return
    body = base.add_body(name=part.name, pos=part.rest_position, quat=part.rest_quaternion, gravcomp=1.0)
    joint_pos = np.zeros(3) if art.kind == "prismatic" else local(art.origin)
    joint = body.add_joint(name=f"{part.name}/joint", pos=joint_pos, axis=rot.T @ art.axis,
                           range=[float(v) for v in art.observed_range], limited=mujoco.mjtLimited.mjLIMITED_TRUE)
    joint.type = mujoco.mjtJoint.mjJNT_SLIDE if art.kind == "prismatic" else mujoco.mjtJoint.mjJNT_HINGE
    joint.solref_limit, joint.solimp_limit = LIMIT_SOLREF, STIFF_SOLIMP
    joint.solref_friction, joint.solimp_friction = FRICTION_SOLREF, STIFF_SOLIMP  # as sysid's replay model
    joint.frictionloss = params["friction"]
    joint.damping = [params["damping"], 0.0, 0.0]  # linear term of MuJoCo's damping polynomial
    # As in sysid._one_joint_model: the effective inertia is in the body, not the armature.
    body.explicitinertial = True
    body.ipos = joint_pos  # a hinge's (tiny) mass on its axis, so its inertia about it is the fitted one
    body.mass = params["inertia"] if art.kind == "prismatic" else HINGE_MASS
    body.inertia = [params["inertia"] if art.kind == "revolute" else SLIDE_INERTIA] * 3
    _add_weight(body, part, params["inertia"], rot)
    body.add_geom(name=f"{part.name}/marker", type=mujoco.mjtGeom.mjGEOM_BOX, size=MARKER_HALF, contype=0,
                  conaffinity=0, group=1, rgba=[0.8, 0.66, 0.45, 1])
    if part.handle is not None:
        body.add_site(name=f"{part.name}/handle", pos=local(part.handle), size=[HANDLE_RADIUS, 0, 0], group=4)


WEIGHT_MIN = {"prismatic": 0.01, "revolute": 1e-3}  # kg, kg·m: less fitted weight than this is none


def _add_weight(body: mujoco.MjsBody, part: FittedPart, inertia: float, rot: np.ndarray) -> None:
    """Give the body the weight the hand carried (`JointFit.gravity`): the replay fits it apart
    from the joint's own dynamics, and without it a lid in the model needs no hand to hold it up.

    A hinge's first moment m·r is known, not m and r apart: the mass goes at the handle's radius,
    or nearer the axis when that would leave less than half the fitted inertia for the rest of
    the part. A slide's weight is its mass less MuJoCo's gravity compensation. A body without a
    fitted weight stays weightless (gravity compensated), as in the replay."""
    fit, art = part.dynamics, part.articulation
    if fit is None or fit.gravity is None:
        return
    if art.kind == "prismatic":
        weight = float(np.clip(fit.gravity[0], 0.0, inertia))  # the weight of a mass the inertia includes
        if weight >= WEIGHT_MIN["prismatic"]:
            body.gravcomp = 1.0 - weight / inertia
        return
    if part.handle is None:
        return
    axis = np.asarray(art.axis, dtype=float)
    arm = np.asarray(part.handle, dtype=float) - art.origin
    arm = arm - (arm @ axis) * axis
    radius = float(np.linalg.norm(arm))
    if radius < 1e-3:
        return
    u = arm / radius
    moment = fit.gravity[0] * u + fit.gravity[1] * np.cross(axis, u)  # base frame, kg·m
    size = float(np.linalg.norm(moment))
    if size < WEIGHT_MIN["revolute"]:
        return
    at = min(radius, 0.5 * inertia / size)  # m from the axis: m·at² <= half the inertia
    body.gravcomp = 0.0
    body.mass = size / at
    body.ipos = np.asarray(body.ipos, dtype=float) + rot.T @ (moment / size) * at
    body.inertia = [inertia - size * at] * 3  # about its centre: the rest of the fitted inertia


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _none_to_nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def _part_to_json(part: FittedPart) -> dict:
    art = part.articulation
    articulation = {
        "kind": art.kind, "axis": None if art.axis is None else np.asarray(art.axis).tolist(),
        "origin": None if art.origin is None else np.asarray(art.origin).tolist(),
        "coordinates": np.asarray(art.coordinates, dtype=float).tolist(),
        "observed_range": [float(v) for v in art.observed_range],
        "axis_std_deg": _nan_to_none(art.axis_std_deg), "origin_std_m": _nan_to_none(art.origin_std_m),
        "scores": {k: float(v) for k, v in art.scores.items()},
        "probabilities": art.probabilities if art.scores else {},  # derived from the scores; for readers
        "residual_position_m": float(art.residual_position_m),
        "residual_rotation_deg": float(art.residual_rotation_deg)}
    fit = part.dynamics
    dynamics = None if fit is None else {
        "values": {k: float(v) for k, v in fit.values.items()}, "log_mean": np.asarray(fit.log_mean).tolist(),
        "log_covariance": np.asarray(fit.log_covariance).tolist(), "rms_error": _nan_to_none(fit.rms_error),
        "evaluations": int(fit.evaluations), "gravity": None if fit.gravity is None else list(fit.gravity)}
    return {"name": part.name, "marker_id": int(part.marker_id), "rest_position": part.rest_position.tolist(),
            "rest_quaternion": part.rest_quaternion.tolist(),
            "handle": None if part.handle is None else part.handle.tolist(),
            "articulation": articulation, "dynamics": dynamics}


def _part_from_json(data: dict) -> FittedPart:
    a = data["articulation"]
    articulation = Articulation(
        kind=a["kind"], axis=None if a["axis"] is None else np.array(a["axis"]),
        origin=None if a["origin"] is None else np.array(a["origin"]), coordinates=np.array(a["coordinates"]),
        observed_range=tuple(a["observed_range"]), axis_std_deg=_none_to_nan(a["axis_std_deg"]),
        origin_std_m=_none_to_nan(a["origin_std_m"]), scores=dict(a["scores"]),
        residual_position_m=a["residual_position_m"], residual_rotation_deg=a["residual_rotation_deg"])
    d = data["dynamics"]
    dynamics = None if d is None else JointFit(
        values=dict(d["values"]), log_mean=np.array(d["log_mean"]), log_covariance=np.array(d["log_covariance"]),
        rms_error=_none_to_nan(d["rms_error"]), evaluations=d["evaluations"],
        gravity=None if d.get("gravity") is None else tuple(float(v) for v in d["gravity"]))
    return FittedPart(name=data["name"], marker_id=data["marker_id"], articulation=articulation,
                      rest_position=np.array(data["rest_position"]), rest_quaternion=np.array(data["rest_quaternion"]),
                      handle=None if data["handle"] is None else np.array(data["handle"]), dynamics=dynamics)
