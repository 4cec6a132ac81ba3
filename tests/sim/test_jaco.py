"""Jaco arm + hand: scene assembly, Cartesian reaching, grip, clipping, collisions, naming.

Every check is against measured MuJoCo state (site poses, qpos, contacts), not return values.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from puzzlebot.sim.robots.base import PART_BIT, ROBOT_BIT, STATIC_BIT, Mount
from puzzlebot.sim.robots.jaco import JacoArm, JacoController

BOX_POS = (-0.1, -0.3, 0.05)  # a fixed 10 cm cube beside the reach targets
BOX_HALF = 0.05
CONTROL_EVERY = 20  # physics steps per control step, as in the gymnasium env


def _quat_about_y(angle: float) -> np.ndarray:
    return np.array([np.cos(angle / 2), 0.0, np.sin(angle / 2), 0.0])


FORWARD = _quat_about_y(np.pi / 2)  # tool +z along world +x, tool +y along world +y
DOWN = _quat_about_y(np.pi)  # tool +z along world -z, tool +y along world +y


def _scene(with_robot: bool = True, mount: Mount | None = None) -> mujoco.MjSpec:
    """Floor plane and a fixed box (both static collision bits), then the Jaco at `mount`."""
    spec = mujoco.MjSpec()
    spec.compiler.degree = False
    spec.option.timestep = 0.002
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    statics = dict(contype=STATIC_BIT, conaffinity=ROBOT_BIT | PART_BIT)
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[2, 2, 0.1], **statics)
    box = spec.worldbody.add_body(name="box", pos=list(BOX_POS))
    box.add_geom(name="box_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[BOX_HALF] * 3, **statics)
    if with_robot:
        JacoArm().attach(spec, mount or Mount())
    return spec


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return _scene().compile()


@pytest.fixture()
def sim(model: mujoco.MjModel) -> tuple[mujoco.MjData, JacoController]:
    data = mujoco.MjData(model)
    ctrl = JacoArm().bind(model, data)
    ctrl.reset(data)
    return data, ctrl


def _angle_deg(qa: np.ndarray, qb: np.ndarray) -> float:
    neg, diff = np.zeros(4), np.zeros(4)
    mujoco.mju_negQuat(neg, qb)
    mujoco.mju_mulQuat(diff, qa, neg)
    return float(np.degrees(2 * np.arccos(min(1.0, abs(diff[0])))))


def _robot_self_contacts(model: mujoco.MjModel, data: mujoco.MjData, geoms: set[int]) -> int:
    pairs = data.contact.geom[: data.ncon]
    return int(sum(g1 in geoms and g2 in geoms for g1, g2 in pairs))


def test_scene_compiles_and_keeps_options(model: mujoco.MjModel) -> None:
    assert model.opt.timestep == pytest.approx(0.002)
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    assert model.nu == 9  # 6 arm + 3 finger position actuators
    assert model.geom("floor").type == mujoco.mjtGeom.mjGEOM_PLANE
    ctrl = JacoArm().bind(model, mujoco.MjData(model))
    assert len(ctrl.joint_names) == 6
    for g in ctrl.geom_ids():
        assert model.geom_contype[g] == ROBOT_BIT
        assert model.geom_conaffinity[g] == STATIC_BIT | PART_BIT
    fingers = [g for g in ctrl.geom_ids() if "finger" in model.geom(g).name]
    assert len(fingers) == 6
    for g in fingers:
        assert model.geom_priority[g] == 1 and model.geom_condim[g] == 4
        assert model.geom_friction[g, 0] == pytest.approx(1.5)
    arm_bodies = {model.geom_bodyid[g] for g in ctrl.geom_ids()}
    assert all(model.body_gravcomp[b] == 1.0 for b in arm_bodies)


def test_all_robot_elements_named_and_prefixed(model: mujoco.MjModel) -> None:
    bare = _scene(with_robot=False).compile()
    objs = {
        mujoco.mjtObj.mjOBJ_BODY: "nbody",
        mujoco.mjtObj.mjOBJ_JOINT: "njnt",
        mujoco.mjtObj.mjOBJ_GEOM: "ngeom",
        mujoco.mjtObj.mjOBJ_SITE: "nsite",
        mujoco.mjtObj.mjOBJ_ACTUATOR: "nu",
        mujoco.mjtObj.mjOBJ_MESH: "nmesh",
        mujoco.mjtObj.mjOBJ_MATERIAL: "nmat",
        mujoco.mjtObj.mjOBJ_EXCLUDE: "nexclude",
    }
    for obj, count in objs.items():
        before = {mujoco.mj_id2name(bare, obj, i) for i in range(getattr(bare, count))}
        after = [mujoco.mj_id2name(model, obj, i) for i in range(getattr(model, count))]
        added = [n for n in after if n not in before]
        assert len(added) == getattr(model, count) - getattr(bare, count), obj  # none unnamed
        assert all(n and n.startswith("jaco/") for n in added), (obj, added)
    assert model.site("jaco/tcp").id >= 0


def test_tcp_convention(sim: tuple[mujoco.MjData, JacoController], model: mujoco.MjModel) -> None:
    """+z out of the palm to the fingertips; +y from the thumb towards fingers 2 and 3."""
    data, ctrl = sim
    pos, quat = ctrl.tcp_pose()
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, quat)
    rot = rot.reshape(3, 3)

    def in_tool(body: str) -> np.ndarray:
        return rot.T @ (data.xpos[model.body(body).id] - pos)

    palm = in_tool("jaco/hand/hand")
    assert palm[2] < -0.1 and np.hypot(palm[0], palm[1]) < 0.01
    thumb, f2, f3 = (in_tool(f"jaco/hand/b_finger_tip_{i}") for i in (1, 2, 3))
    assert thumb[1] < -0.02 and f2[1] > 0.02 and f3[1] > 0.02
    assert np.sign(f2[0]) == -np.sign(f3[0])
    # Closing moves the thumb along +y and the two fingers along -y.
    ctrl.set_grip(1.0)
    for _ in range(500):
        mujoco.mj_step(model, data)
    pos, quat = ctrl.tcp_pose()
    mujoco.mju_quat2Mat(rot.reshape(9), quat)
    assert in_tool("jaco/hand/b_finger_tip_1")[1] > thumb[1] + 0.01
    assert in_tool("jaco/hand/b_finger_tip_2")[1] < f2[1] - 0.01


@pytest.mark.parametrize(
    "target, quat",
    [
        ((0.0, 0.0, 0.20), DOWN),
        ((0.10, 0.10, 0.10), DOWN),
        ((-0.10, -0.12, 0.30), FORWARD),
        ((0.12, -0.10, 0.25), FORWARD),
        ((-0.12, 0.12, 0.08), FORWARD),
    ],
)
def test_reaches_cartesian_targets(sim, model, target, quat) -> None:
    data, ctrl = sim
    geoms = set(ctrl.geom_ids().tolist())
    target = np.array(target)
    start, _ = ctrl.tcp_pose()
    assert np.linalg.norm(start - target) > 0.1  # a real move from home
    for step in range(1000):  # 2 s
        if step % CONTROL_EVERY == 0:
            ctrl.set_tcp_target(target, quat)
        mujoco.mj_step(model, data)
        assert _robot_self_contacts(model, data, geoms) == 0
    assert np.all(np.isfinite(data.qpos)) and np.all(np.isfinite(data.qvel))
    pos, measured = ctrl.tcp_pose()
    assert np.linalg.norm(pos - target) < 0.01
    assert _angle_deg(measured, quat) < 5.0
    assert np.abs(ctrl.joint_velocities()).max() < 0.05  # settled, not passing through


def test_grip_closes_and_opens(sim, model) -> None:
    data, ctrl = sim
    tips = [model.body(f"jaco/hand/b_finger_tip_{i}").id for i in (1, 2, 3)]

    def spread() -> float:
        return float(np.linalg.norm(data.xpos[tips[0]] - data.xpos[tips[1]]))

    assert ctrl.grip() < 0.05
    open_spread = spread()
    ctrl.set_grip(1.0)
    for _ in range(500):
        mujoco.mj_step(model, data)
    assert ctrl.grip() > 0.9
    assert spread() < open_spread - 0.05
    ctrl.set_grip(0.0)
    for _ in range(500):
        mujoco.mj_step(model, data)
    assert ctrl.grip() < 0.1
    assert spread() == pytest.approx(open_spread, abs=0.01)


def test_set_joint_targets_clips_to_ranges(sim, model) -> None:
    data, ctrl = sim
    lo2, hi2 = model.joint("jaco/joint_2").range
    lo3, hi3 = model.joint("jaco/joint_3").range
    wanted = np.array([0.3, hi2 + 1.0, lo3 - 1.0, -0.5, 0.2, 7.0])
    sent = ctrl.set_joint_targets(wanted)
    np.testing.assert_allclose(sent, [0.3, hi2, lo3, -0.5, 0.2, 7.0])
    act = [model.actuator(f"jaco/act_joint_{i}").id for i in range(1, 7)]
    np.testing.assert_allclose(data.ctrl[act], sent)
    # A reachable, in-range command is tracked by the measured joints.
    target = np.array(ctrl.config.home) + np.array([0.3, -0.2, 0.2, 0.3, -0.3, 0.3])
    ctrl.set_joint_targets(target)
    for _ in range(1000):
        mujoco.mj_step(model, data)
    np.testing.assert_allclose(ctrl.joint_positions(), target, atol=0.02)


def test_collides_with_static_box_not_itself(sim, model) -> None:
    """Pressing into a fixed box: the hand is stopped on it and never self-collides."""
    data, ctrl = sim
    geoms = set(ctrl.geom_ids().tolist())
    box = model.geom("box_geom").id
    top = BOX_POS[2] + BOX_HALF
    into = np.array([BOX_POS[0], BOX_POS[1], top - 0.03])  # TCP asked 3 cm into the box
    touched, deepest = False, 0.0
    for step in range(1500):
        if step % CONTROL_EVERY == 0:
            ctrl.set_tcp_target(into, DOWN)
        mujoco.mj_step(model, data)
        for con in data.contact[: data.ncon]:
            a, b = con.geom
            if (a in geoms and b == box) or (b in geoms and a == box):
                touched, deepest = True, min(deepest, con.dist)
        assert _robot_self_contacts(model, data, geoms) == 0
    assert touched
    assert deepest > -0.005  # robot geoms rest on the box instead of passing through
    pos, _ = ctrl.tcp_pose()
    assert pos[2] > into[2] + 0.01  # blocked well short of the commanded depth
    assert np.all(np.isfinite(data.qpos))


def test_mount_position_and_yaw() -> None:
    mount = Mount(pos=(0.2, -0.1, 0.05), yaw=np.pi / 2)
    model = _scene(mount=mount).compile()
    data = mujoco.MjData(model)
    ctrl = JacoArm().bind(model, data)
    ctrl.reset(data)
    base = model.body("jaco/b_base").id
    np.testing.assert_allclose(data.xpos[base], mount.pos, atol=1e-9)
    ref_model = _scene().compile()
    ref_data = mujoco.MjData(ref_model)
    ref = JacoArm().bind(ref_model, ref_data)
    ref.reset(ref_data)
    ref_pos, _ = ref.tcp_pose()
    yaw = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # +90° about z
    expected = yaw @ (ref_pos - np.array(Mount().pos)) + np.array(mount.pos)
    np.testing.assert_allclose(ctrl.tcp_pose()[0], expected, atol=1e-6)
