"""The fitted model: its MuJoCo content equals its inputs, it is physical, and it survives a save."""

from __future__ import annotations

import json
from dataclasses import replace

import mujoco
import numpy as np
import pytest

from puzzlebot.agent import sysid
from puzzlebot.agent.articulation import Articulation
from puzzlebot.agent.fitted_model import FittedModel, FittedPart, lock_graph_from, prior_fit
from puzzlebot.agent.locks import Attempt, LockBeliefs
from puzzlebot.agent.sysid import PARAMS, JointFit, JointInteraction

YAW = 0.5
BASE_POS = np.array([0.3, -0.1, 0.0])
BASE_QUAT = np.array([np.cos(YAW / 2), 0.0, 0.0, np.sin(YAW / 2)])
FACING_MINUS_X = np.array([np.cos(-np.pi / 4), 0.0, np.sin(-np.pi / 4), 0.0])  # marker normal along -x


def joint_fit(values: dict[str, float], log_std: list[float], correlation: float = 0.3) -> JointFit:
    std = np.array(log_std)
    corr = np.full((3, 3), correlation) + (1 - correlation) * np.eye(3)
    return JointFit(values=values, log_mean=np.log([values[p] for p in PARAMS]),
                    log_covariance=corr * np.outer(std, std), rms_error=0.001, evaluations=42)


def drawer() -> FittedPart:
    axis = np.array([-1.0, 0.2, 0.0]) / np.linalg.norm([-1.0, 0.2, 0.0])
    art = Articulation(kind="prismatic", axis=axis, coordinates=np.linspace(-0.01, 0.11, 5),
                       observed_range=(-0.01, 0.11), axis_std_deg=0.8,
                       scores={"fixed": 900.0, "prismatic": 10.0, "revolute": 14.0})
    return FittedPart("drawer_0", 3, art, rest_position=np.array([-0.1, 0.02, 0.08]), rest_quaternion=FACING_MINUS_X,
                      handle=np.array([-0.15, 0.02, 0.06]),
                      dynamics=joint_fit({"friction": 2.0, "damping": 5.0, "inertia": 0.45}, [0.1, 0.2, 0.3]))


def door() -> FittedPart:
    art = Articulation(kind="revolute", axis=np.array([0.0, 0.0, 1.0]), origin=np.array([-0.09, 0.08, 0.1]),
                       observed_range=(0.0, 1.5), axis_std_deg=1.5, origin_std_m=0.002)
    return FittedPart("door_1", 5, art, rest_position=np.array([-0.1, 0.02, 0.12]), rest_quaternion=FACING_MINUS_X,
                      handle=np.array([-0.12, -0.03, 0.12]),
                      dynamics=joint_fit({"friction": 0.05, "damping": 0.05, "inertia": 0.007}, [0.2, 0.4, 0.25]))


def panel() -> FittedPart:
    return FittedPart("marker_7", 7, Articulation(kind="fixed"), rest_position=np.array([-0.1, -0.1, 0.15]),
                      rest_quaternion=np.array([1.0, 0, 0, 0]))


def make_model(**parts: FittedPart) -> FittedModel:
    chosen = {"drawer_0": drawer(), "door_1": door(), "marker_7": panel(), **parts}
    return FittedModel(parts=list(chosen.values()), base_position=BASE_POS, base_quaternion=BASE_QUAT,
                       lock_graph={"door_1": {"drawer_0": 0.9, "marker_7": 0.1}, "drawer_0": {"door_1": 0.05}})


def to_world(point: np.ndarray) -> np.ndarray:
    return BASE_POS + base_rotation() @ point


def base_rotation() -> np.ndarray:
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, BASE_QUAT)
    return rot.reshape(3, 3)


def forward(model: mujoco.MjModel) -> mujoco.MjData:
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return data


