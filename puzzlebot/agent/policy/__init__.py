"""Learned policies: the model-free PPO baseline over the solve loop's moves (`ppo_baseline`,
on the `move_env` environment), and domain-randomized skill policies trained in the fitted
model (`skill_env`, `skill_policy`)."""
