"""Paper-size AlignIQL on D4RL AntMaze (AlignIQL Table 3: η = 1, τ = 0.9, N = 16..64; r ← r − 1). GPU work."""
from configs import base


def get_config():
    c = base.get_config()
    c.name = "antmaze"
    c.dataset = "D4RL/antmaze/umaze-v1"
    c.algorithm = "aligniql"
    c.eta = 1.0
    c.tau = 0.9
    c.exp_alpha = 0.5                  # IDQL appendix E, AntMaze
    c.iql.temperature = 10.0
    c.critic_batch_size = 512
    c.actor_batch_size = 512
    c.num_critic_steps = 1_500_000
    c.num_actor_steps = 3_000_000
    c.eval.interval = 250_000
    c.eval.episodes = 50
    c.eval.num_candidates = (16, 64, 256)
    return c