def test_joints_equal_the_inputs():
    fitted = make_model()
    model = fitted.compile()
    data = forward(model)
    assert model.njnt == 2 and model.body("base").parentid[0] == 0
    for part, kind in ((drawer(), mujoco.mjtJoint.mjJNT_SLIDE), (door(), mujoco.mjtJoint.mjJNT_HINGE)):
        joint = model.joint(f"{part.name}/joint")
        dof = joint.dofadr[0]
        assert joint.type[0] == kind
        assert model.body(int(joint.bodyid[0])).name == part.name
        np.testing.assert_allclose(data.xaxis[joint.id], base_rotation() @ part.articulation.axis, atol=1e-9)
        np.testing.assert_allclose(joint.range, part.articulation.observed_range)
        assert joint.limited[0] == 1
        values = part.dynamics.values
        assert model.dof_frictionloss[dof] == pytest.approx(values["friction"])
        assert model.dof_damping[dof] == pytest.approx(values["damping"])
        assert model.dof_armature[dof] == 0
        # The fitted effective inertia is what the joint feels: mass of the slide, inertia about the hinge.
        unit, column = np.zeros(model.nv), np.zeros(model.nv)
        unit[dof] = 1.0
        mujoco.mj_mulM(model, data, column, unit)
        assert column[dof] == pytest.approx(values["inertia"], rel=1e-9)
        # At rest the body frame is the marker's pose.
        np.testing.assert_allclose(data.xpos[model.body(part.name).id], to_world(part.rest_position), atol=1e-12)
    assert model.geom("marker_7/marker").bodyid[0] == model.body("base").id
    assert np.all(model.geom_contype == 0) and np.all(model.geom_conaffinity == 0)


def test_hinge_anchor_on_the_axis_line_and_handle_sites_at_the_handles():
    model = make_model().compile()
    data = forward(model)
    part = door()
    anchor = data.xanchor[model.joint("door_1/joint").id]
    axis = base_rotation() @ part.articulation.axis
    np.testing.assert_allclose(np.cross(anchor - to_world(part.articulation.origin), axis), 0, atol=1e-12)
    for part in (drawer(), door()):
        np.testing.assert_allclose(data.site(f"{part.name}/handle").xpos, to_world(part.handle), atol=1e-12)


def test_friction_settings_match_the_replay_model_of_sysid():
    model = make_model().compile()
    one = sysid._one_joint_model("prismatic", 0.002, (0.0, 0.1), drawer().dynamics.values)
    dof = model.joint("drawer_0/joint").dofadr[0]
    np.testing.assert_array_equal(model.dof_solref[dof], one.dof_solref[0])
    np.testing.assert_array_equal(model.dof_solimp[dof], one.dof_solimp[0])


@pytest.mark.parametrize("make_part", [drawer, door])
def test_replay_in_the_fitted_model_matches_sysid(make_part):
    part = make_part()
    fitted = make_model()
    model = fitted.compile()
    kind = part.articulation.kind
    friction = part.dynamics.values["friction"]
    effort = np.concatenate([np.full(150, 2.0 * friction), np.zeros(150), np.full(150, -1.6 * friction),
                             np.zeros(100)])
    times = np.arange(0, len(effort), 10) * model.opt.timestep
    replayed = sysid.simulate(JointInteraction(kind, model.opt.timestep, effort, times, np.zeros(len(times)),
                                               limits=part.articulation.observed_range), part.dynamics.values)
    data = mujoco.MjData(model)
    joint = model.joint(f"{part.name}/joint")
    ours = []
    for i, f in enumerate(effort):
        if i % 10 == 0:
            ours.append(data.qpos[joint.qposadr[0]])
        data.qfrc_applied[joint.dofadr[0]] = f
        mujoco.mj_step(model, data)
    assert np.ptp(replayed) > 0.1 * np.ptp(part.articulation.observed_range)  # it really moved
    np.testing.assert_allclose(ours, replayed, atol=1e-6 * np.ptp(part.articulation.observed_range))


def test_slide_sticks_below_its_friction_and_slides_above():
    model = make_model().compile()
    joint = model.joint("drawer_0/joint")
    friction = drawer().dynamics.values["friction"]
    for factor, moves in ((0.8, False), (2.0, True)):
        data = mujoco.MjData(model)
        for _ in range(250):  # 0.5 s
            data.qfrc_applied[joint.dofadr[0]] = factor * friction
            mujoco.mj_step(model, data)
        q = data.qpos[joint.qposadr[0]]
        assert (q > 0.01) if moves else (abs(q) < 1e-4), (factor, q)


def test_mjcf_reloads_with_the_same_joints():
    # MuJoCo's XML writer keeps 6 significant digits; the JSON of `save` keeps full precision.
    fitted = make_model()
    model = fitted.compile()
    reloaded = mujoco.MjModel.from_xml_string(fitted.mjcf())
    assert reloaded.njnt == model.njnt
    for i in range(model.njnt):
        name = model.joint(i).name
        assert reloaded.joint(name).type[0] == model.joint(i).type[0]
        np.testing.assert_allclose(reloaded.joint(name).range, model.joint(i).range)
    for field in ("jnt_axis", "jnt_pos", "dof_frictionloss", "dof_damping", "dof_solref", "dof_solimp",
                  "jnt_solref", "body_mass", "body_inertia", "body_ipos", "body_pos", "body_quat", "site_pos"):
        np.testing.assert_allclose(getattr(reloaded, field), getattr(model, field), rtol=1e-5, atol=1e-6,
                                   err_msg=field)


