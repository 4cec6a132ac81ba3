"""The safety layer against ground truth: a fake 3-joint arm whose TCP is 0.1 x its joints."""

from __future__ import annotations

import numpy as np
import pytest

from puzzlebot.real.interface import Capabilities, Command, ControlMode, Fault, FaultKind
from puzzlebot.real.safety import SafetyConfig, SafetyLayer

pytestmark = pytest.mark.fault

HZ = 25.0
DT = 1.0 / HZ
NAMES = ("base", "shoulder", "elbow")


def caps(vmax: float = 1.0, amax: float = 5.0, lower: float = -2.0, upper: float = 2.0,
         modes: tuple[ControlMode, ...] = (ControlMode.JOINT, ControlMode.EE)) -> Capabilities:
    return Capabilities("fake", NAMES, np.full(3, lower), np.full(3, upper), np.full(3, vmax), np.full(3, amax),
                        control_modes=modes, control_hz=HZ)


def fk(q: np.ndarray) -> np.ndarray:
    """TCP = 0.1 x joints: the workspace box maps exactly onto a joint box."""
    return 0.1 * np.asarray(q, dtype=float)


# Box: |x|, |y| <= 0.3 (never binding, joints stay within +-1.9) and z <= 0.12 (elbow <= 1.2).
CONFIG = SafetyConfig(joint_margin=0.1, max_joint_step=0.1, velocity_scale=0.5, acceleration_scale=0.5,
                      max_tcp_step=0.02, workspace_low=(-0.3, -0.3, -0.3), workspace_high=(0.3, 0.3, 0.12),
                      watchdog_s=0.2)
VMAX, AMAX = 0.5, 2.5  # scaled limits of the slow arm, rad/s and rad/s^2


def slow(q0=(0.0, 0.0, 0.0), t0: float = 0.0, **overrides) -> SafetyLayer:
    """Velocity/acceleration bind (0.02 rad and 0.004 rad in the first step)."""
    layer = SafetyLayer(caps(), SafetyConfig(**{**CONFIG.__dict__, **overrides}), fk)
    layer.resync(np.array(q0, dtype=float), t0)
    return layer


def fast(q0=(0.0, 0.0, 0.0), t0: float = 0.0, **overrides) -> SafetyLayer:
    """Velocity/acceleration far above the jump cap: only clipping and the cap act."""
    layer = SafetyLayer(caps(vmax=1e3, amax=1e6), SafetyConfig(**{**CONFIG.__dict__, **overrides}), fk)
    layer.resync(np.array(q0, dtype=float), t0)
    return layer


def joint(*q: float, grip: float = 0.0) -> Command:
    return Command(ControlMode.JOINT, np.array(q, dtype=float), grip)


def ee(pos, quat=(1.0, 0.0, 0.0, 0.0), grip: float = 0.0) -> Command:
    return Command(ControlMode.EE, np.array([*pos, *quat], dtype=float), grip)


