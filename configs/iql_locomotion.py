"""IQL baseline on D4RL locomotion: Gaussian actor + AWR (temperature 3), τ = 0.7."""
from configs import base


def get_config():
    c = base.get_config()
    c.name = "iql-locomotion"
    c.dataset = "mujoco/hopper/medium-v0"
    c.algorithm = "iql"
    c.tau = 0.7
    c.critic_batch_size = 256
    c.actor_batch_size = 256
    c.num_critic_steps = 1_000_000
    c.num_actor_steps = 1_000_000
    c.eval.num_candidates = (1,)
    return c