def test_save_and_load_round_trip(tmp_path):
    fitted = make_model(marker_9=FittedPart("marker_9", 9, Articulation(kind="prismatic", axis=np.array([0, 0, 1.0]),
                                                                        observed_range=(0.0, 0.02)),
                                            rest_position=np.zeros(3), rest_quaternion=np.array([1.0, 0, 0, 0])))
    fitted.save(tmp_path)
    assert (tmp_path / "fitted_model.xml").read_text() == fitted.mjcf()
    stored = json.loads((tmp_path / "fitted_model.json").read_text())
    assert stored["parts"][0]["articulation"]["probabilities"]["prismatic"] > 0.5
    loaded = FittedModel.load(tmp_path)
    assert loaded.mjcf() == fitted.mjcf()
    assert loaded.lock_graph == fitted.lock_graph
    for a, b in zip(loaded.parts, fitted.parts, strict=True):
        assert (a.name, a.marker_id, a.articulation.kind) == (b.name, b.marker_id, b.articulation.kind)
        assert a.articulation.scores == b.articulation.scores
        np.testing.assert_array_equal(a.articulation.coordinates, b.articulation.coordinates)
        np.testing.assert_equal(a.articulation.axis_std_deg, b.articulation.axis_std_deg)  # nan survives too
        if b.dynamics is None:
            assert a.dynamics is None
        else:
            np.testing.assert_array_equal(a.dynamics.log_covariance, b.dynamics.log_covariance)
            assert a.dynamics.rms_error == b.dynamics.rms_error


def test_sampled_params_spread_with_the_posterior():
    fitted = make_model(door_1=replace(door(), dynamics=None))  # the door falls back on the prior
    draws = fitted.sample_params(2000, np.random.default_rng(0))
    assert len(draws) == 2000 and set(draws[0]) == {"drawer_0", "door_1"}
    for name, fit in (("drawer_0", drawer().dynamics), ("door_1", prior_fit("revolute"))):
        logs = np.log([[d[name][p] for p in PARAMS] for d in draws])
        std = np.sqrt(np.diag(fit.log_covariance))
        np.testing.assert_allclose(logs.std(axis=0), std, rtol=0.2)
        assert np.all(np.abs(logs.mean(axis=0) - fit.log_mean) < 0.1 * std + 1e-9)
    # A draw is a valid parameter set for the model.
    model = fitted.compile(draws[0])
    dof = model.joint("drawer_0/joint").dofadr[0]
    assert model.dof_frictionloss[dof] == pytest.approx(draws[0]["drawer_0"]["friction"])


def test_the_prior_covers_the_mechanism_defaults():
    for kind, friction, inertia in (("prismatic", 2.0, 0.45), ("revolute", 0.05, 0.007)):
        fit = prior_fit(kind)
        z = (np.log([friction, inertia]) - fit.log_mean[[0, 2]]) / np.sqrt(np.diag(fit.log_covariance)[[0, 2]])
        assert np.all(np.abs(z) < 2), (kind, z)


def bad(part: FittedPart, **articulation) -> FittedPart:
    return replace(part, articulation=replace(part.articulation, **articulation))


@pytest.mark.parametrize(("build", "field"), [
    (lambda: bad(drawer(), axis=np.array([2.0, 0, 0])), "articulation.axis"),
    (lambda: bad(drawer(), axis=np.array([np.nan, 0, 1.0])), "articulation.axis"),
    (lambda: bad(door(), origin=None), "articulation.origin"),
    (lambda: bad(door(), kind="ball"), "articulation.kind"),
    (lambda: bad(drawer(), observed_range=(0.02, 0.1)), "articulation.observed_range"),
    (lambda: replace(drawer(), rest_position=np.array([0, np.nan, 0])), "rest_position"),
    (lambda: replace(drawer(), rest_quaternion=np.array([1.0, 1.0, 0, 0])), "rest_quaternion"),
    (lambda: replace(drawer(), handle=np.zeros(2)), "handle"),
    (lambda: replace(drawer(), dynamics=replace(drawer().dynamics, log_covariance=np.eye(2))),
     "dynamics.log_covariance"),
    (lambda: replace(drawer(), dynamics=replace(drawer().dynamics, values={"friction": 1.0})), "dynamics.values"),
])
def test_invalid_parts_are_rejected_naming_the_part_and_field(build, field):
    with pytest.raises(ValueError, match=field) as err:
        build()
    assert "drawer_0" in str(err.value) or "door_1" in str(err.value)


