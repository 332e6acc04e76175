"""Acting networks rebuilt from a config and a flat weight dict.

The learner publishes only what acting needs (μ's EMA copy, the target
critic, V, and the multipliers for AlignIQL-hard) as a flat dict of numpy
arrays; an actor or evaluator process rebuilds the same modules from the
config and loads them, so it needs nothing but the replay address.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from errors import ConfigError
from networks.diffusion import DiffusionBehavior
from networks.mlp import GaussianActor, MultiplierNet, TwinQ, ValueNet, value_layer_norm_placement
from networks.policy import AutocastSampler, CandidatePolicy, ExtractionSpec, GaussianPolicy

# Which learner modules acting needs, by algorithm; the names match Learner.modules.
ACTING_MODULES = {
    "aligniql": ("behavior_ema", "critic_target", "value"),
    "idql": ("behavior_ema", "critic_target", "value"),
    "aligniql_hard": ("behavior_ema", "critic_target", "value", "alpha", "beta"),
    "iql": ("actor", "critic_target", "value"),
}


def natural_weighting(cfg, override: str = "") -> str:
    """`override`, else the candidate weighting each algorithm's paper pairs it with.

    Shared here because the learner's evaluation and the actors must agree on it.
    """
    if override:
        return override
    return {"aligniql": "align", "aligniql_hard": "align_hard", "idql": cfg.critic_loss}.get(cfg.algorithm, "greedy")


def make_critic(cfg, obs_dim: int, act_dim: int) -> TwinQ:
    """The twin Q network as configured; the learner and acting processes build it the same way."""
    return TwinQ(obs_dim, act_dim, cfg.critic_hidden, layer_norm=bool(cfg.get("critic_layer_norm", False)))


def make_value(cfg, obs_dim: int) -> ValueNet:
    # A config written before the setting existed describes a network without LayerNorm; one written
    # while it was a bool, True = LayerNorm in the hidden layers (networks/mlp.py VALUE_LAYER_NORMS).
    return ValueNet(obs_dim, cfg.critic_hidden, layer_norm=value_layer_norm_placement(cfg.get("value_layer_norm", False)))


def build_acting_modules(cfg, obs_dim: int, act_dim: int, device="cpu") -> dict[str, nn.Module]:
    """Fresh modules with the learner's architecture, in eval mode, no gradients."""
    modules: dict[str, nn.Module] = {"critic_target": make_critic(cfg, obs_dim, act_dim),
                                     "value": make_value(cfg, obs_dim)}
    if cfg.algorithm == "iql":
        modules["actor"] = GaussianActor(obs_dim, act_dim, cfg.iql.hidden)
    else:
        d = cfg.diffusion
        modules["behavior_ema"] = DiffusionBehavior(obs_dim, act_dim, num_steps=d.num_steps, width=d.width,
                                                    inner=d.inner, num_blocks=d.num_blocks, dropout=d.dropout,
                                                    time_dim=d.time_dim)
    if cfg.algorithm == "aligniql_hard":
        modules["alpha"] = MultiplierNet(obs_dim, cfg.multipliers.hidden)
        modules["beta"] = MultiplierNet(obs_dim, cfg.multipliers.hidden)
    for m in modules.values():
        m.to(device).eval().requires_grad_(False)
    return modules


def acting_params(modules: Mapping[str, nn.Module], algorithm: str) -> dict[str, np.ndarray]:
    """Flat {"module.param": float32 array} of what acting needs (parameters and buffers).

    A snapshot: the arrays own their memory. On a CPU `.to("cpu")` returns the live tensor and
    `.numpy()` shares it, and a consumer that serialises later (a multiprocessing queue pickles on its
    own thread) would otherwise ship the weights of whatever step the learner has reached by then.
    """
    out: dict[str, np.ndarray] = {}
    for name in ACTING_MODULES[algorithm]:
        for key, tensor in modules[name].state_dict().items():
            out[f"{name}.{key}"] = tensor.detach().to("cpu", torch.float32, copy=True).numpy()
    return out


def load_acting_params(modules: Mapping[str, nn.Module], params: Mapping[str, np.ndarray]) -> None:
    for name, module in modules.items():
        prefix = name + "."
        state = {k[len(prefix):]: torch.as_tensor(v) for k, v in params.items() if k.startswith(prefix)}
        module.load_state_dict(state)


def evaluation_policies(cfg, modules: Mapping[str, nn.Module]):
    """policy_for(mode, N): the policies an evaluation runs over `modules` (the learner's own, or acting
    networks rebuilt from published weights), with the config's evaluation weighting; IQL's Gaussian
    whatever the mode."""
    weighting = natural_weighting(cfg, cfg.eval.weighting or "")

    def policy_for(mode: str, num_candidates: int):
        return make_policy(cfg, modules, weighting, "argmax" if mode == "gaussian" else mode, num_candidates)
    return policy_for


def make_policy(cfg, modules: Mapping[str, nn.Module], weighting: str, mode: str, num_candidates: int,
                mu_dtype: str = "float32"):
    """The acting policy over rebuilt modules (same extraction code as the learner's evaluation).

    `mu_dtype="bfloat16"` samples the candidates under autocast (actors' opt-in speed setting,
    `online.actor_mu_dtype`); evaluation keeps the float32 default."""
    if cfg.algorithm == "iql":
        return GaussianPolicy(modules["actor"], modules["critic_target"], modules["value"])
    spec = ExtractionSpec(weighting=weighting, mode=mode, num_candidates=num_candidates,
                          eta=cfg.eta, tau=cfg.tau, exp_alpha=cfg.exp_alpha)
    behavior = modules["behavior_ema"]
    if mu_dtype == "bfloat16":
        behavior = AutocastSampler(behavior, torch.bfloat16)
    elif mu_dtype != "float32":
        raise ConfigError(f"Unknown μ sampling dtype {mu_dtype!r}: choose 'float32' or 'bfloat16'.")
    return CandidatePolicy(behavior, modules["critic_target"], modules["value"], spec,
                           modules.get("alpha"), modules.get("beta"))
