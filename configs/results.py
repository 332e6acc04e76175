"""Budgets of the comparison study run by `python -m study --budget=tiny|small|medium`.

One budget = the same pretraining and finetuning budget for every method: networks,
batch sizes, learner steps, evaluation protocol, online environment steps and seeds.
Method-specific settings (algorithm, η, extraction weighting) are in `METHODS`;
everything else is shared, so the comparison is at equal compute.

    tiny    the smoke test (tests/test_results_smoke.py): 1 seed, ~100 learner steps, tiny networks
    small   what fits a 2-core CPU machine in about an hour (see `estimate_seconds`)
    converged  30k steps on the -v1 datasets, where the critic has converged: several sittings on 2 cores
    medium  a GPU box: paper-size networks and batches, 10x more steps than `small`, 5 seeds

How `small` was sized (2 CPU cores, one torch thread per process, a quiet machine; README
"Performance"): quickstart-size pretraining runs at ~70 learner steps/s per process, two at a
time; finetuning runs at ~50 environment steps/s plus ~40 s to start its 5 processes, one
at a time. `estimate_seconds(get_config("small"))` turns that into a wall-time estimate;
`python -m study` prints it before starting and writes the measured wall time into results.md.
"""
from __future__ import annotations

import ml_collections

# key -> (label, flags for launch.pretrain / launch.finetune on top of the budget's shared ones)
METHODS = {
    "iql": ("IQL (Gaussian + AWR)", {"algorithm": "iql", "eval.num_candidates": (1,)}),
    "idql": ("IDQL (greedy argmax-Q)", {"algorithm": "idql", "value_loss": "expectile",
                                        "eval.weighting": "greedy"}),
    "aligniql_pos": ("AlignIQL η=+1", {"algorithm": "aligniql", "eta": 1.0}),
    "aligniql_neg": ("AlignIQL η=−1", {"algorithm": "aligniql", "eta": -1.0}),
    "aligniql_hard": ("AlignIQL-hard", {"algorithm": "aligniql_hard"}),
}

# The behaviour-cloning baseline: no training run of its own, one more setting of the final evaluation
# of this method's pretraining checkpoints: N = 1, a single sample from μ per state, so no critic choice.
BC = {"label": "BC (μ alone, N = 1)", "from_method": "aligniql_neg", "num_candidates": 1}

# recipe key -> (label, config file for launch.finetune)
RECIPES = {
    "argmax": ("μ frozen + argmax (IDQL -Max)", "configs/finetune_argmax.py"),
    "implicit": ("μ finetuned + implicit (IDQL -Imp)", "configs/finetune_implicit.py"),
}

# Measured rates used to size a budget (2 cores, quickstart networks, one thread per process).
RATES = {"pretrain_steps_per_s": 70.0, "iql_steps_per_s": 100.0, "pretrain_startup_s": 8.0,
         "eval_s_per_1k_steps_per_episode": 1.0, "finetune_env_steps_per_s": 50.0, "finetune_startup_s": 40.0}


