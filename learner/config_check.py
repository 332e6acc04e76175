"""Reject invalid settings at start, naming the field, before any work is done.

The one module that validates the config, `online.*` included: launch programs call `check_config`
and nothing else. Settings that belong to a registered extension (an algorithm, a value loss, a
weighting: networks/factory.py ALGORITHMS, learner/losses.py VALUE_LOSSES, networks/extraction.py
WEIGHTINGS) are checked by that entry's own `check`, called from here for every entry the config
uses, so a new entry brings its rules with it and its errors read like every other one.
"""
from __future__ import annotations

import math

from errors import ConfigError
from learner.behavior_worker import PRETRAIN_PROCESSES
from learner.fast_path import LEARNER_STEPS, MATMUL_PRECISIONS
from learner.losses import VALUE_LOSSES
from networks.extraction import MODES, WEIGHTINGS
from networks.factory import ALGORITHMS, RENAMED_FIELDS, renamed_field_message
from networks.linear import CPU_MATMULS
from networks.mlp import MULTIPLIER_LAYER_NORMS, VALUE_LAYER_NORMS, value_layer_norm_placement

# eval.background: pretraining evaluations in a process of their own (launch/eval_worker.py):
# "auto" = when the learner is on CUDA.
BACKGROUND_SETTINGS = ("auto", "on", "off")
MU_DTYPES = ("float32", "bfloat16")            # online.actor_mu_dtype (networks/policy.py AutocastSampler)
MU_LR_SCHEDULES = ("continue", "constant")     # online.mu_lr_schedule (learner/online.py set_online_rates)


def parse_eta_by_dataset(spec: str) -> dict[str, float]:
    """'medium-play:-1,medium-diverse:-1' -> {'medium-play': -1.0, 'medium-diverse': -1.0}."""
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.rpartition(":")
        try:
            if not sep or not key:
                raise ValueError
            out[key] = float(value)
        except ValueError:
            raise ConfigError(f"Invalid setting config.eta_by_dataset={spec!r}: each entry must read "
                              f"'<part of the dataset id>:<η>', e.g. 'medium-play:-1'; got {item!r}.") from None
    return out


def resolve_eta(c) -> None:
    """η per dataset where a config gives a table (AlignIQL Table 3 uses different η within AntMaze).

    The first key of `config.eta_by_dataset` that occurs in the dataset id sets `config.eta`; with
    no match (or an empty table) `config.eta` stays as given.
    """
    for key, eta in parse_eta_by_dataset(c.get("eta_by_dataset", "")).items():
        if key in c.dataset:
            c.eta = eta
            return


