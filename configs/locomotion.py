"""Paper-size AlignIQL on D4RL locomotion (AlignIQL Table 3; IDQL appendix E). GPU work.

Per dataset, Table 3 sets η and N, e.g. hopper-medium: η = -1, N = 64;
override with --config.eta=... --config.eval.num_candidates=64.
"""
from configs import base


def get_config():
    c = base.get_config()
    c.name = "locomotion"
    c.dataset = "mujoco/hopper/medium-v0"
    c.algorithm = "aligniql"
    c.eta = -1.0
    c.tau = 0.7
    c.critic_batch_size = 512
    c.actor_batch_size = 512
    c.num_critic_steps = 1_500_000
    c.num_actor_steps = 3_000_000
    c.eval.interval = 250_000
    c.eval.episodes = 50
    c.eval.num_candidates = (16, 64, 256)
    return c