def get_config(budget: str = "small") -> ml_collections.ConfigDict:
    """The budget as a ConfigDict; `pretrain.extra` and `finetune.online` are nested config overrides."""
    c = {
        "budget": budget,
        "methods": list(METHODS),
        "recipes": list(RECIPES),
        "datasets": ["local/hopper/medium-v0", "local/halfcheetah/medium-v0"],
        "seeds": [0, 1, 2],
        "max_parallel_pretrain": 2,     # single-threaded processes at a time (2 cores)
        # where `python -m study` writes the report and the runs unless --out_dir / --runs_dir say otherwise
        "report_dir": f"docs/{budget}",
        "runs_dir": "runs/results",
        "goal_lifts": [],               # study.lift records (.json) of maze jobs shown beside the tables
        "tau": 0.7,                     # locomotion (AlignIQL Table 3 / IDQL appendix E)
    }
    pre = {
        "base_config": "configs/quickstart.py",
        "num_threads": 1,
        # argmax: the papers' evaluation (IDQL: argmax; AlignIQL: max-probability action), the one the
        # tables rank by; implicit: the policy the weights define, whose alignment gap AlignIQL is about.
        "eval_modes": ("argmax", "implicit"),
        "num_candidates": 16,
        "max_episode_steps": 0,         # 0 = the environment's time limit (1000)
        # After training, every final checkpoint (pretrained and finetuned) is evaluated once more on
        # this many episodes with common seeds: the tables' numbers (in-training evaluations are noisy).
        "final_eval_episodes": 20,
        "extra": {},                    # further config overrides shared by all methods
    }
    ft = {"methods": ["aligniql_neg", "idql"],   # finetuned from these methods' pretraining checkpoints
          "online": {}}                          # config.online overrides shared by both recipes

    if budget == "tiny":
        c["seeds"] = [0]
        c["datasets"] = ["local/hopper/medium-v0"]
        pre.update(steps=100, eval_interval=50, eval_episodes=1, num_candidates=4, max_episode_steps=50,
                   final_eval_episodes=2)
        pre["extra"] = {"critic_batch_size": 64, "actor_batch_size": 64, "critic_hidden": (64, 64),
                        "diffusion": {"width": 32, "inner": 64, "num_blocks": 1}, "iql": {"hidden": (64, 64)},
                        "log_interval": 50, "checkpoint_interval": 100}
        ft["methods"] = ["aligniql_neg"]
        ft["online"] = {"total_env_steps": 400, "min_replay_size": 200, "num_actors": 1, "envs_per_actor": 2,
                        "num_candidates": 4, "online_batch_size": 32, "offline_batch_size": 32,
                        "publish_interval": 50, "weight_sync_interval": 50, "eval_interval": 200,
                        "eval_episodes": 1, "log_interval": 50, "replay_checkpoint_interval_s": 30.0}
    elif budget == "small":
        # 30 pretraining runs of 4k steps (quickstart: 6k; papers: 1.5M critic / 3M μ) and 24
        # finetuning runs of 4k environment steps: ~23 + ~48 min by `estimate_seconds`.
        pre.update(steps=4_000, eval_interval=1_000, eval_episodes=5)
        pre["extra"] = {"log_interval": 500, "checkpoint_interval": 1_000}
        ft["online"] = {"total_env_steps": 4_000, "min_replay_size": 1_000, "eval_interval": 1_000,
                        "eval_episodes": 5, "num_candidates": 16}
    elif budget == "converged":
        # The learning issue's study: a budget at which the critic has converged by the calibration
        # diagnostic (Q on the data at 82-85 % of its discounted return-to-go after 30k steps, rising
        # < 15 points per further 10k; docs/finetuning.md §2), on the D4RL-recipe datasets (-v1), 3
        # seeds, with the BC row. ~7 h on 2 cores (estimate_seconds): it runs over several sittings,
        # resumable, seed-major so that a stop leaves whole seeds.
        c["datasets"] = ["local/hopper/medium-v1", "local/halfcheetah/medium-v1",
                         "local/hopper/medium-replay-v1", "local/halfcheetah/medium-replay-v1"]
        # the platform's headline study: its runs are committed (results/converged/) and its report is docs/results.md
        c["report_dir"], c["runs_dir"] = "docs", "results"
        # goal-reaching evidence beside it: `study.lift` records of the maze jobs (study/goal_rows.py); the
        # first 3-seed, 20-episode runs of the same job stay beside the 50-episode ones
        c["goal_lifts"] = ["docs/lift_pointmaze.json", "docs/archive/lift_pointmaze_v0_20ep.json"]
        pre.update(steps=30_000, eval_interval=10_000, eval_episodes=5)
        pre["extra"] = {"log_interval": 1_000, "checkpoint_interval": 5_000}
        ft["online"] = {"num_candidates": 16}     # otherwise the default job's online settings
    elif budget == "medium":
        # A GPU box (learner on CUDA, actors on CPU): paper-size networks and batches (AlignIQL:
        # 512 / 512, μ 256x1024x3; configs/locomotion.py), 10% of the papers' critic steps, N = 64.
        c["seeds"] = [0, 1, 2, 3, 4]
        pre.update(base_config="configs/locomotion.py", num_threads=2, steps=150_000, eval_interval=15_000,
                   eval_episodes=10, num_candidates=64, final_eval_episodes=50)
        pre["extra"] = {"log_interval": 1_000, "checkpoint_interval": 15_000}
        ft["methods"] = ["aligniql_neg", "aligniql_pos", "aligniql_hard", "idql"]
        ft["online"] = {"total_env_steps": 100_000, "min_replay_size": 5_000, "eval_interval": 10_000,
                        "eval_episodes": 10, "num_candidates": 64, "num_actors": 4}
    else:
        raise ValueError(f"unknown budget {budget!r}: choose tiny, small, converged or medium")
    c["pretrain"], c["finetune"] = pre, ft
    return ml_collections.ConfigDict(c)


def flat(d, prefix: str = "") -> dict:
    """Nested overrides -> {"diffusion.width": 32, ...}."""
    out = {}
    for k, v in d.items():
        if hasattr(v, "items"):
            out |= flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def estimate_seconds(c: ml_collections.ConfigDict, rates: dict | None = None) -> dict[str, float]:
    """Wall-time estimate of a budget from measured rates (see the module docstring)."""
    r = {**RATES, **(rates or {})}
    pre = c.pretrain
    n_evals = pre.steps // pre.eval_interval + (pre.steps % pre.eval_interval > 0)
    episode_len = pre.max_episode_steps or 1000
    eval_s = n_evals * len(pre.eval_modes) * r["eval_s_per_1k_steps_per_episode"] * pre.eval_episodes * episode_len / 1000
    per_run = {m: r["pretrain_startup_s"] + eval_s
               + pre.steps / (r["iql_steps_per_s"] if m == "iql" else r["pretrain_steps_per_s"]) for m in c.methods}
    pretrain_s = len(c.seeds) * len(c.datasets) * sum(per_run.values()) / c.max_parallel_pretrain
    steps = c.finetune.online.get("total_env_steps", 10_000)
    n_ft = len(c.seeds) * len(c.datasets) * len(c.finetune.methods) * len(c.recipes)
    finetune_s = n_ft * (r["finetune_startup_s"] + steps / r["finetune_env_steps_per_s"])
    fe = pre.get("final_eval_episodes", 0) * episode_len / 1000 * r["eval_s_per_1k_steps_per_episode"] / 2
    bc_s = fe if BC["from_method"] in c.methods else 0.0
    final_s = (len(c.seeds) * len(c.datasets) * (len(c.methods) * (len(pre.eval_modes) * fe + 6) + bc_s + n_ft // max(
        1, len(c.seeds) * len(c.datasets)) * (fe + 6))) / c.max_parallel_pretrain
    return {"pretrain_s": pretrain_s, "finetune_s": finetune_s, "final_eval_s": final_s,
            "total_s": pretrain_s + finetune_s + final_s,
            "pretrain_runs": len(c.seeds) * len(c.datasets) * len(c.methods), "finetune_runs": n_ft}