def check_config(c) -> None:
    """Resolves the per-dataset η (`resolve_eta`), then rejects invalid settings naming the field."""
    def bad(field: str, value, why: str):
        raise ConfigError(f"Invalid setting config.{field}={value!r}: {why}. "
                          f"Fix it in your config file or with --config.{field}=... on the command line.")

    for old in RENAMED_FIELDS:
        if old in c:
            raise ConfigError(renamed_field_message(old))
    resolve_eta(c)

    check_extensions(c, bad)
    if not 0.0 <= c.discount < 1.0:
        bad("discount", c.discount, "the discount must lie in [0, 1)")
    for field in ("critic_batch_size", "actor_batch_size", "log_interval", "checkpoint_interval",
                  "eval.interval", "eval.episodes", "diffusion.num_steps"):
        value = field_value(c, field)
        if int(value) < 1:
            bad(field, value, "must be at least 1")
    for field in ("num_critic_steps", "num_actor_steps"):
        if int(c[field]) < 0:
            bad(field, c[field], "must be non-negative")
    if len(c.eval.num_candidates) == 0 or any(int(n) < 1 for n in c.eval.num_candidates):
        bad("eval.num_candidates", c.eval.num_candidates, "every N must be at least 1")
    for mode in c.eval.modes:
        if mode not in MODES:
            bad("eval.modes", c.eval.modes, f"each mode must be one of {', '.join(MODES)}")
    if c.learner_step not in LEARNER_STEPS:
        bad("learner_step", c.learner_step, f"choose one of {', '.join(LEARNER_STEPS)}")
    processes = c.get("pretrain_processes", "auto")
    if processes not in PRETRAIN_PROCESSES:
        bad("pretrain_processes", processes, f"choose {', '.join(PRETRAIN_PROCESSES)}")
    if processes == "two" and ALGORITHMS[c.algorithm].policy == "gaussian":
        bad("pretrain_processes", processes, f"algorithm={c.algorithm} has no diffusion μ to train in a second "
            f"process; choose auto or one")
    if processes == "two" and c.learner_step != "eager":
        bad("pretrain_processes", processes, f"the second process runs the eager step, not "
            f"learner_step={c.learner_step!r}; choose auto or one")
    if c.eval.background not in BACKGROUND_SETTINGS:
        bad("eval.background", c.eval.background, f"choose {', '.join(BACKGROUND_SETTINGS)}")
    if c.cpu_matmul not in CPU_MATMULS:
        bad("cpu_matmul", c.cpu_matmul, f"choose {' or '.join(CPU_MATMULS)}")
    if c.matmul_precision not in MATMUL_PRECISIONS:
        bad("matmul_precision", c.matmul_precision, f"choose {', '.join(MATMUL_PRECISIONS)}")
    if value_layer_norm_placement(c.value_layer_norm) not in VALUE_LAYER_NORMS:
        bad("value_layer_norm", c.value_layer_norm, f"where V's LayerNorm goes: choose {', '.join(VALUE_LAYER_NORMS)}")
    if c.multipliers.get("layer_norm", "input") not in MULTIPLIER_LAYER_NORMS:
        bad("multipliers.layer_norm", c.multipliers.layer_norm,
            f"where α's and β's LayerNorms go: choose {' or '.join(MULTIPLIER_LAYER_NORMS)}")
    if c.reward_scale not in ("auto", "none"):
        bad("reward_scale", c.reward_scale, "choose 'auto' or 'none'")
    from data.rewards import check_overrides
    check_overrides(c)     # config.domain: "" or a known domain; config.reference_scores: "" or "min,max"
    from data.bounds import parse_override
    parse_override(c.get("action_bounds", ""))     # "" or "low,high", finite, low < high (names the field)
    if c.wandb.mode not in ("auto", "online", "offline", "disabled"):
        bad("wandb.mode", c.wandb.mode, "choose auto, online, offline or disabled")
    if "online" in c:
        check_online(c.online, bad)


def field_value(c, field: str):
    """The value of a dotted config field ("diffusion.ema")."""
    value = c
    for part in field.split("."):
        value = value[part]
    return value


def entry_problems(c, entry):
    """The `Problem`s of a registry entry's settings: each a finite number (a NaN passes every
    comparison its rule makes), then the entry's own rules."""
    for field in entry.settings:
        value = field_value(c, field)
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            yield field, value, "must be a finite number"
    yield from entry.check(c)


def check_extensions(c, bad) -> None:
    """The algorithm, the value loss and every weighting the config names: known names, and each
    registry entry's own rules (`check`) for the settings it reads."""
    if c.algorithm not in ALGORITHMS:
        bad("algorithm", c.algorithm, f"unknown algorithm; choose one of {', '.join(ALGORITHMS)}")
    algorithm = ALGORITHMS[c.algorithm]
    for field, value, why in entry_problems(c, algorithm):
        bad(field, value, f"{why} (read by algorithm={c.algorithm})")

    if c.value_loss not in VALUE_LOSSES:
        bad("value_loss", c.value_loss, f"V's loss (IDQL section 4.1); choose one of {', '.join(VALUE_LOSSES)}")
    for field, value, why in entry_problems(c, VALUE_LOSSES[c.value_loss]):
        bad(field, value, f"{why} (read by value_loss={c.value_loss})")

    # config.weighting ("" = the algorithm's own), and the evaluation's and the actors' overrides of it
    named = {"weighting": c.get("weighting", ""), "eval.weighting": c.eval.weighting or ""}
    if "online" in c:
        named["online.exploration_weighting"] = c.online.exploration_weighting or ""
    for field, name in named.items():
        if name and name not in WEIGHTINGS:
            bad(field, name, f"choose one of {', '.join(WEIGHTINGS)} or leave it empty (the algorithm's own)")
    if algorithm.policy != "diffusion":
        return          # acts with its own actor: no candidates to weigh (the names above are still typos)
    own = named["weighting"] or algorithm.weighting
    in_use = {"weighting": own} | {field: name for field, name in named.items() if name and field != "weighting"}
    for field, name in in_use.items():
        entry = WEIGHTINGS[name]
        if entry.needs_multipliers and not algorithm.multipliers:
            multiplied = ", ".join(a.name for a in ALGORITHMS.values() if a.multipliers)
            bad(field, name, f"{name} weights need the multiplier networks α(s), β(s) of algorithm={multiplied}")
        for setting, value, why in entry_problems(c, entry):
            bad(setting, value, f"{why} (read by the {name} weighting, {field}={name!r})")


