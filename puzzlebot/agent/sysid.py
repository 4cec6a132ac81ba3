"""Physical parameters of one joint from a logged interaction, by replaying it in candidate models.

Given an articulation (from `agent.articulation`), the generalized effort that was applied
along the joint over time and the joint trajectory that was observed, this fits dry
friction, viscous damping and the effective inertia (mass + armature along the joint: from
single-joint motion the two are not separable, so they are reported as their sum) by
simulating a one-joint MuJoCo model with the same effort and minimising the trajectory error
(scipy's least squares in log-parameters, warm-started from the previous fit). The posterior
is the Laplace approximation around the optimum: a Gaussian in log-parameters.

Today the effort comes from a known push profile (a force/torque-sensed probe); replaying the
arm's commanded motion through contacts is the next step.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.optimize import least_squares

PARAMS = ("friction", "damping", "inertia")
# Cold starts (N, N·s/m, kg for a slide; scaled for hinges): the spread of desktop lockbox parts.
COLD_FRICTION = (0.3, 3.0)
COLD_DAMPING = (0.5, 8.0)
COLD_INERTIA = (0.1, 1.0)
def cold_prior(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The dynamics prior of a desktop lockbox joint: mean and standard deviation of the log of
    each of `PARAMS`, centred on the cold-start spread with one sigma = half its width in log space
    (every mechanism default in `sim.mechanisms` lies within two sigma)."""
    scale = REVOLUTE_SCALE if kind == "revolute" else 1.0
    bounds = np.log([[lo * scale, hi * scale] for lo, hi in (COLD_FRICTION, COLD_DAMPING, COLD_INERTIA)])
    return bounds.mean(axis=1), (bounds[:, 1] - bounds[:, 0]) / 2


MAX_DRAW_FACTOR = 30.0  # a posterior draw is within this factor of the estimate, either way
REVOLUTE_SCALE = 0.01  # N·m vs N at a ~10 cm lever arm, kg·m² vs kg


@dataclass(frozen=True)
class JointInteraction:
    """One logged interaction along a single joint."""

    kind: str  # "prismatic" | "revolute"
    timestep: float  # s, of the effort samples
    effort: np.ndarray  # (n,) N or N·m applied along the joint, one per timestep
    times: np.ndarray  # (m,) s, when the joint was observed
    positions: np.ndarray  # (m,) observed joint coordinate, m or rad (relative to the start)
    limits: tuple[float, float] = (-np.inf, np.inf)  # joint range seen or known, relative to the start


@dataclass
class JointFit:
    """Point estimate and Gaussian posterior (in log-parameters) of a joint's dynamics."""

    values: dict[str, float]
    log_mean: np.ndarray
    log_covariance: np.ndarray
    rms_error: float  # m or rad, trajectory error at the optimum
    evaluations: int
    gravity: tuple[float, ...] | None = None
    """The weight the hand carried (`gravity_columns`' coefficients): a hinge's first moment of
    mass (kg·m) along the driven point's direction across the axis and across that; a slide's
    mass under gravity (kg). None: not fitted. A point estimate, outside the posterior."""

    def relative_std(self) -> dict[str, float]:
        """One-sigma relative uncertainty of each parameter."""
        return {name: float(np.sqrt(self.log_covariance[i, i])) for i, name in enumerate(PARAMS)}

    def samples(self, count: int, rng: np.random.Generator) -> list[dict[str, float]]:
        """Parameter sets drawn from the posterior (for rehearsing under uncertainty), each within a
        factor of `MAX_DRAW_FACTOR` of the estimate: a parameter the data hardly constrain has a
        log-variance in the hundreds (a 2 cm push fits no inertia), and its raw draws overflow."""
        draws = rng.multivariate_normal(self.log_mean, self.log_covariance, size=count)
        span = np.log(MAX_DRAW_FACTOR)
        draws = np.clip(draws, self.log_mean - span, self.log_mean + span)
        return [dict(zip(PARAMS, np.exp(d).tolist(), strict=True)) for d in draws]


