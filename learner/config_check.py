"""Reject invalid settings at start, naming the field, before any work is done."""
from __future__ import annotations

from errors import ConfigError
from learner.agent import ALGORITHMS
from launch.eval_worker import BACKGROUND_SETTINGS
from learner.fast_path import LEARNER_STEPS, MATMUL_PRECISIONS
from networks.linear import CPU_MATMULS
from networks.extraction import MODES, WEIGHTINGS

CRITIC_LOSSES = ("expectile", "quantile", "exponential")


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

    resolve_eta(c)

    if c.algorithm not in ALGORITHMS:
        bad("algorithm", c.algorithm, f"unknown algorithm; choose one of {', '.join(ALGORITHMS)}")
    if c.critic_loss not in CRITIC_LOSSES:
        bad("critic_loss", c.critic_loss, f"choose one of {', '.join(CRITIC_LOSSES)}")
    if not 0.0 < c.tau < 1.0:
        bad("tau", c.tau, "τ must lie strictly between 0 and 1")
    if c.eta == 0:
        bad("eta", c.eta, "AlignIQL needs η ≠ 0 (η > 0: aligned policy, η < 0: AWR-like weights)")
    if c.exp_alpha <= 0:
        bad("exp_alpha", c.exp_alpha, "the exponential-loss temperature must be positive")
    if not 0.0 <= c.discount < 1.0:
        bad("discount", c.discount, "the discount must lie in [0, 1)")
    for field in ("critic_batch_size", "actor_batch_size", "log_interval", "checkpoint_interval",
                  "eval.interval", "eval.episodes", "diffusion.num_steps"):
        value = c
        for part in field.split("."):
            value = value[part]
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
    if c.eval.weighting and c.eval.weighting not in WEIGHTINGS:
        bad("eval.weighting", c.eval.weighting, f"choose one of {', '.join(WEIGHTINGS)} or leave it empty")
    if c.eval.weighting == "align_hard" and c.algorithm != "aligniql_hard":
        bad("eval.weighting", c.eval.weighting, "align_hard weights need the multiplier networks of "
            "algorithm=aligniql_hard")
    if c.learner_step not in LEARNER_STEPS:
        bad("learner_step", c.learner_step, f"choose one of {', '.join(LEARNER_STEPS)}")
    if c.eval.background not in BACKGROUND_SETTINGS:
        bad("eval.background", c.eval.background, f"choose {', '.join(BACKGROUND_SETTINGS)}")
    if c.cpu_matmul not in CPU_MATMULS:
        bad("cpu_matmul", c.cpu_matmul, f"choose {' or '.join(CPU_MATMULS)}")
    if c.matmul_precision not in MATMUL_PRECISIONS:
        bad("matmul_precision", c.matmul_precision, f"choose {', '.join(MATMUL_PRECISIONS)}")
    if c.reward_scale not in ("auto", "none"):
        bad("reward_scale", c.reward_scale, "choose 'auto' or 'none'")
    from data.bounds import parse_override
    parse_override(c.get("action_bounds", ""))     # "" or "low,high", finite, low < high (names the field)
    if c.wandb.mode not in ("auto", "online", "offline", "disabled"):
        bad("wandb.mode", c.wandb.mode, "choose auto, online, offline or disabled")