def check_online(o, bad) -> None:
    """The online finetuning settings (configs/finetune.py `online_defaults`)."""
    if int(o.num_actors) < 0 or (int(o.num_actors) == 0 and not o.allow_remote):
        bad("online.num_actors", o.num_actors, "at least 1 local actor is needed unless online.allow_remote=True "
            "lets actors on other machines feed the replay")
    for field in ("envs_per_actor", "num_candidates", "sampler_workers", "prefetch_batches", "total_env_steps",
                  "min_replay_size", "replay_max_size", "online_batch_size", "offline_batch_size",
                  "publish_interval", "weight_sync_interval", "eval_interval", "eval_episodes", "log_interval"):
        if int(o[field]) < 1:
            bad(f"online.{field}", o[field], "must be at least 1")
    for field in ("mu_steps_per_update", "actor_restart_limit", "evaluator_restart_limit", "learner_restart_limit"):
        if int(o.get(field, 0)) < 0:
            bad(f"online.{field}", o[field], "must be at least 0")
    for field in ("actor_nice", "evaluator_nice"):
        if not 0 <= int(o.get(field, 0)) <= 19:
            bad(f"online.{field}", o[field], "a Unix niceness from 0 (the learner's priority) to 19 (the lowest)")
    if o.get("actor_mu_dtype", "float32") not in MU_DTYPES:
        bad("online.actor_mu_dtype", o.actor_mu_dtype, f"choose {' or '.join(MU_DTYPES)}")
    for field in ("exploration", "eval_mode"):
        if o[field] not in MODES:
            bad(f"online.{field}", o[field], f"choose {' or '.join(MODES)}")
    if o.updates_per_env_step <= 0:
        bad("online.updates_per_env_step", o.updates_per_env_step, "must be positive")
    if o.mu_lr_schedule not in MU_LR_SCHEDULES:
        bad("online.mu_lr_schedule", o.mu_lr_schedule, "choose 'continue' (μ's cosine schedule goes on, IDQL's "
            "reference) or 'constant' (online.mu_lr throughout)")
    if o.mu_lr_horizon < 1.0:
        bad("online.mu_lr_horizon", o.mu_lr_horizon,
            "the horizon is a multiple of the pretraining μ steps, at least 1")
    if o.mu_lr < 0:
        bad("online.mu_lr", o.mu_lr, "must be non-negative")
    if float(o.get("ray_actor_cpus", 1.0)) < 0:
        bad("online.ray_actor_cpus", o.ray_actor_cpus, "must be at least 0 (0: Ray places actors without "
            "reserving CPUs)")
    if float(o.get("replay_checkpoint_interval_s", 1.0)) <= 0:
        bad("online.replay_checkpoint_interval_s", o.replay_checkpoint_interval_s, "must be positive")
    if not 0 <= int(o.get("replay_port", 0)) <= 65535:
        bad("online.replay_port", o.replay_port, "a TCP port (0 = pick a free one)")
    if o.min_replay_size > o.replay_max_size:
        bad("online.min_replay_size", o.min_replay_size, "larger than replay_max_size: learning would never start")
