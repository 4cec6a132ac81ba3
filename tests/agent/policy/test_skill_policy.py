"""A skill policy trained in the fitted model brings a coasting pushed drawer to its target on
worlds drawn from the posterior it never trained on, where a fixed-speed push that stops at
the target carries it past; exported, it acts the same; as a pace it stops as the MPC does."""

from __future__ import annotations

import numpy as np
import pytest

from puzzlebot.agent.policy.skill_env import SkillEnv, SkillEnvConfig
from puzzlebot.agent.policy.skill_policy import PolicyPace, SkillPolicy, SkillTrainConfig, evaluate, train_skill
from puzzlebot.agent.rehearsal import RehearsalConfig, Rehearser
from tests.agent.test_fitted_model import drawer
from tests.agent.test_rehearsal import model_of, with_dynamics


@pytest.fixture(scope="module")
def rehearser() -> Rehearser:
    # 0.3 N of friction on a 0.45 kg drawer: a fingertip that lets go at 6 cm/s leaves it coasting 7-8 mm
    return Rehearser(model_of(with_dynamics(drawer(), 0.3, 0.2, 0.45)), RehearsalConfig(samples=8, threads=1))


@pytest.fixture(scope="module")
def trained(rehearser) -> SkillPolicy:
    policy, seconds = train_skill(rehearser, "drawer_0", pushing=True, config=SkillTrainConfig(steps=14_000))
    assert seconds > 0
    return policy


class FixedSpeed:
    """Push at the follow speed, stop at the target (what `mpc.TargetFollow` does)."""

    spec = {"max_speed": 0.096}

    def speed(self, obs: np.ndarray) -> float:
        return 0.06 if obs[0] > 0 else 0.0


def test_the_policy_stops_a_coasting_drawer_at_its_target_on_unseen_draws(rehearser, trained):
    env = SkillEnv(rehearser, "drawer_0", pushing=True, config=SkillEnvConfig(randomization="posterior"))
    learned = np.abs(evaluate(trained, env, episodes=20, seed=1000))
    fixed = np.abs(evaluate(FixedSpeed(), env, episodes=20, seed=1000))
    assert np.median(learned) <= 0.003  # within the 3 mm tolerance
    assert np.median(fixed) > 0.005  # the fixed-speed push carries it past
    assert np.median(learned) < 0.5 * np.median(fixed)


def test_an_exported_policy_acts_as_trained(trained, tmp_path):
    trained.save(tmp_path)
    loaded = SkillPolicy.load(tmp_path)
    rng = np.random.default_rng(0)
    for obs in rng.uniform(-2, 2, size=(10, 4)).astype(np.float32):
        assert loaded.speed(obs) == pytest.approx(trained.speed(obs), abs=1e-6)
    assert loaded.spec["observation"] == trained.spec["observation"] and loaded.spec["part"] == "drawer_0"


def test_loading_a_folder_without_a_policy_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="skill_policy"):
        SkillPolicy.load(tmp_path)


def test_the_pace_stops_at_the_target(trained):
    pace = PolicyPace(trained, start=0.02, target=0.05, revolute=False)
    assert pace(0.0, 0.0) is not None and not pace.finished  # 3 cm short: it pushes
    assert pace(0.5, 0.031) is None and pace.finished  # at 5.1 cm: past the target, let go


@pytest.mark.parametrize("field,value", [("randomization", "wide"), ("travel", (0.05, 0.01)),
                                         ("latency_ticks", (2, 1)), ("max_speed", 0.0)])
def test_impossible_env_configs_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SkillEnvConfig(**{field: value})


def test_without_randomization_every_episode_is_the_point_estimate(rehearser):
    env = SkillEnv(rehearser, "drawer_0", pushing=True, config=SkillEnvConfig(randomization="none"))
    params = [env.reset(seed=k)[1]["params"] for k in range(3)]
    assert all(p == params[0] for p in params) and env.latency == 0 and env.noise == 0.0
    wide = SkillEnv(rehearser, "drawer_0", pushing=True, config=SkillEnvConfig(randomization="uniform"))
    frictions = [wide.reset(seed=k)[1]["params"]["friction"] for k in range(40)]
    assert min(frictions) < 0.3 / 3 and max(frictions) > 0.3 * 3  # log-uniform within 10x either way
