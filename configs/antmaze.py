"""Paper-size AlignIQL on D4RL AntMaze (AlignIQL Table 3: τ = 0.9, N = 16..64; r ← r − 1). GPU work.

η follows Table 3 per task: +1 for umaze, umaze-diverse, large-play and large-diverse, −1 for
medium-play and medium-diverse (`eta_by_dataset`, resolved from --config.dataset at start).

Environment: the dataset's own. `env_id` stays empty, so the loader builds the Minari dataset's
stored evaluation spec (`AntMaze_<maze>-v4`, the fixed-goal evaluation map, `continuing_task=True`,
the time limit of 700 / 1000 steps; needs gymnasium-robotics) for evaluation and finetuning.
Evaluation reports the success rate, and the score is that rate in % (D4RL's AntMaze score;
data/goals.py). Finetune with `python -m launch.finetune --config=configs/antmaze.py`: `online`
holds IDQL's finetuning protocol (1M environment steps, learning from 5,000 transitions).
"""
from configs import base
from configs.finetune import online_defaults

# Batch 512, 1.5M critic / 3M diffusion steps and evaluation at N = 16, 64, 256 every 250k
# steps are base.py's paper defaults; only what differs per domain is set here.


def get_config():
    c = base.get_config()
    c.name = "antmaze"
    c.dataset = "D4RL/antmaze/umaze-v1"
    c.env_id = ""                      # the dataset's stored (evaluation) spec
    c.algorithm = "aligniql"
    c.eta = 1.0
    c.eta_by_dataset = "medium-play:-1,medium-diverse:-1"
    c.tau = 0.9
    c.exp_alpha = 0.5                  # IDQL appendix E, AntMaze
    c.iql.temperature = 10.0
    c.online = online_defaults()
    c.online.total_env_steps = 1_000_000   # IDQL's finetuning runs
    c.online.min_replay_size = 5_000
    c.online.eval_interval = 25_000
    return c
