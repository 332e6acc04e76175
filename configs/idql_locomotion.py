"""IDQL-A on D4RL locomotion (IDQL appendix E): expectile τ=0.7, critic batch 256, actor batch 1024, N=128."""
from configs import base


def get_config():
    c = base.get_config()
    c.name = "idql-locomotion"
    c.dataset = "mujoco/hopper/medium-v0"
    c.algorithm = "idql"
    c.value_loss = "expectile"
    c.weighting = "expectile"            # IDQL Eq. 9: the weights of the expectile loss (offline evaluation: greedy)
    c.tau = 0.7
    c.critic_batch_size = 256
    c.actor_batch_size = 1024
    c.num_critic_steps = 1_500_000
    c.num_actor_steps = 3_000_000
    c.diffusion.weight_decay = 0.0        # the IDQL reference's μ optimiser has no weight decay
    c.eval.weighting = "greedy"           # IDQL's default evaluation: argmax over Q
    c.eval.num_candidates = (128,)
    return c
