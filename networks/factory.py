"""Networks rebuilt from a config, the algorithm registry, and the reading of older configs.

The learner publishes only what acting needs (μ's EMA copy, the target
critic, V, and the multipliers for AlignIQL-hard) as a flat dict of numpy
arrays; an actor or evaluator process rebuilds the same modules from the
config and loads them, so it needs nothing but the replay address.

The algorithm registry lives here, not in learner/, because actors and the evaluator need the same
facts as the learner (which networks an algorithm has, which weighting it acts with by default)
and may not import the learner (CONVENTIONS.md).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from errors import ConfigError
from networks import extraction
from networks.diffusion import DiffusionBehavior
from networks.extraction import Problem
from networks.mlp import GaussianActor, MultiplierNet, TwinQ, ValueNet, value_layer_norm_placement
from networks.policy import AutocastSampler, CandidatePolicy, ExtractionSpec, GaussianPolicy


# ------------------------------------------------------------------ algorithms
@dataclass(frozen=True)
class Algorithm:
    """One registry entry: which networks an algorithm trains and how it acts by default.

    Every algorithm trains twin Q, its EMA target and V with `config.value_loss` (learner/losses.py).
    `policy`: "diffusion" (μ, acting by weighting N candidates: CandidatePolicy) or "gaussian" (an
    explicit actor trained by AWR: GaussianPolicy). `weighting`: what `config.weighting = ""` means
    (None: acts without candidates). `multipliers`: also trains α(s), β(s) (AlignIQL Lemma 4.3).
    `settings`: the (dotted) config fields only this algorithm reads and `check` rules on; `check(cfg)`
    yields their `Problem`s.
    """
    name: str
    cite: str
    policy: str
    weighting: str | None
    multipliers: bool = False
    settings: tuple[str, ...] = ()
    check: Callable[[Any], Iterable[Problem]] = lambda cfg: ()

    @property
    def acting_modules(self) -> tuple[str, ...]:
        """Which learner modules acting needs; the names match Learner.modules."""
        first = "behavior_ema" if self.policy == "diffusion" else "actor"
        return (first, "critic_target", "value") + (("alpha", "beta") if self.multipliers else ())


ALGORITHMS: dict[str, Algorithm] = {}


def register_algorithm(entry: Algorithm) -> Algorithm:
    if entry.name in ALGORITHMS:
        raise ValueError(f"algorithm {entry.name!r} is registered twice")
    if entry.policy not in ("diffusion", "gaussian"):
        raise ValueError(f"algorithm {entry.name!r}: policy must be 'diffusion' or 'gaussian'")
    ALGORITHMS[entry.name] = entry
    return entry


def _check_diffusion(cfg) -> Iterator[Problem]:
    d = cfg.diffusion
    if not 0.0 <= d.dropout < 1.0:
        yield "diffusion.dropout", d.dropout, "a dropout rate lies in [0, 1)"
    if not 0.0 < d.ema <= 1.0:
        yield "diffusion.ema", d.ema, "the EMA rate of μ's sampling copy lies in (0, 1]"


def _check_hard(cfg) -> Iterator[Problem]:
    yield from _check_diffusion(cfg)
    if cfg.multipliers.grad_clip <= 0:
        yield "multipliers.grad_clip", cfg.multipliers.grad_clip, "the gradient-norm clip must be positive"


def _check_iql(cfg) -> Iterator[Problem]:
    if cfg.iql.temperature < 0:
        yield "iql.temperature", cfg.iql.temperature, "AWR's inverse temperature β of exp(β·A) must be non-negative"
    if cfg.iql.max_weight <= 0:
        yield "iql.max_weight", cfg.iql.max_weight, "the cap on AWR's weights must be positive"


_DIFFUSION = ("diffusion.dropout", "diffusion.ema")
register_algorithm(Algorithm("aligniql", "AlignIQL Theorem 4.6 (implicit actor, Eq. 12)", "diffusion", "align",
                             settings=_DIFFUSION, check=_check_diffusion))
register_algorithm(Algorithm("aligniql_hard", "AlignIQL Theorem 4.1 (Eq. 8-11)", "diffusion", "align_hard",
                             multipliers=True, settings=_DIFFUSION + ("multipliers.grad_clip",), check=_check_hard))
register_algorithm(Algorithm("idql", "IDQL Algorithm 1-2 (Eq. 9 weights with the expectile loss)", "diffusion",
                             "expectile", settings=_DIFFUSION, check=_check_diffusion))
register_algorithm(Algorithm("iql", "IQL + AWR (AlignIQL Eq. 3)", "gaussian", None,
                             settings=("iql.temperature", "iql.max_weight"), check=_check_iql))


# ------------------------------------------------------------------ older configs
# Fields renamed since runs were recorded: old name -> new name. `upgrade_config` reads old dicts,
# config_check and the command line (launch/cli.py) refuse the old name with `renamed_field_message`.
RENAMED_FIELDS = {"critic_loss": "value_loss"}


def renamed_field_message(old: str) -> str:
    new = RENAMED_FIELDS[old]
    return (f"config.{old} is now config.{new}: it sets V's loss (IDQL section 4.1), not Q's. Use "
            f"--config.{new}=... (or c.{new} in a config file). IDQL's extraction weighting is its own "
            f"setting now, config.weighting (default per algorithm); runs recorded with algorithm=idql "
            f"weighed with the {old} name, set --config.weighting to the same name to keep that.")


def upgrade_config(raw: Mapping) -> dict:
    """A recorded config (a run's config.json, a checkpoint's config) as today's fields, behaviour kept.

    The one place older configs are translated. `critic_loss` is read as `value_loss`; since IDQL then
    weighed its candidates by the weighting of the same name (and AlignIQL by its own), the
    `weighting` it acted with is written out, so an old IDQL run with critic_loss=quantile still
    acts with quantile weights. Returns a new plain dict; a ConfigDict is accepted too.
    """
    d = copy.deepcopy(raw.to_dict() if hasattr(raw, "to_dict") else dict(raw))
    if "critic_loss" in d:
        old = d.pop("critic_loss")
        if d.get("value_loss", old) != old:
            raise ConfigError(f"The recorded config holds both critic_loss={old!r} and value_loss="
                              f"{d['value_loss']!r}; they are the same setting (value_loss is its new name).")
        d["value_loss"] = old
        if not d.get("weighting"):
            # what networks.factory.natural_weighting gave before the setting existed
            d["weighting"] = {"aligniql": "align", "aligniql_hard": "align_hard", "idql": old}.get(
                d.get("algorithm"), "")
    return d


def algorithm_of(cfg) -> Algorithm:
    """The registry entry of `cfg.algorithm`; refuses a config that still holds a renamed field.

    An unread old field would otherwise change behaviour silently (IDQL's weighting); configs from
    older runs go through `upgrade_config` first.
    """
    for old in RENAMED_FIELDS:
        if old in cfg:
            raise ConfigError(renamed_field_message(old))
    try:
        return ALGORITHMS[cfg.algorithm]
    except KeyError:
        raise ConfigError(f"Invalid setting config.algorithm={cfg.algorithm!r}: unknown algorithm; choose one "
                          f"of {', '.join(ALGORITHMS)}.") from None


def natural_weighting(cfg, override: str = "") -> str | None:
    """The weighting acting uses: `override` (eval.weighting, online.exploration_weighting), else
    config.weighting, else the algorithm's own (its registry entry); None for an algorithm that acts
    without candidates. Shared here because the learner's evaluation and the actors must agree on it."""
    algorithm = algorithm_of(cfg)
    return override or cfg.get("weighting", "") or algorithm.weighting


# ------------------------------------------------------------------ networks
def make_critic(cfg, obs_dim: int, act_dim: int) -> TwinQ:
    """The twin Q network as configured; the learner and acting processes build it the same way."""
    return TwinQ(obs_dim, act_dim, cfg.critic_hidden, layer_norm=bool(cfg.get("critic_layer_norm", False)))


def make_value(cfg, obs_dim: int) -> ValueNet:
    # A config written before the setting existed describes a network without LayerNorm; one written
    # while it was a bool, True = LayerNorm in the hidden layers (networks/mlp.py VALUE_LAYER_NORMS).
    return ValueNet(obs_dim, cfg.critic_hidden, layer_norm=value_layer_norm_placement(cfg.get("value_layer_norm", False)))


def make_behavior(cfg, obs_dim: int, act_dim: int) -> DiffusionBehavior:
    """μ, the diffusion behaviour model (IDQL appendix E / G), as configured; built here only, for the
    learner (which trains it and keeps an EMA copy) and the acting processes (which load that copy)."""
    d = cfg.diffusion
    return DiffusionBehavior(obs_dim, act_dim, num_steps=d.num_steps, width=d.width, inner=d.inner,
                             num_blocks=d.num_blocks, dropout=d.dropout, time_dim=d.time_dim)


def make_actor(cfg, obs_dim: int, act_dim: int) -> GaussianActor:
    """IQL's Gaussian actor, as configured."""
    return GaussianActor(obs_dim, act_dim, cfg.iql.hidden)


def make_multipliers(cfg, obs_dim: int) -> tuple[MultiplierNet, MultiplierNet]:
    """AlignIQL-hard's α(s), β(s) (Lemma 4.3), as configured. A config written before
    `multipliers.layer_norm` existed built them with hidden LayerNorms too (networks/mlp.py)."""
    m = cfg.multipliers
    placement = m.get("layer_norm", "input+hidden")
    return MultiplierNet(obs_dim, m.hidden, placement), MultiplierNet(obs_dim, m.hidden, placement)


def build_acting_modules(cfg, obs_dim: int, act_dim: int, device="cpu") -> dict[str, nn.Module]:
    """Fresh modules with the learner's architecture, in eval mode, no gradients."""
    algorithm = algorithm_of(cfg)
    modules: dict[str, nn.Module] = {"critic_target": make_critic(cfg, obs_dim, act_dim),
                                     "value": make_value(cfg, obs_dim)}
    if algorithm.policy == "gaussian":
        modules["actor"] = make_actor(cfg, obs_dim, act_dim)
    else:
        modules["behavior_ema"] = make_behavior(cfg, obs_dim, act_dim)
    if algorithm.multipliers:
        modules["alpha"], modules["beta"] = make_multipliers(cfg, obs_dim)
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
    for name in ALGORITHMS[algorithm].acting_modules:
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


def make_policy(cfg, modules: Mapping[str, nn.Module], weighting: str | None, mode: str, num_candidates: int,
                mu_dtype: str = "float32"):
    """The acting policy over rebuilt modules (same extraction code as the learner's evaluation).

    `mu_dtype="bfloat16"` samples the candidates under autocast (actors' opt-in speed setting,
    `online.actor_mu_dtype`); evaluation keeps the float32 default."""
    if algorithm_of(cfg).policy == "gaussian":
        return GaussianPolicy(modules["actor"], modules["critic_target"], modules["value"])
    spec = ExtractionSpec(weighting=weighting, mode=mode, num_candidates=num_candidates,
                          settings=extraction.settings_of(weighting, cfg))
    behavior = modules["behavior_ema"]
    if mu_dtype == "bfloat16":
        behavior = AutocastSampler(behavior, torch.bfloat16)
    elif mu_dtype != "float32":
        raise ConfigError(f"Unknown μ sampling dtype {mu_dtype!r}: choose 'float32' or 'bfloat16'.")
    return CandidatePolicy(behavior, modules["critic_target"], modules["value"], spec,
                           modules.get("alpha"), modules.get("beta"))
