"""Paper-size AlignIQL on D4RL Adroit (AlignIQL section 5.3 / D.2: η = 1, τ = 0.7, argmax at evaluation). GPU work."""
from configs import base


def get_config():
    c = base.get_config()
    c.name = "adroit"
    c.dataset = "D4RL/pen/human-v2"
    c.algorithm = "aligniql"
    c.eta = 1.0
    c.tau = 0.7
    c.critic_batch_size = 512
    c.actor_batch_size = 512
    c.num_critic_steps = 1_500_000
    c.num_actor_steps = 3_000_000
    c.eval.interval = 250_000
    c.eval.episodes = 50
    c.eval.num_candidates = (16, 64, 256)
    return c