def test_invalid_models_are_rejected_naming_the_field():
    with pytest.raises(ValueError, match="base_quaternion"):
        FittedModel([drawer()], BASE_POS, np.zeros(4), {})
    with pytest.raises(ValueError, match="marker_id"):
        FittedModel([drawer(), replace(door(), marker_id=3)], BASE_POS, BASE_QUAT, {})
    with pytest.raises(ValueError, match="unknown part 'lid'"):
        FittedModel([drawer()], BASE_POS, BASE_QUAT, {"lid": {"drawer_0": 0.5}})
    with pytest.raises(ValueError, match="marker_7"):
        make_model().compile({"marker_7": {"friction": 1.0}})
    with pytest.raises(ValueError, match="friction"):
        make_model().compile({"drawer_0": {"friction": -1.0}})


def test_update_part_replaces_one_part_and_blockers_read_the_graph():
    fitted = make_model()
    refit = replace(drawer(), dynamics=joint_fit({"friction": 3.0, "damping": 4.0, "inertia": 0.5}, [0.1] * 3))
    fitted.update_part(refit)
    model = fitted.compile()
    assert model.dof_frictionloss[model.joint("drawer_0/joint").dofadr[0]] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="no part named 'lid'"):
        fitted.update_part(replace(drawer(), name="lid"))
    with pytest.raises(ValueError, match="marker_id"):  # a rejected update leaves the model as it was
        fitted.update_part(replace(door(), marker_id=3))
    assert fitted.part("door_1").marker_id == 5
    assert fitted.blockers("door_1") == ["drawer_0"]
    assert fitted.blockers("door_1", threshold=0.05) == ["drawer_0", "marker_7"]
    assert fitted.blockers("marker_7") == []


def test_lock_graph_from_beliefs():
    beliefs = LockBeliefs(["drawer_0", "door_1", "marker_7"])
    for _ in range(4):
        beliefs.update(Attempt("door_1", frozenset(), moved=False))
        beliefs.update(Attempt("door_1", frozenset({"drawer_0"}), moved=True))
    graph = lock_graph_from(beliefs)
    fitted = FittedModel([drawer(), door(), panel()], BASE_POS, BASE_QUAT, graph)
    assert fitted.blockers("door_1") == ["drawer_0"]
    assert set(graph["door_1"]) == {"drawer_0", "marker_7"}


def lid(gravity: tuple[float, ...] | None) -> FittedPart:
    """A lid hinged at the back on a level axis, its handle 20 cm in front of the hinge."""
    art = Articulation(kind="revolute", axis=np.array([0.0, 1.0, 0.0]), origin=np.array([-0.1, 0.0, 0.2]),
                       observed_range=(0.0, 1.8), axis_std_deg=1.0, origin_std_m=0.002)
    fit = replace(joint_fit({"friction": 0.05, "damping": 0.05, "inertia": 0.02}, [0.2, 0.4, 0.25]), gravity=gravity)
    return FittedPart("lid_2", 6, art, rest_position=np.array([0.0, 0.0, 0.21]),
                      rest_quaternion=np.array([1.0, 0, 0, 0]), handle=np.array([0.1, 0.0, 0.2]), dynamics=fit)


def test_a_lids_fitted_weight_is_in_the_model(tmp_path):
    """The weight the hand carried (`JointFit.gravity`: 0.03 kg·m of first moment, out along the
    handle's arm) pulls the model's lid shut with g·0.03 N·m at rest, at the fitted inertia; a lid
    without a fitted weight stays weightless, as in sysid's replay."""
    weighted = make_model(lid_2=lid((0.03, 0.0)))
    model = weighted.compile()
    data = forward(model)
    dof = model.joint("lid_2/joint").dofadr[0]
    assert abs(abs(data.qfrc_bias[dof] - data.qfrc_gravcomp[dof]) - 9.81 * 0.03) < 1e-3
    full = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, full)
    assert full[dof, dof] == pytest.approx(0.02, rel=1e-3)
    data.qpos[model.joint("lid_2/joint").qposadr[0]] = np.pi / 2  # upright: its weight over the hinge
    mujoco.mj_forward(model, data)
    assert abs(data.qfrc_bias[dof] - data.qfrc_gravcomp[dof]) < 1e-3
    weightless = forward(make_model(lid_2=lid(None)).compile())
    assert abs(weightless.qfrc_bias[dof] - weightless.qfrc_gravcomp[dof]) < 1e-6
    weighted.save(tmp_path)
    assert FittedModel.load(tmp_path).part("lid_2").dynamics.gravity == (0.03, 0.0)
