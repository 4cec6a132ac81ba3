"""The lockbox gymnasium envs: API contract, determinism, control, randomization, dm_env adapter.

Every check reads measured MuJoCo state or observations, not the env's own bookkeeping.
"""

from __future__ import annotations

import warnings

import dm_env
import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import puzzlebot.sim  # noqa: F401  (registers the ids)
from puzzlebot.sim.dm_env_adapter import DmEnvAdapter
from puzzlebot.sim.env import EnvConfig, LockboxEnv
from puzzlebot.sim.randomization import DomainRandomization, RandomizationConfig
from puzzlebot.sim.registry import ENVS, register_envs

SMALL = (24, 32)  # image size for tests: rendering cost, not resolution, is what matters here
IDS = sorted(ENVS)


def _make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(env_id, image_size=SMALL, **kwargs)


def _ee_action(move=(0.0, 0.0, 0.0), turn=(0.0, 0.0, 0.0), grip: float = -1.0) -> np.ndarray:
    return np.array([*move, *turn, grip], dtype=np.float32)


def _rollout(env: gym.Env, seed: int, n: int = 30) -> tuple[list, list]:
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    observations, rewards = [obs], []
    for _ in range(n):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        rewards.append(reward)
        assert not (terminated or truncated)
    return observations, rewards


