"""PointMaze on a local D4RL-style dataset: pretrain, then finetune online, CPU-sized.

    python -m launch.finetune --config=configs/pointmaze.py
    python -m launch.finetune --config=configs/pointmaze.py --config.dataset=local/pointmaze/large-v0

Data: `local/pointmaze/umaze-v0` (data/pointmaze.py, D4RL's maze2d recipe: 1M transitions of a noisy
planner-controller, sparse reward; made on first use in about 1.5 min), so this runs without
downloads. Evaluation and finetuning happen in the dataset's evaluation env (fixed goal cell, time
limit 300 / 600 / 800 steps); the score is D4RL maze2d's normalised return (references measured
locally: random policy 0, noise-free planner-controller 100), the success rate is logged beside it.

Settings: maze2d has no row in either paper, so the goal-reaching ones of AntMaze-umaze apply
(AlignIQL Table 3 η = +1, τ = 0.9; IDQL appendix E exponential α = 0.5; IQL β = 10), with
r ← r − 1 as AntMaze (data/rewards.py); networks, steps and the online budget are the CPU-sized
defaults of configs/quickstart.py and configs/finetune.py.
"""
from configs import quickstart
from configs.finetune import online_defaults


def get_config():
    c = quickstart.get_config()
    c.name = "pointmaze"
    c.dataset = "local/pointmaze/umaze-v0"
    c.env_id = ""                      # the dataset's stored evaluation spec
    c.algorithm = "aligniql"
    c.eta = 1.0
    c.eta_by_dataset = ""
    c.tau = 0.9
    c.exp_alpha = 0.5
    c.iql.temperature = 10.0
    c.num_critic_steps = 30_000        # as configs/finetune.py: the critic near its fixed point on CPU
    c.num_actor_steps = 30_000
    c.eval.interval = 10_000
    c.eval.episodes = 20
    c.online = online_defaults()
    return c
