"""The model-free PPO baseline: its environment over the solve loop's moves, learning on a toy
lockbox against uniform moves, and one episode on the emulator through the driver."""

from pathlib import Path

import numpy as np
import pytest

from puzzlebot.agent.affordances import marker_sheet, task_goals
from puzzlebot.agent.agents import solve_setup
from puzzlebot.agent.locks import OPEN, TEST, LockBeliefs
from puzzlebot.agent.policy.move_env import FEATURES, LockGraphWorld, MoveEnv, MoveEnvConfig
from puzzlebot.agent.policy.ppo_baseline import PPOConfig, learn_online
from puzzlebot.agent.session import SessionConfig, run_solve
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig
from puzzlebot.sim.generator import GeneratorConfig, generate

CHAIN = {"door": {"bolt"}, "bolt": {"knob"}, "knob": set(), "lever": set(), "button": set()}


def _env(max_attempts: int = 30) -> MoveEnv:
    return MoveEnv(LockGraphWorld(CHAIN, "door"), LockBeliefs(sorted(CHAIN)), MoveEnvConfig(max_attempts=max_attempts))


def _moves_to_solve(env: MoveEnv, choose, episodes: int, rng: np.random.Generator) -> list[float]:
    lengths = []
    for _ in range(episodes):
        obs, _ = env.reset()
        solved = truncated = False
        moves = 0
        while not (solved or truncated):
            obs, _, solved, truncated, _ = env.step(choose(obs, env.action_masks(), rng))
            moves += 1
        lengths.append(moves if solved else np.inf)
    return lengths


def test_the_env_masks_what_cannot_be_done_and_rewards_opens_and_the_goal():
    env = _env()
    obs, _ = env.reset()
    assert obs.shape == env.observation_space.shape == (8 * len(FEATURES) + 1,)
    parts = env.world.parts  # sorted: bolt, button, door, knob, lever
    mask = env.action_masks()
    assert mask[: 2 * len(parts)].all() and not mask[2 * len(parts):].any()  # empty slots are masked
    door_open = 2 * parts.index("door")
    _, reward, solved, _, info = env.step(door_open)  # locked by the bolt
    assert info["moved"] is False and reward == pytest.approx(-0.1) and not solved
    assert obs[0] == 1.0 and env._observation()[parts.index("door") * len(FEATURES) + 4] > 0  # failed here
    for part in ("knob", "bolt"):
        _, reward, _, _, _ = env.step(2 * parts.index(part))
        assert reward == pytest.approx(-0.05)  # an open that worked costs less than one that failed
    mask = env.action_masks()
    assert not mask[2 * parts.index("knob")] and not mask[2 * parts.index("knob") + 1]  # open parts stay open
    _, reward, solved, _, _ = env.step(door_open)
    assert solved and reward == pytest.approx(9.95)
    env.reset()
    with pytest.raises(ValueError, match="masked out"):
        env.step(2 * 7)  # an empty slot
    env.step(2 * parts.index("knob"))
    with pytest.raises(ValueError, match="masked out"):
        env.step(2 * parts.index("knob") + 1)  # testing a part that stands open
    assert env.decode(1) == ("bolt", TEST) and env.decode(0) == ("bolt", OPEN)


def test_the_budget_truncates_the_episode():
    env = _env(max_attempts=3)
    env.reset()
    door = 2 * env.world.parts.index("door")
    results = [env.step(door) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True] and not any(r[2] for r in results)


def test_ppo_learns_a_toy_lockbox_that_uniform_moves_solve_slowly():
    """Trained for 200 episodes on one noise-free chain (knob -> bolt -> door, two free
    distractors), the greedy policy opens it in the 3 moves it needs; uniform moves need about 15."""
    env = _env()
    rng = np.random.default_rng(0)
    uniform = _moves_to_solve(env, lambda o, m, r: int(r.choice(np.flatnonzero(m))), 30, rng)
    model = learn_online(env, PPOConfig(n_steps=64, batch_size=32, env=env.config), episodes=200)
    greedy = _moves_to_solve(env, lambda o, m, r: int(model.predict(o, action_masks=m, deterministic=True)[0]), 5,
                             rng)
    assert np.median(uniform) >= 8
    assert max(greedy) == 3


def test_a_real_puzzle_is_one_episode_and_cannot_be_stepped_after_it():
    class OneShot(LockGraphWorld):
        resettable = False

    env = MoveEnv(OneShot(CHAIN, "door"), LockBeliefs(sorted(CHAIN)), MoveEnvConfig())
    env.reset()
    env.step(2 * env.world.parts.index("lever"))
    env.reset()  # a learner's automatic reset: nothing is put back
    assert "lever" in env.tally.displaced
    with pytest.raises(RuntimeError, match="cannot be reset"):
        env.step(0)
    with pytest.raises(ValueError, match="max_parts"):
        MoveEnv(LockGraphWorld(CHAIN, "door"), LockBeliefs(sorted(CHAIN)), MoveEnvConfig(max_parts=3))
    with pytest.raises(ValueError, match="n_steps"):
        PPOConfig(n_steps=1)


@pytest.mark.slow
def test_ppo_acts_on_the_emulator_through_the_driver_within_its_budget(tmp_path: Path):
    spec = generate(GeneratorConfig(depth=1, seed=2))
    emulator = EmulatorBackend(EmulatorConfig(puzzle=spec, robot="gripper", seed=2, cameras=("closeup", "top"),
                                              image_size=(480, 640), realtime=False, lockstep=True))
    config, solver = solve_setup("ppo", seed=2, max_attempts=6, max_robot_s=300.0)
    result = run_solve(emulator, marker_sheet(spec), task_goals(spec), tmp_path, SessionConfig(record_episode=False),
                       config, solver)
    outcome = result.outcome
    assert 1 <= len(outcome.attempts) <= 6 and len(outcome.steps) >= len(outcome.attempts)
    assert all(step["why"] == "ppo policy" for step in outcome.steps)
    # the world's verdict and the agent's own estimate agree (no false "solved")
    assert not outcome.believed_solved or result.solved
    assert outcome.reason and (tmp_path / "solve.json").exists()