def _one_joint_model(kind: str, timestep: float, limits: tuple[float, float],
                     params: dict[str, float]) -> mujoco.MjModel:
    """A single body on one joint, gravity off (the fitted joint is horizontal or balanced).

    Compiled per candidate: MuJoCo sets constraint softness from the inertia at compile time,
    so writing a new armature into a compiled model would leave dry friction mis-scaled.
    """
    spec = mujoco.MjSpec()
    spec.compiler.degree = False
    spec.option.timestep = timestep
    spec.option.gravity = [0, 0, 0]
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    body = spec.worldbody.add_body(name="part")
    joint = body.add_joint(name="joint", axis=[1, 0, 0])
    joint.type = mujoco.mjtJoint.mjJNT_SLIDE if kind == "prismatic" else mujoco.mjtJoint.mjJNT_HINGE
    if np.all(np.isfinite(limits)):
        joint.range = list(limits)
        joint.limited = mujoco.mjtLimited.mjLIMITED_TRUE
    joint.solref_friction = [0.005, 1.0]  # the same stiff dry friction as the puzzles' joints
    joint.solimp_friction = [0.99, 0.999, 0.001, 0.5, 2.0]
    joint.frictionloss = params["friction"]
    joint.damping = [params["damping"], 0.0, 0.0]  # linear term of MuJoCo's damping polynomial
    # The inertia lives in the body, not in the joint's armature: MuJoCo's constraint softness
    # follows the body inertia at compile time, and friction on a massless body is mush.
    body.explicitinertial = True
    body.mass = params["inertia"] if kind == "prismatic" else 1e-3
    body.inertia = [params["inertia"] if kind == "revolute" else 1e-6] * 3
    body.add_geom(name="part", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.01, 0, 0], contype=0, conaffinity=0,
                  group=3)
    return spec.compile()


def simulate(interaction: JointInteraction, params: dict[str, float]) -> np.ndarray:
    """Joint coordinate at the observation times when `params` drive the logged effort."""
    model = _one_joint_model(interaction.kind, interaction.timestep, interaction.limits, params)
    data = mujoco.MjData(model)
    steps = np.round(np.asarray(interaction.times) / interaction.timestep).astype(int)
    out = np.empty(len(steps))
    k = 0
    for i, effort in enumerate(interaction.effort):
        while k < len(steps) and steps[k] == i:
            out[k] = data.qpos[0]
            k += 1
        data.qfrc_applied[0] = effort
        mujoco.mj_step(model, data)
    while k < len(steps):
        out[k] = data.qpos[0]
        k += 1
    return out


def fit_joint(interaction: JointInteraction, initial: dict[str, float] | None = None,
              noise_std: float | None = None) -> JointFit:
    """Least-squares fit of friction, damping and inertia; Laplace posterior around it.

    Args:
        interaction: the logged effort and trajectory.
        initial: warm start (e.g. the previous fit, or a prior's mean); a generic guess otherwise.
        noise_std: observation noise (m or rad) for the posterior; the fit's residual if None.
    """
    observed = np.asarray(interaction.positions, dtype=float)

    def residuals(x: np.ndarray) -> np.ndarray:
        return simulate(interaction, dict(zip(PARAMS, np.exp(x), strict=True))) - observed

    # Dry friction makes the error surface ragged (stick or slip): without a warm start, try a
    # few starts spread over the plausible decades and keep the best.
    starts = [initial] if initial else [{"friction": f, "damping": c, "inertia": m}
                                        for f in COLD_FRICTION for c in COLD_DAMPING for m in COLD_INERTIA]
    if interaction.kind == "revolute" and not initial:
        starts = [{k: v * REVOLUTE_SCALE for k, v in g.items()} for g in starts]
    result, evaluations = None, 0
    for guess in starts:
        trial = least_squares(residuals, np.log([guess[p] for p in PARAMS]), diff_step=1e-3, max_nfev=100)
        evaluations += trial.nfev
        if result is None or trial.cost < result.cost:
            result = trial
    rms = float(np.sqrt(np.mean(result.fun**2)))
    sigma = noise_std if noise_std is not None else max(rms, 1e-9)
    jac = result.jac
    covariance = sigma**2 * np.linalg.pinv(jac.T @ jac)
    return JointFit(values=dict(zip(PARAMS, np.exp(result.x).tolist(), strict=True)), log_mean=result.x,
                    log_covariance=covariance, rms_error=rms, evaluations=int(evaluations))


# ---------------------------------------------------------------------- hand-driven motion
#
# A hand that holds or pushes a part moves it along a path of its own choosing (it is
# position controlled): replaying the measured effort open-loop is then ill-posed (the part
# moves only by the small excess of effort over friction, so the replay runs away or stalls).
# Instead the candidate is driven through the measured path by a stiff coupling, like the
# hand drove the real part, and the effort the coupling needs is compared with the effort the
# wrist sensor measured.

