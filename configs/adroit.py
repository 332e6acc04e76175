"""Paper-size AlignIQL on D4RL Adroit (AlignIQL section 5.3 / D.2: η = 1, τ = 0.7, argmax at evaluation). GPU work."""
from configs import base

# Batch 512, 1.5M critic / 3M diffusion steps and evaluation at N = 16, 64, 256 every 250k
# steps are base.py's paper defaults; only what differs per domain is set here.


def get_config():
    c = base.get_config()
    c.name = "adroit"
    c.dataset = "D4RL/pen/human-v2"
    c.algorithm = "aligniql"
    c.eta = 1.0
    c.tau = 0.7
    return c
