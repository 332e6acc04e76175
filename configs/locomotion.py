"""Paper-size AlignIQL on D4RL locomotion (AlignIQL Table 3; IDQL appendix E). GPU work.

Per dataset, Table 3 sets η and N, e.g. hopper-medium: η = -1, N = 64;
override with --config.eta=... --config.eval.num_candidates=64.
"""
from configs import base

# Batch 512, 1.5M critic / 3M diffusion steps and evaluation at N = 16, 64, 256 every 250k
# steps are base.py's paper defaults; only what differs per domain is set here.


def get_config():
    c = base.get_config()
    c.name = "locomotion"
    c.dataset = "mujoco/hopper/medium-v0"
    c.algorithm = "aligniql"
    c.eta = -1.0
    c.tau = 0.7
    return c
