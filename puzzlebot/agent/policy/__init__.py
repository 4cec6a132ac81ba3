"""Learned policies: the model-free PPO baseline over the solve loop's moves (`ppo_baseline`,
on the `move_env` environment); domain-randomized skill policies come with issue 6."""
