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

    def relative_std(self) -> dict[str, float]:
        """One-sigma relative uncertainty of each parameter."""
        return {name: float(np.sqrt(self.log_covariance[i, i])) for i, name in enumerate(PARAMS)}

    def samples(self, count: int, rng: np.random.Generator) -> list[dict[str, float]]:
        """Parameter sets drawn from the posterior (for rehearsing under uncertainty)."""
        draws = rng.multivariate_normal(self.log_mean, self.log_covariance, size=count)
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