# The effort along a fitted joint is the wrench projected on the fitted axis (a slide) or taken
# about the fitted hinge line. The hand also pushes across the motion: a stiff hand following a
# door's arc pressed it into its hinge with up to 25 N. A fitted hinge a few millimetres off
# (a slide's axis a degree off) turns that force into an effort the joint never felt, 0.15 N·m
# on a door whose friction is 0.1 N·m: its damping fitted to zero and its friction 12 % high.
# The leak is linear in the across force with a fixed coefficient (the hinge's offset, the
# axis's tilt), so it is fitted alongside the dynamics, with a Gaussian prior on its size.
LEAK_PRIOR = {"prismatic": 0.03, "revolute": 0.01}  # rad of axis error, m of hinge offset (1 sigma)
# The replayed joint has no gravity; a part that lifts has. A lid's weight about its hinge (its
# first moment of mass, m·r, times g and the cosine of its angle) was 0.4 N·m against 0.05 N·m of
# friction, and fitted as friction: ten times too high, damping zero. Its torque is linear in
# the first moment's two components across the hinge (a slide's weight: in the mass), so it is
# fitted alongside the dynamics like the leak, with a prior on its size; a vertical hinge's or a
# level slide's columns are zero and fit nothing.
GRAVITY_PRIOR = {"prismatic": 0.5, "revolute": 0.05}  # kg of a slide, kg·m of a hinge's first moment (1 sigma)
GRAVITY = 9.81  # m/s^2

DRIVE_HZ = 15.0  # natural frequency of the coupling (well above the motion, well below 1/timestep)
DRIVEN_BOUNDS = (1e-4, 1e3)  # search range of every parameter (x0.01 for hinges): far outside desktop parts


@dataclass(frozen=True)
class DrivenMotion:
    """A part moved along its joint by the hand: the path and the effort the hand applied."""

    kind: str  # "prismatic" | "revolute"
    times: np.ndarray  # (n,) s from the start (the part at rest)
    positions: np.ndarray  # (n,) joint coordinate, m or rad, from 0
    efforts: np.ndarray  # (n,) N or N·m along the joint, measured
    timestep: float = 0.002  # s, of the replay
    across: np.ndarray | None = None
    """(n, 2) the hand's force across the motion in two fixed directions perpendicular to the
    fitted axis (N; for a hinge, axis x force): what an error in the fitted axis leaks into the
    measured effort, in proportion (`fit_driven` estimates that proportion with the dynamics)."""
    gravity: np.ndarray | None = None
    """Effort gravity puts on the joint per unit of the part's unknown mass distribution: (n, 2)
    N·m per kg·m of first moment in two directions across a hinge (which turn with it), (n, 1) N
    per kg along a slide (`gravity_columns`); None where gravity is not modelled."""


def gravity_columns(kind: str, axis: np.ndarray, down: np.ndarray, arms: np.ndarray | None = None) -> np.ndarray:
    """The effort a hand spends holding a part up, per unit of its unknown mass distribution.

    A hinge: the part's first moment m·r turns with it; written as a·u + b·(axis x u), with u the
    unit direction across the axis to the driven point (`arms`, (n, 3)), gravity's torque is
    g·axis·(m·r x down), linear in (a, b) (kg·m): columns -g·axis·(u x down), -g·axis·((axis x u)
    x down). A slide: -g·(axis·down) per kg of its weight. `down` is the unit direction of gravity
    in the joint's frame. The coefficients fitted to these columns are the first moment (a, b) or
    the weight's mass (`JointFit.gravity`).
    """
    axis, down = np.asarray(axis, dtype=float), np.asarray(down, dtype=float)
    if kind == "prismatic":
        n = 1 if arms is None else len(arms)
        return np.full((n, 1), -GRAVITY * float(axis @ down))
    if arms is None:
        raise ValueError("gravity_columns: a hinge's columns need the arms to the driven point")
    planar = arms - np.outer(arms @ axis, axis)
    u = planar / np.maximum(np.linalg.norm(planar, axis=1, keepdims=True), 1e-9)
    v = np.cross(axis, u)
    return -GRAVITY * np.column_stack([np.cross(u, down) @ axis, np.cross(v, down) @ axis])