def test_not_synced_rejected():
    layer = SafetyLayer(caps(), CONFIG, fk)
    report = layer.filter(joint(0, 0, 0), 0.0)
    assert report.rejected and report.sent is None and "resync" in report.reason
    assert not layer.watchdog_expired(10.0)
    with pytest.raises(RuntimeError):
        layer.hold_command(0.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_rejected_in_target_and_grip(bad):
    layer = fast(q0=(0.2, 0.1, 0.0))
    for command in (joint(0.3, bad, 0.0), joint(0.3, 0.1, 0.0, grip=bad), ee((0, 0, 0), (1, 0, bad, 0))):
        report = layer.filter(command, DT)
        assert report.rejected and report.sent is None and "non-finite" in report.reason
    np.testing.assert_array_equal(layer.reference, [0.2, 0.1, 0.0])
    with pytest.raises(ValueError):
        layer.resync(np.array([0.0, bad, 0.0]), 0.0)


def test_wrong_shape_and_unsupported_mode_rejected():
    layer = fast()
    for command in (joint(0.1, 0.1), joint(0.1, 0.1, 0.1, 0.1), Command(ControlMode.JOINT, np.zeros((3, 1))),
                    Command(ControlMode.EE, np.zeros(6))):
        report = layer.filter(command, DT)
        assert report.rejected and "shape" in report.reason
    joint_only = SafetyLayer(caps(modes=(ControlMode.JOINT,)), CONFIG, fk)
    joint_only.resync(np.zeros(3), 0.0)
    report = joint_only.filter(ee((0, 0, 0)), DT)
    assert report.rejected and "not supported" in report.reason


def test_limit_clip_ends_exactly_at_limit_minus_margin():
    layer = fast(q0=(1.85, -1.85, 0.0))
    report = layer.filter(joint(5.0, -7.0, 0.0), DT)
    assert not report.rejected
    upper, lower = 2.0 - CONFIG.joint_margin, -2.0 + CONFIG.joint_margin
    assert report.sent.target[0] == pytest.approx(upper, abs=1e-12)
    assert report.sent.target[1] == pytest.approx(lower, abs=1e-12)
    assert report.sent.target[2] == 0.0 and len(report.changes) == 2
    assert "clipped joint 0 (base) to upper limit - margin" in report.changes
    assert "clipped joint 1 (shoulder) to lower limit + margin" in report.changes
    # The slow arm gets there too, and never past it.
    layer = slow(q0=(1.7, 0.0, 0.0))
    sent = [layer.filter(joint(9.0, 0.0, 0.0), k * DT).sent.target[0] for k in range(1, 60)]
    assert max(sent) <= upper and sent[-1] == pytest.approx(upper, abs=1e-12)


def test_jump_cap_moves_reference_exactly_max_step():
    layer = fast()
    report = layer.filter(joint(1.8, -0.9, 0.0), DT)
    np.testing.assert_allclose(report.sent.target, [0.1, -0.05, 0.0], atol=1e-12)  # direction kept
    assert any("jump capped" in c for c in report.changes)
    np.testing.assert_allclose(layer.reference, report.sent.target)
    previous = report.sent.target
    for k in range(2, 30):
        sent = layer.filter(joint(1.8, -0.9, 0.0), k * DT).sent.target
        assert np.max(np.abs(sent - previous)) <= CONFIG.max_joint_step + 1e-12
        previous = sent
    np.testing.assert_allclose(previous, [1.8, -0.9, 0.0], atol=1e-12)


def test_velocity_and_acceleration_limits_hold_over_a_sequence():
    rng = np.random.default_rng(0)
    layer = slow(q0=(0.3, -0.2, 0.1))
    times, sent, changes = [0.0], [layer.reference], set()
    t, goal = 0.0, np.zeros(3)
    for k in range(300):  # jittery rate, a new random goal every 30 commands
        t += rng.uniform(0.02, 0.06)
        goal = rng.uniform(-1.9, [1.9, 1.9, 1.2]) if k % 30 == 0 else goal
        report = layer.filter(joint(*goal), t)
        assert not report.rejected, report.reason
        times.append(t), sent.append(report.sent.target), changes.update(report.changes)
    q, dts = np.array(sent), np.diff(times)
    dts[0] = DT  # the first command after a resync counts as one control period
    vel = np.diff(q, axis=0) / dts[:, None]
    acc = np.diff(np.vstack([np.zeros(3), vel]), axis=0) / dts[:, None]
    assert np.max(np.abs(vel)) <= VMAX + 1e-9
    assert np.max(np.abs(acc)) <= AMAX + 1e-9
    assert {"velocity limited", "acceleration limited"} <= changes
    # At a fixed rate a fixed goal is reached exactly, without overshoot.
    layer = slow()
    path = np.array([layer.filter(joint(1.5, -0.7, 0.2), k * DT).sent.target for k in range(1, 120)])
    np.testing.assert_allclose(path[-1], [1.5, -0.7, 0.2], atol=1e-12)
    assert path[:, 0].max() <= 1.5 + 1e-12 and path[:, 1].min() >= -0.7 - 1e-12


def test_workspace_reject_leaves_reference_unchanged():
    layer = fast(q0=(0.5, 0.5, 0.5))
    report = layer.filter(joint(0.5, 0.5, 1.5), DT)  # elbow 1.5 -> z = 0.15 > 0.12
    assert report.rejected and report.sent is None and "workspace" in report.reason
    np.testing.assert_array_equal(layer.reference, [0.5, 0.5, 0.5])
    report = layer.filter(joint(0.5, 0.5, 1.2), 2 * DT)  # on the box face: allowed, capped from 0.5
    assert not report.rejected
    np.testing.assert_allclose(report.sent.target, [0.5, 0.5, 0.6], atol=1e-12)


def test_workspace_reject_of_an_intermediate_target():
    """Both ends inside the box, but the capped step along the joint-space line is not."""
    def bent(q):
        return np.array([0.1 * q[0], 0.1 * q[1], 0.1 * q[0] * q[1]])

    config = SafetyConfig(**{**CONFIG.__dict__, "max_joint_step": 0.75, "workspace_high": (0.3, 0.3, 0.02)})
    layer = SafetyLayer(caps(vmax=1e3, amax=1e6), config, bent)
    layer.resync(np.array([1.5, 0.0, 0.0]), 0.0)
    report = layer.filter(joint(-1.5, 1.5, 0.0), DT)  # goal z = -0.225; first step z = 0.028
    assert report.rejected and "intermediate" in report.reason
    np.testing.assert_array_equal(layer.reference, [1.5, 0.0, 0.0])


def test_watchdog_expires_on_silence_and_hold_keeps_the_reference():
    layer = slow(t0=0.0, watchdog_s=0.05)
    assert not layer.watchdog_expired(0.05) and layer.watchdog_expired(0.0501)  # silence since resync
    for k in range(1, 10):
        last = layer.filter(joint(1.0, 0.0, 0.0, grip=0.7), 0.04 * k).sent  # cruising at 0.5 rad/s
    t_last = 0.36
    assert not layer.watchdog_expired(t_last + 0.05)
    assert layer.watchdog_expired(t_last + 0.0501)
    hold = layer.hold_command(t_last + 0.051)
    assert hold.mode is ControlMode.JOINT and hold.grip == 0.7 and hold.t == t_last + 0.051
    np.testing.assert_array_equal(hold.target, last.target)
    np.testing.assert_array_equal(layer.reference, last.target)
    assert layer.watchdog_expired(t_last + 0.055)  # only a sent command restarts it
    # The held arm is at rest: the next command accelerates from zero (0.009 rad, not 0.03 rad).
    sent = layer.filter(joint(1.0, 0.0, 0.0, grip=0.7), t_last + 0.06).sent
    assert sent.target[0] - last.target[0] == pytest.approx(AMAX * 0.06**2, rel=1e-9)
    assert not layer.watchdog_expired(t_last + 0.1)


@pytest.mark.parametrize("kind", [FaultKind.PROTECTIVE_STOP, FaultKind.EMERGENCY_STOP])
def test_stop_latches_until_explicit_clear_then_no_jump(kind):
    layer = slow()
    for k in range(1, 10):
        layer.filter(joint(1.0, 0.0, 0.0), k * DT)
    fault = Fault(kind, "bumped the lid", 0.4, vendor_code=7)
    assert layer.trip(fault) and layer.latched and layer.active_fault is fault
    for t in (0.44, 1.0, 100.0):
        report = layer.filter(joint(1.0, 0.0, 0.0), t)
        assert report.rejected and kind.value in report.reason and "clear" in report.reason
    layer.resync(np.array([0.3, 0.0, 0.0]), 100.0)  # a resync is not a clear
    assert layer.latched and layer.filter(joint(1.0, 0.0, 0.0), 100.04).rejected
    measured = np.array([-0.5, 0.4, 0.0])  # the arm was pushed away during the stop
    layer.clear(measured, 101.0)
    assert not layer.latched and layer.active_fault is None
    sent = layer.filter(joint(1.0, 0.0, 0.0), 101.04).sent.target
    # First command after the clear: at rest at the measured position, one period of acceleration.
    assert np.max(np.abs(sent - measured)) <= AMAX * DT**2 + 1e-12


@pytest.mark.parametrize("kind", [FaultKind.COMMS, FaultKind.WATCHDOG])
def test_non_latching_faults_do_not_latch(kind):
    layer = slow()
    assert not layer.trip(Fault(kind, "late packet", 0.0))
    assert not layer.latched and layer.active_fault is None
    assert not layer.filter(joint(0.1, 0.0, 0.0), DT).rejected


def test_resync_after_disconnect_caps_from_the_measured_position():
    layer = fast()
    for k in range(1, 11):
        layer.filter(joint(1.0, 1.0, 1.0), k * DT)
    np.testing.assert_allclose(layer.reference, [1.0, 1.0, 1.0], atol=1e-12)
    layer.trip(Fault(FaultKind.DISCONNECTED, "link down", 0.5))
    assert layer.filter(joint(1.0, 1.0, 1.0), 0.5).rejected
    measured = np.array([-1.0, 0.2, 0.0])  # reconnected: the arm sagged far from the old reference
    layer.clear(measured, 5.0)
    sent = layer.filter(joint(1.0, 1.0, 1.0), 5.04).sent.target  # the policy's stale target
    np.testing.assert_allclose(sent, measured + np.array([2.0, 0.8, 1.0]) * (0.1 / 2.0), atol=1e-12)
    # A plain resync (no latch) behaves the same.
    layer.resync(np.array([0.0, -1.0, 0.0]), 6.0)
    sent = layer.filter(joint(0.0, 1.0, 0.0), 6.04).sent.target
    np.testing.assert_allclose(sent, [0.0, -0.9, 0.0], atol=1e-12)


def test_ee_quaternion_normalised_and_translation_step_capped():
    layer = fast(q0=(0.5, 0.5, 0.5))  # TCP at (0.05, 0.05, 0.05)
    report = layer.filter(ee((0.05, 0.05, 0.05), (2.0, 0.0, 0.0, 2.0), grip=0.4), DT)
    np.testing.assert_allclose(report.sent.target[3:], [2 ** -0.5, 0, 0, 2 ** -0.5], atol=1e-12)
    assert any("quaternion normalised" in c for c in report.changes) and report.sent.grip == 0.4
    report = layer.filter(ee((0.05 + 0.06, 0.05 + 0.08, 0.05)), 2 * DT)  # 0.1 m away, capped to 0.02 m
    np.testing.assert_allclose(report.sent.target[:3], [0.05 + 0.012, 0.05 + 0.016, 0.05], atol=1e-12)
    assert any("TCP step capped" in c for c in report.changes)
    hold = layer.hold_command(1.0)  # after EE commands the hold is an EE pose, not a stale joint target
    assert hold.mode is ControlMode.EE
    np.testing.assert_allclose(hold.target, report.sent.target)
    report = layer.filter(joint(0.5, 0.5, 0.5), 3 * DT)
    assert report.rejected and "resync" in report.reason


def test_ee_out_of_box_and_zero_quaternion_rejected():
    layer = fast()
    for command, why in ((ee((0.0, 0.0, 0.13)), "workspace"), (ee((0.4, 0.0, 0.0)), "workspace"),
                         (ee((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0)), "zero norm"),
                         (ee((0.0, 0.0, 0.0), (1e-9, 0.0, 0.0, 0.0)), "zero norm")):
        report = layer.filter(command, DT)
        assert report.rejected and why in report.reason


def test_grip_clipped_to_unit_range():
    layer = fast()
    for grip, expected in ((1.5, 1.0), (-0.2, 0.0), (0.3, 0.3)):
        report = layer.filter(joint(0.0, 0.0, 0.0, grip=grip), DT)
        assert report.sent.grip == expected
        assert any("grip clipped" in c for c in report.changes) == (grip != expected)


def test_time_going_backwards_rejected():
    layer = fast(t0=1.0)
    assert not layer.filter(joint(0.1, 0.0, 0.0), 1.04).rejected
    report = layer.filter(joint(0.2, 0.0, 0.0), 1.0)
    assert report.rejected and "backwards" in report.reason


def test_unlimited_joints_are_not_clipped():
    endless = Capabilities("endless", NAMES, np.array([-np.inf, -2.0, -2.0]), np.array([np.inf, 2.0, 2.0]),
                           np.full(3, 1e3), np.full(3, 1e6), control_hz=HZ)
    config = SafetyConfig(**{**CONFIG.__dict__, "workspace_high": (1.0, 0.3, 0.3), "max_joint_step": 10.0})
    layer = SafetyLayer(endless, config, fk)
    layer.resync(np.zeros(3), 0.0)
    report = layer.filter(joint(5.0, 0.0, 0.0), DT)
    assert report.sent.target[0] == pytest.approx(5.0) and report.changes == ()


@pytest.mark.parametrize(("field", "value"), [
    ("joint_margin", -0.1), ("max_joint_step", 0.0), ("velocity_scale", 1.5), ("acceleration_scale", 0.0),
    ("max_tcp_step", -1.0), ("watchdog_s", 0.0), ("workspace_low", (0.0, 0.0, 0.5)), ("grip_max", 1.2),
])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SafetyConfig(**{**CONFIG.__dict__, field: value})


def test_margin_must_leave_a_range():
    with pytest.raises(ValueError, match="joint_margin"):
        SafetyLayer(caps(), SafetyConfig(**{**CONFIG.__dict__, "joint_margin": 2.0}), fk)


def test_caller_reusing_its_array_cannot_move_the_reference():
    layer = fast()
    target = np.array([0.05, 0.0, 0.0])
    sent = layer.filter(Command(ControlMode.JOINT, target), DT).sent
    target[:] = 1.5
    np.testing.assert_array_equal(layer.reference, [0.05, 0.0, 0.0])
    np.testing.assert_array_equal(sent.target, [0.05, 0.0, 0.0])
