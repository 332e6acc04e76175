"""Paper-size AlignIQL on D4RL Adroit (AlignIQL section 5.3 / D.2: η = 1, τ = 0.7, argmax at evaluation). GPU work.

Environment: the dataset's own. `env_id` stays empty, so the loader builds the Minari dataset's
stored spec (`AdroitHand<Task>-v1` with its time limit; needs gymnasium-robotics). The evaluation
also reports the success rate: the fraction of episodes in which the environment reported
`info["success"]` at some step (data/goals.py; DAPG's own success criteria differ per task).
Finetune with `python -m launch.finetune --config=configs/adroit.py` (`online`: 1M steps).
"""
from configs import base
from configs.finetune import online_defaults

# Batch 512, 1.5M critic / 3M diffusion steps and evaluation at N = 16, 64, 256 every 250k
# steps are base.py's paper defaults; only what differs per domain is set here.


def get_config():
    c = base.get_config()
    c.name = "adroit"
    c.dataset = "D4RL/pen/human-v2"
    c.env_id = ""                      # the dataset's stored spec
    c.algorithm = "aligniql"
    c.eta = 1.0
    c.tau = 0.7
    c.online = online_defaults()
    c.online.total_env_steps = 1_000_000
    c.online.min_replay_size = 5_000
    c.online.eval_interval = 25_000
    return c
