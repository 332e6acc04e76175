"""CPU-sized default: AlignIQL on the local Hopper medium dataset, minutes on 2 cores.

Networks and step counts are scaled down from the papers so that the whole
pretraining, evaluation and checkpointing path runs on a laptop; the
algorithm and its hyperparameters (τ, η, T, EMA rates) are the papers'.
"""
from configs import base


def get_config():
    c = base.get_config()
    c.name = "quickstart"
    # One thread: on a small machine shared with actor or evaluation processes, torch's default
    # (one thread per core) oversubscribes the cores and spin-waits, measured ~50x slower here.
    c.num_threads = 1
    c.dataset = "local/hopper/medium-v0"
    c.algorithm = "aligniql"
    c.eta = -1.0                       # AlignIQL Table 3, Hopper-medium
    c.tau = 0.7
    c.critic_batch_size = 256
    c.actor_batch_size = 256
    c.num_critic_steps = 6_000
    c.num_actor_steps = 6_000
    c.diffusion.width = 128
    c.diffusion.inner = 256
    c.diffusion.num_blocks = 2
    c.eval.interval = 3_000
    c.eval.episodes = 5
    c.eval.num_candidates = (16,)
    c.eval.modes = ("argmax", "implicit")
    c.log_interval = 500
    c.checkpoint_interval = 1_000
    return c