def simulate_driven(motion: DrivenMotion, params: dict[str, float]) -> np.ndarray:
    """Effort a stiff coupling needs to drive `params`' joint through the path, at the sample times."""
    model = _one_joint_model(motion.kind, motion.timestep, (-np.inf, np.inf), params)
    data = mujoco.MjData(model)
    inertia = params["inertia"]
    omega = 2 * np.pi * DRIVE_HZ
    kp, kd = inertia * omega**2, 2.0 * inertia * omega
    grid = np.arange(0.0, motion.times[-1] + motion.timestep / 2, motion.timestep)
    q_ref = np.interp(grid, motion.times, motion.positions)
    v_ref = np.gradient(q_ref, motion.timestep)
    efforts = np.empty(len(grid))
    for k in range(len(grid)):
        efforts[k] = kp * (q_ref[k] - data.qpos[0]) + kd * (v_ref[k] - data.qvel[0])
        data.qfrc_applied[0] = efforts[k]
        mujoco.mj_step(model, data)
    return np.interp(motion.times, grid, efforts)


def regress_dynamics(motion: DrivenMotion, smoothing_s: float = 0.1) -> dict[str, float]:
    """Linear least squares of effort = friction·sign(v) + damping·v + inertia·a (a starting point).

    Velocities and accelerations come from the path, smoothed over `smoothing_s`; values are
    clipped to small positive numbers (a fit can come out negative on noisy data).
    """
    t, q = np.asarray(motion.times), np.asarray(motion.positions)
    width = max(3, int(round(smoothing_s / max(np.median(np.diff(t)), 1e-6))) | 1)
    kernel = np.ones(width) / width
    q_s = np.convolve(np.pad(q, width // 2, mode="edge"), kernel, mode="valid")
    v = np.gradient(q_s, t)
    a = np.gradient(v, t)
    moving = np.abs(v) > 0.2 * np.abs(v).max()
    columns = [np.sign(v), v, a] + [column for extra in (motion.across, motion.gravity) if extra is not None
                                     for column in np.asarray(extra).T]
    design = np.column_stack(columns)[moving]
    coef, *_ = np.linalg.lstsq(design, np.asarray(motion.efforts)[moving], rcond=None)
    scale = REVOLUTE_SCALE if motion.kind == "revolute" else 1.0
    floors = (0.01 * scale, 0.01 * scale, 0.01 * scale)
    return {name: float(max(c, f)) for name, c, f in zip(PARAMS, coef[:len(PARAMS)], floors, strict=True)}


def fit_driven(motions: DrivenMotion | list[DrivenMotion], initial: dict[str, float] | None = None,
               noise_std: float | None = None, prior: tuple[np.ndarray, np.ndarray] | None = None) -> JointFit:
    """Maximum a posteriori fit of friction, damping and inertia to the measured effort; Laplace posterior.

    The prior matters where the motion does not tell a parameter: a button's 12 mm stroke at safe
    speeds carries 0.1 N of damping force under 0.3 N of sensor noise, and its unregularised
    damping came out 4 to 15 times the true one. With the prior, such a parameter stays near the
    prior's median, with the prior's spread, and a well-excited one is the data's.

    Args:
        motions: one or more paths of the same joint with their measured efforts (an opening and
            a closing together tell friction from damping better than either alone).
        initial: warm start (the previous fit); the linear regression's estimate otherwise.
        noise_std: effort noise (N or N·m) for the posterior; the fit's residual if None.
        prior: (mean, standard deviation) of the log of each of `PARAMS`; `cold_prior` if None
            (a family's, `memory.FamilyMemory.dynamics_prior`, is sharper).
    """
    motions = [motions] if isinstance(motions, DrivenMotion) else list(motions)
    if not motions or len({m.kind for m in motions}) != 1:
        raise ValueError(f"fit_driven needs motions of one joint kind, got {[m.kind for m in motions]}")
    measured = np.concatenate([np.asarray(m.efforts, dtype=float) for m in motions])
    nuisance = _Nuisance.of(motions, measured)
    prior_mean, prior_std = cold_prior(motions[0].kind) if prior is None else (np.asarray(p, dtype=float)
                                                                               for p in prior)
    prior_weight = effort_noise(measured) / prior_std  # a prior row weighs as one sample per sigma

    def residuals(x: np.ndarray) -> np.ndarray:
        params = dict(zip(PARAMS, np.exp(x), strict=True))
        misfit = np.concatenate([simulate_driven(m, params) for m in motions]) - measured
        rows = misfit if nuisance is None else nuisance.remove(misfit)
        return np.concatenate([rows, prior_weight * (x - prior_mean)])

    guess = initial or regress_dynamics(max(motions, key=lambda m: len(m.times)))
    scale = REVOLUTE_SCALE if motions[0].kind == "revolute" else 1.0
    low, high = np.log(DRIVEN_BOUNDS[0] * scale), np.log(DRIVEN_BOUNDS[1] * scale)
    x0 = np.clip(np.log([guess[p] for p in PARAMS]), low + 1e-6, high - 1e-6)
    result = least_squares(residuals, x0, bounds=(low, high), diff_step=1e-3, max_nfev=60,
                           loss="soft_l1", f_scale=max(float(np.std(measured)) * 0.5, 1e-6))
    rms = float(np.sqrt(np.mean(result.fun[:len(measured)] ** 2)))  # the samples' misfit, not the prior's rows
    sigma = noise_std if noise_std is not None else max(rms, 1e-9)
    covariance = sigma**2 * np.linalg.pinv(result.jac.T @ result.jac)
    values = dict(zip(PARAMS, np.exp(result.x).tolist(), strict=True))
    gravity = None if nuisance is None else nuisance.gravity(
        np.concatenate([simulate_driven(m, values) for m in motions]) - measured)
    return JointFit(values=values, log_mean=result.x, log_covariance=covariance, rms_error=rms,
                    evaluations=int(result.nfev), gravity=gravity)


def effort_noise(measured: np.ndarray) -> float:
    """White noise of a measured effort from successive differences (robust: the motion's own
    changes are slow at 100 Hz)."""
    return max(float(np.median(np.abs(np.diff(measured)))) / (0.6745 * np.sqrt(2.0)), 1e-9)


@dataclass(frozen=True)
class _Nuisance:
    """Effort the replay does not model but that is linear in unknown coefficients: the leak of the
    across force (see LEAK_PRIOR) and gravity (GRAVITY_PRIOR). Removed from a misfit by ridge least
    squares on the coefficients, a posterior mean given the dynamics (variable projection), so the
    dynamics' fit and their covariance account for them."""

    columns: np.ndarray  # (n, k) stacked over motions
    weights: np.ndarray  # (k,) sqrt of the ridge: effort noise over each coefficient's prior sigma
    solver: np.ndarray  # (k, n): misfit -> minus the coefficients (the ridge's normal equations, solved once)
    gravity_at: slice | None = None  # which coefficients are gravity's

    @classmethod
    def of(cls, motions: list[DrivenMotion], measured: np.ndarray) -> _Nuisance | None:
        kind = motions[0].kind
        blocks, priors, gravity_at = [], [], None
        for name, prior in (("across", LEAK_PRIOR[kind]), ("gravity", GRAVITY_PRIOR[kind])):
            present = [np.asarray(getattr(m, name), dtype=float) for m in motions if getattr(m, name) is not None]
            if not present:
                continue
            width = present[0].shape[1]
            if name == "gravity":
                gravity_at = slice(len(priors), len(priors) + width)
            # a motion without one (a push leaks nothing) has zero rows for it
            blocks.append(np.concatenate([np.zeros((len(m.times), width)) if getattr(m, name) is None
                                          else np.asarray(getattr(m, name), dtype=float) for m in motions]))
            priors += [prior] * width
        if not blocks:
            return None
        columns = np.hstack(blocks)
        weights = effort_noise(measured) / np.asarray(priors)
        solver = np.linalg.solve(columns.T @ columns + np.diag(weights**2), columns.T)
        return cls(columns, weights, solver, gravity_at)

    def remove(self, misfit: np.ndarray) -> np.ndarray:
        """The misfit less its best nuisance, and the coefficients weighed by their prior (k rows)."""
        coef = -self.solver @ misfit
        return np.concatenate([misfit + self.columns @ coef, self.weights * coef])

    def gravity(self, misfit: np.ndarray) -> tuple[float, ...] | None:
        """Gravity's coefficients given the dynamics' misfit (None if no motion had its columns)."""
        if self.gravity_at is None:
            return None
        return tuple(float(c) for c in (-self.solver @ misfit)[self.gravity_at])