def _flatten(obs: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in obs.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes(env_id):
    env = _make(env_id, render_mode="rgb_array", privileged=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Box observation space (minimum|maximum) value is.*")
        check_env(env.unwrapped)
    env.close()


def test_registration_is_idempotent():
    before = {env_id: gym.spec(env_id) for env_id in IDS}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium warns when an id is overridden
        register_envs()
    assert all(gym.spec(env_id) is before[env_id] for env_id in IDS)
    assert all(gym.spec(env_id).max_episode_steps == 500 for env_id in IDS)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_rollout(env_id):
    env_a, env_b = _make(env_id, privileged=True), _make(env_id, privileged=True)
    obs_a, rew_a = _rollout(env_a, seed=7)
    obs_b, rew_b = _rollout(env_b, seed=7)
    assert rew_a == rew_b
    for step_a, step_b in zip(obs_a, obs_b, strict=True):
        flat_a, flat_b = _flatten(step_a), _flatten(step_b)
        assert flat_a.keys() == flat_b.keys() == {"proprio", "images/front", "privileged"}
        for key in flat_a:
            np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=key)
    # The robot actually moved: the rollout compares something that changes.
    assert np.linalg.norm(obs_a[-1]["proprio"][:3] - obs_a[0]["proprio"][:3]) > 0.01
    env_a.close()
    env_b.close()


def test_different_seed_different_placement():
    env = LockboxEnv(EnvConfig(cameras=()))
    cfg = env.config
    placements, drawer_in_base = [], []
    for seed in (0, 1, 2):
        env.reset(seed=seed)
        base, drawer = env.data.body("base"), env.data.body("drawer")
        yaw = 2 * np.arctan2(base.xquat[3], base.xquat[0])
        placements.append((*base.xpos[:2], yaw))
        assert np.all(np.abs(base.xpos[:2]) <= cfg.jitter_pos) and abs(yaw) <= cfg.jitter_yaw
        np.testing.assert_allclose(base.xpos[:2], env.placement.pos)
        assert yaw == pytest.approx(env.placement.yaw)
        # The parts moved with the base: same pose in the base frame.
        drawer_in_base.append(base.xmat.reshape(3, 3).T @ (drawer.xpos - base.xpos))
    np.testing.assert_allclose(drawer_in_base[1], drawer_in_base[0], atol=1e-12)
    np.testing.assert_allclose(drawer_in_base[2], drawer_in_base[0], atol=1e-12)
    assert len({tuple(np.round(p, 9)) for p in placements}) == 3
    env.reset(seed=0)
    np.testing.assert_array_equal(env.data.body("base").xpos[:2], placements[0][:2])


def test_privileged_only_when_asked():
    plain = LockboxEnv(EnvConfig(cameras=()))
    obs, _ = plain.reset(seed=0)
    assert set(obs) == {"proprio"} and "privileged" not in plain.observation_space.spaces
    told = LockboxEnv(EnvConfig(cameras=(), privileged=True))
    obs, _ = told.reset(seed=0)
    assert set(obs) == {"proprio", "privileged"}
    np.testing.assert_array_equal(obs["privileged"], told.world.part_positions())
    assert told.observation_space["privileged"].shape == (len(told.world.part_names),)


def test_cameras_and_render():
    env = LockboxEnv(EnvConfig(cameras=("front", "top"), image_size=SMALL), render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert set(obs["images"]) == {"front", "top"}
    for image in obs["images"].values():
        assert image.shape == (*SMALL, 3) and image.dtype == np.uint8 and image.std() > 5
    assert not np.array_equal(obs["images"]["front"], obs["images"]["top"])
    frame = env.render()
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    env.close()
    with pytest.raises(ValueError, match="no camera 'nope'"):
        LockboxEnv(EnvConfig(cameras=("nope",)))


def test_joint_control_needs_an_arm():
    with pytest.raises(ValueError, match="floating gripper has no arm joints"):
        EnvConfig(robot="gripper", control="joint")


@pytest.mark.parametrize("robot", ["gripper", "jaco"])
@pytest.mark.parametrize("direction", [(1, 0, 0), (0, -1, 0), (0, 0, -1)])
def test_ee_action_moves_tcp_that_way(robot, direction):
    env = LockboxEnv(EnvConfig(robot=robot, cameras=()))
    obs, _ = env.reset(seed=0)
    start = obs["proprio"][:3].copy()
    for _ in range(8):  # 8 cm commanded
        env.step(_ee_action(move=direction))
    for _ in range(5):
        obs, *_ = env.step(_ee_action())
    moved = env.arm.tcp_pose()[0] - start
    along = moved @ np.array(direction, dtype=float)
    assert along > (0.07 if robot == "gripper" else 0.035), moved
    assert np.linalg.norm(moved - along * np.array(direction)) < 0.25 * along, moved


def test_ee_rotation_turns_tcp_about_world_axis():
    env = LockboxEnv(EnvConfig(cameras=()))
    env.reset(seed=0)
    q0 = env.arm.tcp_pose()[1]
    for _ in range(6):  # 6 x 0.05 rad about world z
        env.step(_ee_action(turn=(0, 0, 1)))
    for _ in range(5):
        env.step(_ee_action())
    q1, neg, diff, rotvec = env.arm.tcp_pose()[1], np.zeros(4), np.zeros(4), np.zeros(3)
    mujoco.mju_negQuat(neg, q0)
    mujoco.mju_mulQuat(diff, q1, neg)
    mujoco.mju_quat2Vel(rotvec, diff, 1.0)
    assert rotvec[2] == pytest.approx(0.3, abs=0.02) and np.abs(rotvec[:2]).max() < 0.05


def test_joint_action_tracks_normalized_targets():
    env = LockboxEnv(EnvConfig(robot="jaco", control="joint", cameras=()))
    obs, _ = env.reset(seed=0)
    home = env.arm.joint_positions()
    # Endless joints map 0 to home; turn joint 1 by +0.1 * pi, hold the others at home.
    action = np.zeros(7, dtype=np.float32)
    lo, hi = env._joint_lo, env._joint_hi
    action[:6] = 2 * (home - lo) / (hi - lo) - 1
    action[0] += 0.1
    action[6] = -1
    for _ in range(25):
        obs, *_ = env.step(action)
    measured = obs["proprio"][8:14]
    np.testing.assert_allclose(measured, env.arm.joint_positions())
    assert measured[0] - home[0] == pytest.approx(0.1 * np.pi, abs=0.03)
    np.testing.assert_allclose(measured[1:], home[1:], atol=0.03)


def test_goal_progress_ramps_with_the_goal_joint():
    env = LockboxEnv(EnvConfig(cameras=()))
    env.reset(seed=0)
    drawer = env.model.joint("drawer/joint")
    previous = -1.0
    for q in np.linspace(drawer.range[0], 0.08, 9):  # goal: drawer >= 0.08 m
        env.data.qpos[drawer.qposadr[0]] = q
        progress, reached = env.world.measure_goal()
        assert progress >= previous and reached == (q >= 0.08)
        assert progress == pytest.approx(min(q / 0.08, 1.0))
        previous = progress


def test_open_drawer_terminates_with_bonus():
    env = LockboxEnv(EnvConfig(cameras=()))
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(_ee_action())
    assert not terminated and not info["is_success"] and reward == info["reward_terms"]["progress"]
    bolt, drawer = env.model.joint("bolt/joint"), env.model.joint("drawer/joint")
    env.data.qpos[bolt.qposadr[0]] = bolt.range[1]  # bolt slid clear of the drawer
    env.data.qpos[drawer.qposadr[0]] = 0.10  # goal: drawer out at least 0.08 m
    _, reward, terminated, _, info = env.step(_ee_action())
    assert env.world.goal_reached() and terminated and info["is_success"]
    assert reward == pytest.approx(env.config.progress_weight + env.config.success_bonus)
    assert sum(info["reward_terms"].values()) == reward


def test_domain_randomization_ranges_without_drift():
    cfg = RandomizationConfig()
    nominal_env = LockboxEnv(EnvConfig(cameras=()))
    nominal = {p: nominal_env.model.joint(f"{p}/joint").frictionloss[0] for p in nominal_env.world.part_names}
    nominal_mass = nominal_env.model.body("drawer").mass[0]
    env = DomainRandomization(_make("puzzlebot/Lockbox-v0", cameras=()), cfg)
    model = env.unwrapped.model
    factors = []
    for seed in range(5):
        _, info = env.reset(seed=seed)
        assert "privileged" not in info  # the draw is hidden ground truth
        drawn = env.privileged_draw
        for part, base_value in nominal.items():
            factor = drawn["joint_friction"][part]
            assert cfg.joint_friction[0] <= factor <= cfg.joint_friction[1]
            # nominal x this draw, not x every earlier draw
            assert model.joint(f"{part}/joint").frictionloss[0] == pytest.approx(base_value * factor, rel=1e-12)
            factors.append(factor)
        assert model.body("drawer").mass[0] == pytest.approx(nominal_mass * drawn["part_mass"]["drawer"], rel=1e-12)
        # mj_setConst ran: the derived subtree mass follows the new part mass.
        assert model.body("drawer").subtreemass[0] == pytest.approx(model.body("drawer").mass[0])
        assert model.light("key").diffuse[0] == pytest.approx(0.7 * drawn["light_intensity"]["key"])
    assert len(set(factors)) == len(factors)
    # Same seed, same draw; the state after reset is the home state, not mj_setConst's qpos0.
    env.reset(seed=3)
    again = env.privileged_draw
    env.reset(seed=3)
    assert env.privileged_draw == again
    np.testing.assert_allclose(env.unwrapped.arm.tcp_pose()[0], nominal_env.arm.tcp_pose()[0], atol=1e-9)
    env.close()


def test_domain_randomization_changes_the_images():
    env = DomainRandomization(_make("puzzlebot/Lockbox-v0"))
    first, _ = env.reset(seed=0)
    second, _ = env.reset(seed=1)
    assert np.abs(first["images"]["front"].astype(int) - second["images"]["front"]).mean() > 1.0
    env.close()


def test_dm_env_adapter_steps_and_specs():
    adapter = DmEnvAdapter(_make("puzzlebot/LockboxJaco-v0", max_episode_steps=3, privileged=True), seed=0)
    obs_spec, act_spec = adapter.observation_spec(), adapter.action_spec()
    assert set(obs_spec) == {"proprio", "images", "privileged"}
    assert obs_spec["images"]["front"].shape == (*SMALL, 3) and obs_spec["images"]["front"].dtype == np.uint8
    assert obs_spec["proprio"].shape == (20,)
    assert act_spec.shape == (7,) and np.all(act_spec.minimum == -1) and np.all(act_spec.maximum == 1)
    first = adapter.reset()
    assert first.step_type == dm_env.StepType.FIRST and first.reward is None
    steps = [adapter.step(np.zeros(7, dtype=np.float32)) for _ in range(4)]
    assert [s.step_type for s in steps] == [dm_env.StepType.MID, dm_env.StepType.MID, dm_env.StepType.LAST,
                                            dm_env.StepType.FIRST]
    assert steps[2].discount == 1.0  # truncated by the time limit, not terminated
    for timestep in (first, *steps):
        obs_spec["proprio"].validate(timestep.observation["proprio"])
        obs_spec["images"]["front"].validate(timestep.observation["images"]["front"])
    lockbox = adapter.gym_env.unwrapped
    bolt, drawer = lockbox.model.joint("bolt/joint"), lockbox.model.joint("drawer/joint")
    lockbox.data.qpos[bolt.qposadr[0]] = bolt.range[1]
    lockbox.data.qpos[drawer.qposadr[0]] = 0.10
    last = adapter.step(np.zeros(7, dtype=np.float32))
    assert last.step_type == dm_env.StepType.LAST and last.discount == 0.0 and last.reward > 10
    adapter.close()


def test_physics_divergence_raises_instead_of_silently_resetting():
    env = LockboxEnv(EnvConfig(cameras=()))
    env.reset(seed=0)
    drawer = env.model.joint("drawer/joint")
    env.data.qvel[drawer.dofadr[0]] = 1e12  # a blow-up MuJoCo would reset without telling anyone
    with pytest.raises(FloatingPointError, match="diverged"):
        env.step(env.action_space.sample())
    env.close()


def test_hidden_ground_truth_only_reaches_privileged_runs():
    from puzzlebot.sim.randomization import DomainRandomization

    plain = DomainRandomization(LockboxEnv(EnvConfig(cameras=())))
    obs, info = plain.reset(seed=0)
    _, _, _, _, step_info = plain.step(plain.action_space.sample())
    assert "privileged" not in obs and "privileged" not in info and "privileged" not in step_info
    privileged = DomainRandomization(LockboxEnv(EnvConfig(cameras=(), privileged=True)))
    obs, info = privileged.reset(seed=0)
    _, _, _, _, step_info = privileged.step(privileged.action_space.sample())
    assert "privileged" in obs and set(info["privileged"]) == {"placement", "randomization"}
    assert 0.0 <= step_info["privileged"]["goal_progress"] <= 1.0
    plain.close()
    privileged.close()


@pytest.mark.parametrize("env_id", ["puzzlebot/Lockbox-v0", "puzzlebot/LockboxJaco-v0"])
def test_pickled_env_continues_identically(env_id):
    import pickle

    env = gym.make(env_id, cameras=()).unwrapped
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(10):
        env.step(rng.uniform(-1, 1, 7))
    clone = pickle.loads(pickle.dumps(env))
    actions = rng.uniform(-1, 1, (10, 7))
    for action in actions:
        a, ra, *_ = env.step(action)
        b, rb, *_ = clone.step(action)
        np.testing.assert_array_equal(a["proprio"], b["proprio"])
        assert ra == rb
    env.close()
    clone.close()


def test_texture_tint_leaves_markers_alone():
    from puzzlebot.sim.randomization import DomainRandomization

    env = DomainRandomization(LockboxEnv(EnvConfig(cameras=())))
    model = env.unwrapped.model
    grid, marker = model.material("grid"), model.material("aruco_2")
    nominal_grid, nominal_marker = grid.rgba.copy(), marker.rgba.copy()
    env.reset(seed=0)
    assert not np.allclose(grid.rgba, nominal_grid)
    np.testing.assert_array_equal(marker.rgba, nominal_marker)
    env.close()
