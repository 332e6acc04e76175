"""Paper-size AlignIQL on D4RL AntMaze (AlignIQL Table 3: τ = 0.9, N = 16..64; r ← r − 1). GPU work.

η follows Table 3 per task: +1 for umaze, umaze-diverse, large-play and large-diverse, −1 for
medium-play and medium-diverse (`eta_by_dataset`, resolved from --config.dataset at start).
"""
from configs import base

# Batch 512, 1.5M critic / 3M diffusion steps and evaluation at N = 16, 64, 256 every 250k
# steps are base.py's paper defaults; only what differs per domain is set here.


def get_config():
    c = base.get_config()
    c.name = "antmaze"
    c.dataset = "D4RL/antmaze/umaze-v1"
    c.algorithm = "aligniql"
    c.eta = 1.0
    c.eta_by_dataset = "medium-play:-1,medium-diverse:-1"
    c.tau = 0.9
    c.exp_alpha = 0.5                  # IDQL appendix E, AntMaze
    c.iql.temperature = 10.0
    return c
