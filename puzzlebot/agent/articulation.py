"""Articulation inference from part tracks: is a part fixed, prismatic or revolute, and how?

In the spirit of Sturm et al. (2011, "A probabilistic framework for learning kinematic
models of articulated objects"): fit each candidate model to the part's poses relative to
the base, score it by its likelihood under a Gaussian pose-noise model with a complexity
penalty (BIC), and keep the best. Parameters come with uncertainty from a bootstrap over the
observations, and the range seen so far is reported, not the joint's true limits.

Only observed poses are used: nothing here reads the puzzle's spec.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

KINDS = ("fixed", "prismatic", "revolute")
# Free parameters of each model (for the BIC penalty): fixed = a pose (6); prismatic = a pose
# plus an axis direction (2) and one coordinate per observation; revolute = a pose plus an
# axis line (4) and one coordinate per observation.
_PARAMS = {"fixed": 6, "prismatic": 8, "revolute": 10}
LATENT_PENALTY = 1.0


@dataclass(frozen=True)
class NoiseModel:
    """Expected per-observation noise of the tracker (from its measured accuracy)."""

    position: float = 0.003  # m
    rotation: float = np.deg2rad(1.5)  # rad
    rotation_outlier: float = np.deg2rad(10.0)  # rad: a pose tilted further off a model is a misread
    # (a marker's other PnP tilt, 30 deg off for seconds after a push) and costs no more than this


@dataclass
class Articulation:
    """The selected model of one part, with what was seen and how sure it is."""

    kind: str
    axis: np.ndarray | None = None  # unit, base frame (prismatic: direction; revolute: rotation axis)
    origin: np.ndarray | None = None  # a point on the revolute axis, base frame
    coordinates: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per observation: m or rad
    observed_range: tuple[float, float] = (0.0, 0.0)
    axis_std_deg: float = float("nan")  # bootstrap spread of the axis direction
    origin_std_m: float = float("nan")  # bootstrap spread of the axis point (revolute)
    scores: dict[str, float] = field(default_factory=dict)  # BIC per model (lower is better)
    residual_position_m: float = 0.0
    residual_rotation_deg: float = 0.0

    @property
    def probabilities(self) -> dict[str, float]:
        """Posterior model probabilities from the BIC scores (equal priors)."""
        best = min(self.scores.values())
        weights = {k: np.exp(-0.5 * (v - best)) for k, v in self.scores.items()}
        total = sum(weights.values())
        return {k: float(w / total) for k, w in weights.items()}


def _rotvecs(quaternions: np.ndarray) -> Rotation:
    return Rotation.from_quat(np.asarray(quaternions)[:, [1, 2, 3, 0]])  # wxyz -> scipy's xyzw


def _opening_sense(thetas: np.ndarray) -> float:
    """Which way the part turned, as a sign: that of the median of the angles well away from rest
    (a quarter of the largest or more), not that of the single largest angle: that is the sample
    most likely to be an outlier (a knob's marker half hidden by the finger on its crank read
    0.9 rad while the knob had turned 0.65)."""
    away = thetas[np.abs(thetas) >= 0.25 * np.abs(thetas).max()]
    return 1.0 if float(np.median(away)) >= 0 else -1.0


def _fit_fixed(positions: np.ndarray, rotations: Rotation):
    mean_pos = positions.mean(axis=0)
    mean_rot = _reference_pose(positions, rotations)[1]  # not the mean: misread tilts would pull it
    return {"pos": positions - mean_pos, "rot": (mean_rot.inv() * rotations).magnitude()}, {}


def _fit_prismatic(positions: np.ndarray, rotations: Rotation):
    center = positions.mean(axis=0)
    _, _, vt = np.linalg.svd(positions - center)
    axis = vt[0]
    coords = (positions - center) @ axis
    axis = axis if coords[-1] >= coords[0] else -axis  # positive along the motion seen
    coords = (positions - center) @ axis
    on_line = center + np.outer(coords, axis)
    mean_rot = _reference_pose(positions, rotations)[1]
    return ({"pos": positions - on_line, "rot": (mean_rot.inv() * rotations).magnitude()},
            {"axis": axis, "coords": coords - coords[0]})


AXIS_INLIER = 0.05  # rad: a pose's rotation off the axis that still counts as turning about it


def _rotation_axis(rotvecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The axis most rotation vectors turn about, and which poses agree with it (a mask).

    Each large rotation proposes its own axis; the one that the most large rotations agree
    with (off-axis part under `AXIS_INLIER`) is refined by SVD of the poses that agree with it.
    Not one SVD of all: it weighs each pose by its rotation squared, and a knob's marker, half
    hidden by the finger on its crank, read 0.7-0.9 rad about axes up to 50 deg off while the
    knob turned 0.65 rad, which took a plain SVD's axis 48 deg off and a push "on" the knob
    back shut.
    """
    angles = np.linalg.norm(rotvecs, axis=1)
    large = np.flatnonzero(angles >= max(0.25 * angles.max(), 2 * AXIS_INLIER))
    if len(large) == 0:  # every rotation is within the noise: the dominant direction is all there is
        return np.linalg.svd(rotvecs)[2][0], np.ones(len(rotvecs), dtype=bool)
    proposals = rotvecs[large[:: max(1, len(large) // 200)]]
    proposals = proposals / np.linalg.norm(proposals, axis=1, keepdims=True)

    def agree(axis: np.ndarray) -> np.ndarray:
        return np.linalg.norm(rotvecs - np.outer(rotvecs @ axis, axis), axis=1) < AXIS_INLIER

    best = max(proposals, key=lambda axis: int(agree(axis)[large].sum()))
    inliers = agree(best)
    axis = np.linalg.svd(rotvecs[inliers])[2][0]
    return axis, agree(axis) | (angles < AXIS_INLIER)


REFERENCE_CANDIDATES = 50  # poses tried as the reference orientation (evenly spaced over the track)


def _reference_pose(positions: np.ndarray, rotations: Rotation) -> tuple[np.ndarray, Rotation]:
    """The pose the track dwells at most (its rest, for a part probed from rest): the mean of the
    poses within `AXIS_INLIER` of the candidate that has the most of them.

    Not the first pose: one sample, and a marker's other PnP tilt can be it. A lever whose
    marker sits on its pivot turned 1.2 rad, but its first pose was 5 deg tilted; measured from
    that, 800 still poses all looked tilted about the wrong axis, and the lever scored "fixed".
    """
    picks = np.unique(np.linspace(0, len(rotations) - 1, min(REFERENCE_CANDIDATES, len(rotations))).astype(int))
    near = [(rotations * rotations[i].inv()).magnitude() < AXIS_INLIER for i in picks]
    cluster = near[int(np.argmax([m.sum() for m in near]))]
    return positions[cluster].mean(axis=0), rotations[cluster].mean()


def _fit_revolute(positions: np.ndarray, rotations: Rotation):
    p_ref, r_ref = _reference_pose(positions, rotations)
    relative = rotations * r_ref.inv()  # R_i R_ref^T = rotation by theta_i about the axis
    rotvecs = relative.as_rotvec()
    angles = np.linalg.norm(rotvecs, axis=1)
    if angles.max() < 1e-6:
        raise np.linalg.LinAlgError("no rotation seen")
    axis, inliers = _rotation_axis(rotvecs)
    from_first = rotvecs @ axis - rotvecs[0] @ axis  # the way it turned from where the track began
    axis = axis if _opening_sense(from_first[inliers]) >= 0 else -axis
    thetas = rotvecs @ axis
    # Axis point: p_i = c + R(theta_i)(p_ref - c)  =>  (I - R_i) c = p_i - R_i p_ref, stacked.
    rows, rhs = [], []
    for theta, p in zip(thetas[inliers], positions[inliers], strict=True):
        rot = Rotation.from_rotvec(axis * theta).as_matrix()
        rows.append(np.eye(3) - rot)
        rhs.append(p - rot @ p_ref)
    a, b = np.vstack(rows), np.concatenate(rhs)
    # The component along the axis is unobservable: least squares with a tiny ridge picks the
    # point nearest to the mean position's foot on the axis.
    center_guess = positions.mean(axis=0)
    reg = 1e-6
    c = np.linalg.solve(a.T @ a + reg * np.eye(3), a.T @ b + reg * center_guess)
    c = c + axis * ((center_guess - c) @ axis)
    predicted = np.array([c + Rotation.from_rotvec(axis * t).as_matrix() @ (p_ref - c) for t in thetas])
    model_rot = Rotation.from_rotvec(np.outer(thetas, axis)) * r_ref
    return ({"pos": positions - predicted, "rot": (model_rot.inv() * rotations).magnitude()},
            {"axis": axis, "origin": c, "coords": thetas - thetas[0]})  # from the first pose: the model's rest


def _fit_fixed_path(positions: np.ndarray, _):
    return {"pos": positions - positions.mean(axis=0), "rot": np.zeros(len(positions))}, {}


def _fit_prismatic_path(positions: np.ndarray, _):
    residuals, params = _fit_prismatic(positions, Rotation.identity(len(positions)))
    return {"pos": residuals["pos"], "rot": np.zeros(len(positions))}, params


def _fit_revolute_path(positions: np.ndarray, _):
    """A circular arc: its plane by SVD, its centre by an algebraic (Kasa) circle fit in the plane."""
    mean = positions.mean(axis=0)
    _, sing, vt = np.linalg.svd(positions - mean)
    if sing[1] < 1e-9:
        raise np.linalg.LinAlgError("a straight path: no arc")
    e1, e2 = vt[0], vt[1]
    normal = np.cross(e1, e2)  # not vt[2]: SVD's third vector may point either way
    xy = np.column_stack([(positions - mean) @ e1, (positions - mean) @ e2])
    design = np.column_stack([2 * xy, np.ones(len(xy))])
    (a, b, c), *_ = np.linalg.lstsq(design, (xy**2).sum(axis=1), rcond=None)
    radius = np.sqrt(max(c + a * a + b * b, 0.0))
    center = mean + a * e1 + b * e2
    angles = np.unwrap(np.arctan2(xy[:, 1] - b, xy[:, 0] - a))
    thetas = angles - angles[0]
    axis = normal  # right-handed with (e1, e2): positive rotation turns e1 towards e2
    if _opening_sense(thetas) < 0:
        axis, thetas = -axis, -thetas
    start = positions[0] - center
    start -= (start @ axis) * axis
    start *= radius / max(np.linalg.norm(start), 1e-12)
    predicted = np.array([center + Rotation.from_rotvec(axis * t).as_matrix() @ start for t in thetas])
    return ({"pos": positions - predicted, "rot": np.zeros(len(positions))},
            {"axis": axis, "origin": center, "coords": thetas})


_FITS = {"fixed": _fit_fixed, "prismatic": _fit_prismatic, "revolute": _fit_revolute}
# Positions alone (the path of a grasped handle, whose orientation the fingers do not hold):
# a point, a line, or a circular arc.
_PATH_FITS = {"fixed": _fit_fixed_path, "prismatic": _fit_prismatic_path, "revolute": _fit_revolute_path}
_PATH_PARAMS = {"fixed": 3, "prismatic": 5, "revolute": 6}
# Without orientations a coordinate fitted to noise buys a whole position dimension's chi2
# (~1 per pose on average, more on unlucky draws): twice that keeps a still path still.
_PATH_LATENT_PENALTY = 2.0


def _bic(residuals: dict[str, np.ndarray], noise: NoiseModel, n: int, kind: str,
         params: dict[str, int] = _PARAMS, latent_penalty: float = LATENT_PENALTY) -> float:
    """-2 log-likelihood under Gaussian noise + a penalty: k log n for the model's global
    parameters, and LATENT_PENALTY for each observation's joint coordinate, which a moving
    model spends on every pose. A coordinate fitted to pure noise absorbs one of the three
    position dimensions (chi2 drops by ~1/3 per pose), so a penalty of 1 per pose keeps a
    still part fixed while any motion well above the noise is still found. A rotation residual
    counts up to `noise.rotation_outlier` only: a side-pushed bolt's marker read 31 deg tilted in
    87 of 435 poses, and at full cost those made the bolt a hinge (BIC 19,020 against 31,468 for
    a slide that fitted every position within the noise)."""
    rot = np.minimum(residuals["rot"], noise.rotation_outlier)
    chi2 = np.sum(residuals["pos"] ** 2) / noise.position**2 + np.sum(rot**2) / noise.rotation**2
    latent = 0 if kind == "fixed" else n
    return float(chi2 + params[kind] * np.log(max(n, 2)) + latent_penalty * latent)


def infer_articulation(positions: np.ndarray, quaternions: np.ndarray | None, noise: NoiseModel = NoiseModel(),
                       bootstrap: int = 30, seed: int = 0, kinds: Collection[str] | None = None) -> Articulation:
    """Select and fit the articulation model of one part from its poses in the base frame.

    Args:
        positions: (n, 3) part positions relative to the base, m, in time order.
        quaternions: (n, 4) wxyz orientations relative to the base; None for a path of points
            alone (a grasped handle's path: a line or a circular arc).
        noise: the tracker's expected noise, which sets how much motion counts as motion.
        bootstrap: resamples used for the parameters' uncertainty.
        seed: of the bootstrap resampling.
        kinds: the models to choose among (default all three): other evidence may rule one out.
    """
    positions = np.asarray(positions, dtype=float)
    if len(positions) < 3:
        raise ValueError(f"need at least 3 poses to infer an articulation, got {len(positions)}")
    rotations = None if quaternions is None else _rotvecs(quaternions)
    fitters, counts, penalty = ((_FITS, _PARAMS, LATENT_PENALTY) if rotations is not None
                                else (_PATH_FITS, _PATH_PARAMS, _PATH_LATENT_PENALTY))
    if kinds is not None and (not kinds or set(kinds) - set(fitters)):
        raise ValueError(f"infer_articulation kinds: {sorted(kinds)}; choose among {sorted(fitters)}")
    n = len(positions)
    scores, fits = {}, {}
    for kind, fit in fitters.items():
        if kinds is not None and kind not in kinds:
            continue
        try:
            residuals, params = fit(positions, rotations)
        except np.linalg.LinAlgError:
            continue
        scores[kind] = _bic(residuals, noise, n, kind, counts, penalty)
        fits[kind] = (residuals, params)
    kind = min(scores, key=scores.get)
    residuals, params = fits[kind]
    result = Articulation(kind=kind, scores=scores,
                          residual_position_m=float(np.sqrt(np.mean(np.sum(residuals["pos"] ** 2, axis=1)))),
                          residual_rotation_deg=float(np.rad2deg(np.sqrt(np.mean(residuals["rot"] ** 2)))))
    if kind == "fixed":
        return result
    result.axis = params["axis"]
    result.origin = params.get("origin")
    result.coordinates = params["coords"]
    result.observed_range = (float(params["coords"].min()), float(params["coords"].max()))
    _bootstrap(result, positions, rotations, bootstrap, seed)
    return result


def _bootstrap(result: Articulation, positions: np.ndarray, rotations: Rotation | None, count: int,
               seed: int) -> None:
    """Spread of the axis (and axis point) over resampled observations."""
    rng = np.random.default_rng(seed)
    fit = (_FITS if rotations is not None else _PATH_FITS)[result.kind]
    angles, offsets = [], []
    n = len(positions)
    for _ in range(count):
        idx = np.sort(rng.integers(0, n, n))
        try:
            _, params = fit(positions[idx], None if rotations is None else rotations[idx])
        except np.linalg.LinAlgError:
            continue
        cos = abs(float(params["axis"] @ result.axis))
        angles.append(np.degrees(np.arccos(min(1.0, cos))))
        if result.origin is not None:
            delta = params["origin"] - result.origin
            offsets.append(np.linalg.norm(delta - (delta @ result.axis) * result.axis))
    if angles:
        result.axis_std_deg = float(np.sqrt(np.mean(np.square(angles))))
    if offsets:
        result.origin_std_m = float(np.sqrt(np.mean(np.square(offsets))))
