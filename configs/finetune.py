"""Offline-to-online finetuning, CPU-sized default (the README's main job).

Pretrains the quickstart AlignIQL model (or loads --pretrained), then finetunes
online: K actor processes feed a Reverb replay server, the learner keeps
updating Q and V (and optionally μ) from mixed offline + online batches.
The protocol is IDQL's (section 4.2, appendix D.3), scaled down to minutes.
"""
import ml_collections

from configs import quickstart


def online_defaults() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.num_actors = 2                   # K actor processes (CPU)
    o.envs_per_actor = 4               # vector environments stepped together by one actor
    o.exploration = "implicit"         # "implicit" (draw by weights) or "argmax"
    o.exploration_weighting = ""       # "" = config.weighting (aligniql's own: exp(-η A²) / exp(|η| A)); or any weighting
    o.num_candidates = 16              # N candidates per state when acting
    o.actor_mu_dtype = "float32"       # "bfloat16": actors sample μ's candidates in bf16 (x1.2-1.6 at N >= 64 on CPUs
                                       # with bf16 units, same argmax choice in 99-100 % of states; slower at N = 16).
                                       # The critic and the evaluator stay float32. See docs/performance.md.
    o.total_env_steps = 10_000         # online environment steps (papers: 1M)
    o.min_replay_size = 2_000          # online transitions before learning starts (papers: 5,000)
    o.replay_max_size = 1_000_000
    o.updates_per_env_step = 1.0       # V+Q updates per environment step, held by the rate limiter
    o.online_batch_size = 128          # IDQL: 128 online + 128 offline; AlignIQL code: 128 + 256
    o.offline_batch_size = 128
    o.finetune_mu = True               # IDQL recipe 2: also finetune μ (implicit exploration)
    o.mu_steps_per_update = 2          # μ steps per V+Q update when finetuning μ
    # μ's learning rate online. "continue" (IDQL reference, recipe 2): μ's cosine schedule goes on from
    # where pretraining left it, over a horizon of mu_lr_horizon x num_actor_steps (the reference decays
    # over 4M steps after 3M pretraining steps: x4/3, so μ restarts online at 15 % of its initial rate and
    # reaches 0 after another third of its pretraining steps). "constant": online.mu_lr throughout (what
    # this platform did before; it moved μ ~5x as far as all of pretraining in the default run).
    o.mu_lr_schedule = "continue"
    o.mu_lr_horizon = 4.0 / 3.0
    o.mu_lr = 3e-4                     # used by mu_lr_schedule="constant"
    # IQL's Gaussian actor online: its pretraining schedule has decayed to 0; IQL's finetuning configs train
    # it at a constant rate ("Don't decay optimizer lr"), iql.actor_lr.
    o.publish_interval = 200           # learner steps between weight publications
    o.weight_sync_interval = 200       # actor env steps between polls for new weights
    o.eval_interval = 2_500            # env steps between evaluations (papers: 25k)
    o.eval_episodes = 20               # papers: 25. 5 episodes scattered by ±10 points (s.e.) on Hopper; 20 on
                                       # common seeds (every evaluation uses the same ones) resolve ~2-3 points
    # Evaluation policy: the implicit policy the actors explore with, so that what is evaluated is what the
    # online data correct. The default job (get_config) evaluates AlignIQL's argmax instead; see there.
    o.eval_mode = "implicit"
    o.replay_port = 0                  # 0 = pick a free port
    o.replay_in_learner = True         # the learner process hosts the replay server: it then samples the table
                                       # directly, not over gRPC (~2x the batches/s; bench/learner_feed.py).
                                       # False: launch.replay_server runs it as a process of its own.
    o.sampler_workers = 2              # Reverb sampling streams feeding the learner (1 stream: ~half the rate)
    o.prefetch_batches = 2             # online batches fetched ahead by a thread while the learner updates
    o.allow_remote = False             # True: actors on other machines may connect (no authentication!)
    # The loss window: learner and (hosted) replay are checkpointed this often, so a learner that dies costs
    # at most this long of updates and, with the replay in the learner, of transitions (summary.json: lost).
    o.replay_checkpoint_interval_s = 120.0
    o.actor_restart_limit = 5          # restarts per actor before the run gives up (--launcher=ray: each actor's
                                       # max_restarts, Ray restarts it itself, on any node with room)
    o.evaluator_restart_limit = 5      # restarts of the evaluator before the run gives up
    o.learner_restart_limit = 3        # restarts of the learner (from its last checkpoint) before the run gives up
    o.log_interval = 500               # learner steps between log lines
    # CPU priority of the roles beside the learner (Unix niceness, 0-19, set by each role at its start, whichever
    # launcher starts it): the learner is the bottleneck of an online run (the rate limiter never holds it), so
    # on a machine with as many busy processes as cores the evaluator's bursts of episodes yield to it.
    # bench/online_placement.py measures the learner's steps/s under each setting (docs/performance.md).
    o.actor_nice = 0
    o.evaluator_nice = 10
    o.ray_actor_cpus = 1.0             # --launcher=ray: CPUs Ray reserves per actor (it places them by this)
    return o


def get_config():
    c = quickstart.get_config()
    c.name = "finetune"
    # The default job must show what finetuning is for, so it runs where the offline data leave room above
    # them: the local Hopper medium-replay data (D4RL's recipe: the replay of one SAC run, rolled out from its
    # snapshots with the stochastic actor, docs/datasets.md; 338 episodes, data score 16.9). In the converged
    # study (docs/results.md, 3 seeds, 10k online steps) both recipes lifted there by +13 to +22 points, against
    # +0.4 [+0.03, +0.68] for the former default on Hopper medium-v1, where one μ sample already scores ~57
    # and the critic barely chooses among μ's candidates (docs/finetuning.md §3 and §7; that job is kept as
    # configs/finetune_hopper_medium.py). The measured 5-seed lift of this default is in docs/lift.md.
    c.dataset = "local/hopper/medium-replay-v1"
    # AlignIQL Table 3's offline choice for Hopper: η = −1, weights exp(|η| A); its argmax over μ's
    # candidates is the candidate of highest Q (the same choice IDQL's greedy extraction makes).
    c.eta = -1.0
    # Pretraining long enough for the critic to approach its fixed point: the calibration diagnostic (Q of
    # dataset transitions over their discounted return-to-go) reads ~49 % / 73 % / 85 % after 10k / 20k / 30k
    # steps on this data (results/converged/pretrain); the rate is set by bootstrapping (γ, the target's EMA),
    # not by the machine. Both cores: μ trains in a second process (config.pretrain_processes).
    c.num_critic_steps = 30_000
    c.num_actor_steps = 30_000
    c.eval.interval = 10_000
    c.eval.modes = ("argmax",)         # the extraction this job explores with and is judged by
    c.online = online_defaults()
    # IDQL's recipe 1 (appendix D.3): μ frozen, the actors explore with the argmax of Q over μ's N = 16
    # candidates, and that policy is evaluated. On this data it lifted +15.1 ± 8.2 (AlignIQL η = −1) and
    # +22.4 ± 5.2 (IDQL) in the converged study, and μ frozen makes the learner's online step ~3x cheaper
    # than recipe 2 (which also trains μ: configs/finetune_implicit.py).
    c.online.exploration = "argmax"
    c.online.finetune_mu = False
    c.online.eval_mode = "argmax"
    return c
