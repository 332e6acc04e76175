"""Every configuration field of the platform, with the papers' defaults.

Config files (configs/*.py) start from `get_config()` here and override what
differs; every field can also be overridden on the command line as
`--config.field=value`. Paper sizes are GPU work (docs/algorithm.md: 1.5M critic and
3M diffusion steps); `quickstart.py` is the CPU-sized default.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "base"
    c.seed = 0
    c.device = "auto"                     # "auto" (CUDA when present), "cpu", "cuda", "cuda:1"
    c.workdir = "runs"                    # run directory: runs/<name>-<dataset>-s<seed>
    c.num_threads = 0                     # torch CPU threads; 0 = torch's default
    # How the learner's iteration reaches the device (learner/fast_path.py): "eager" (the reference),
    # "compile" (torch.compile'd objectives), "graph" / "graph+compile" (the whole iteration replayed
    # as a CUDA graph; CUDA only). Eager stays the default until `python -m bench.gpu_check` has passed
    # on a GPU (no GPU has run this project yet; docs/performance.md).
    c.learner_step = "eager"
    # CPU matrix products: "onednn" (~1.5-2x MKL's rate on AVX-512 CPUs, bench.cpu_gemm; slower on an
    # AVX2-only CPU), "aten" (torch's default, MKL) or "auto" (oneDNN where the CPU has AVX-512); all
    # float32 (networks/linear.py). No effect on CUDA.
    c.cpu_matmul = "auto"
    # Pretraining on CPU cores (learner/behavior_worker.py): "two" trains μ (the diffusion behaviour model, which
    # learns from the data alone) in a second process while this one trains V, Q (and the multipliers), handing μ
    # over at every log/eval/checkpoint step (docs/performance.md, "Pretraining on both cores"); "one" trains all in
    # one process; "auto" = "two" on a CPU device with a diffusion μ, >= 2,000 μ steps, critic steps > 0,
    # learner_step "eager" and at least 2 cores for this process, else "one". Either resumes bit for bit; they draw
    # different batches for μ, so the same seed gives two different (equally valid) runs
    c.pretrain_processes = "auto"
    c.matmul_precision = "auto"           # "auto": TF32 ("high") on CUDA, "highest" on CPU; or highest|high|medium

    # ---- data ----
    c.dataset = "local/hopper/medium-v0"  # Minari dataset id, or a path to a legacy D4RL .hdf5 file
    c.env_id = ""                         # environment for an .hdf5 file that does not name one
    c.reward_scale = "auto"              # "auto": per domain as in the papers; "none": raw rewards
    c.domain = ""                         # "" = guessed from the dataset/env ids (unknown ids: locomotion); or
                                          #   locomotion | antmaze | pointmaze | adroit (reward recipe, scoring)
    c.reference_scores = ""               # "" = the dataset's; "min,max": the returns scoring 0 and 100
    c.action_bounds = ""                  # "" = the environment's action bounds; "low,high" (e.g. "-2,2") for every
                                          #   dimension: needed where the env's are unbounded. The learner works in
                                          #   [-1, 1], data and actions are mapped from/to these (data/bounds.py)

    # ---- algorithm ----
    c.algorithm = "aligniql"              # aligniql | aligniql_hard | idql | iql
    c.value_loss = "expectile"            # V's loss: expectile | quantile | exponential (IDQL section 4.1;
                                          #   learner/losses.py VALUE_LOSSES); older runs' critic_loss
    c.weighting = ""                      # how μ's candidates are weighed: "" = the algorithm's own (aligniql: align,
                                          #   aligniql_hard: align_hard, idql: expectile; networks/factory.py
                                          #   ALGORITHMS), or a name in networks/extraction.py WEIGHTINGS. IDQL pairs
                                          #   it with value_loss (IDQL Eq. 9/10/12): set both to quantile together
    c.tau = 0.7                           # expectile / quantile τ (0.7 locomotion, 0.9 AntMaze)
    c.exp_alpha = 1.0                     # exponential-loss temperature α
    c.eta = -1.0                          # AlignIQL η ≠ 0 (Table 3: -1 locomotion, mostly 1 AntMaze / Adroit)
    c.eta_by_dataset = ""                 # "<part of dataset id>:<η>,...": η per dataset, overriding c.eta
                                          #   where a key occurs in the dataset id (configs/antmaze.py)
    c.discount = 0.99

    # ---- critic and value ----
    c.critic_hidden = (256, 256)
    c.critic_lr = 3e-4
    c.value_lr = 3e-4
    c.target_ema = 0.005
    c.value_layer_norm = "input"          # where V's LayerNorm goes: "input" (once, on the observation: what
                                          #   both references run, their MLP's use_layer_norm), "hidden" (after
                                          #   each hidden layer; this project's default until 2026-12-06), "none"
    c.critic_layer_norm = False           # LayerNorm in Q's hidden layers: the references run Q without
    c.critic_batch_size = 512             # AlignIQL: 512 for both; IDQL paper: critic 256, actor 1024
    c.actor_batch_size = 512
    c.num_critic_steps = 1_500_000
    c.num_actor_steps = 3_000_000

    # ---- diffusion behaviour model μ (IDQL appendix E / G) ----
    c.diffusion = ml_collections.ConfigDict()
    c.diffusion.num_steps = 5             # T
    c.diffusion.width = 256
    c.diffusion.inner = 1024
    c.diffusion.num_blocks = 3
    c.diffusion.dropout = 0.1
    c.diffusion.time_dim = 64
    c.diffusion.lr = 3e-4
    c.diffusion.weight_decay = 1e-4       # AdamW, as optax.adamw's default in the reference code
    c.diffusion.cosine_decay = True
    c.diffusion.ema = 0.001

    # ---- AlignIQL-hard multipliers α(s), β(s) ----
    c.multipliers = ml_collections.ConfigDict()
    c.multipliers.hidden = (256, 256)
    c.multipliers.layer_norm = "input"    # "input" (the AlignIQL reference: its MLP's use_layer_norm, on the
                                          #   input once) or "input+hidden" (this project's until 2026-12-06)
    c.multipliers.lr = 3e-5
    c.multipliers.grad_clip = 1.0

    # ---- IQL baseline (Gaussian actor + AWR) ----
    c.iql = ml_collections.ConfigDict()
    c.iql.hidden = (256, 256)
    c.iql.actor_lr = 3e-4
    c.iql.temperature = 3.0               # β of exp(β·A): 3 locomotion, 10 AntMaze (IQL paper)
    c.iql.max_weight = 100.0

    # ---- evaluation ----
    c.eval = ml_collections.ConfigDict()
    c.eval.interval = 250_000             # learner steps between evaluations
    c.eval.episodes = 50
    c.eval.background = "auto"            # pretraining: evaluate snapshots in another process while the learner
                                          #   trains; "auto" = when the learner is on CUDA; "on" | "off"
    c.eval.modes = ("argmax",)            # any of "argmax", "implicit"
    c.eval.num_candidates = (16, 64, 256) # N values to evaluate
    c.eval.weighting = ""                 # "" = config.weighting; or a name in networks/extraction.py WEIGHTINGS
                                          #   (align | align_hard | expectile | quantile | exponential | greedy)
    c.eval.max_episode_steps = 0          # 0 = the environment's own time limit
    c.eval.seed_offset = 100_000          # evaluation environments never share seeds with training

    # ---- logging and checkpoints ----
    c.log_interval = 1000
    c.checkpoint_interval = 50_000
    c.wandb = ml_collections.ConfigDict()
    c.wandb.project = "aligniql-platform"
    c.wandb.entity = ""
    c.wandb.mode = "auto"                 # auto: online when an API key is configured, else offline
    c.stop_after_steps = 0                # >0: stop (with a checkpoint) after this many steps, as an interruption would
    return c
