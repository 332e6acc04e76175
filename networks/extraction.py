"""Policy extraction over N candidate actions sampled from μ, vectorised over states.

Every weighting is written as a *log*-weight over the candidates, so that
normalising is a softmax and nothing over- or underflows, whatever the scale of Q.
Let A = Q(s, a_i) − V(s) with Q the target critic's min over heads.

    align        AlignIQL (Theorem 4.6, Eq. 12):   η > 0: w ∝ exp(−η A²)      (aligned)
                 AlignIQL (Remark 4.7):            η < 0: w ∝ exp(|η| A)      (AWR-like)
    align_hard   AlignIQL-hard (Theorem 4.1, Eq. 8 with f = log, g_f(x) = exp(x − 1)):
                                                    w ∝ exp(−α(s) − β(s) Q − 1)
    expectile    IDQL Eq. 9:   w = |τ − 1(A < 0)|
    quantile     IDQL Eq. 10:  w = |τ − 1(A < 0)| / |A|
    exponential  IDQL Eq. 12:  w = α |exp(α A) − 1| / |A|
    greedy       the best candidate by Q alone (IDQL's default "argmax" extraction)

Each is one entry of the registry `WEIGHTINGS` (name → `Weighting`): its function, the config
fields it reads and the rule those fields must obey. Why a registry: the learner's evaluation, the
actors, the evaluator and the start-up check all reach a weighting through its entry, so a new one
is added here, once (docs/extending.md), and tests/test_registry.py tests it at once.

Two ways to act on the weights (IDQL Algorithm 2): "implicit" draws one candidate
from the normalised weights; "argmax" takes the largest weight, ties (expectile
weights are piecewise constant) broken by the larger Q.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch

MODES = ("implicit", "argmax")

_TINY = 1e-8

# A problem a check found: (config field, its value, why it is wrong). learner/config_check.py turns
# it into the one ConfigError message every bad setting gets; networks/ cannot import the learner.
Problem = tuple[str, Any, str]


@dataclass(frozen=True)
class Weighting:
    """One registry entry: how to weigh μ's candidates, and what it needs from the config.

    `log_weights(q [B, N], v [B], **settings)` returns log w [B, N] up to a per-state constant;
    `settings` names the top-level config fields passed to it as keyword arguments (so acting code
    never threads a weighting's parameters by hand); `needs_multipliers` adds the keyword arguments
    `alpha_s`, `beta_s` [B] (only algorithms that train α(s), β(s) can run it); `check(cfg)` yields
    the `Problem`s of those settings; `cite` is the paper equation it implements.
    """
    name: str
    log_weights: Callable[..., torch.Tensor]
    cite: str
    settings: tuple[str, ...] = ()
    needs_multipliers: bool = False
    check: Callable[[Any], Iterable[Problem]] = lambda cfg: ()


WEIGHTINGS: dict[str, Weighting] = {}


def register_weighting(entry: Weighting) -> Weighting:
    """Add `entry` to the registry; a second entry of the same name is a programming error."""
    if entry.name in WEIGHTINGS:
        raise ValueError(f"weighting {entry.name!r} is registered twice")
    WEIGHTINGS[entry.name] = entry
    return entry


# ---------------------------------------------------------------- rules of the shared settings
# τ and α are read by a weighting and by the value loss of the same name (IDQL derives the weight
# from the loss: section 4.1, Eq. 9-12), so their rules are written once, here; learner/losses.py
# uses them too.
def check_tau(cfg) -> Iterator[Problem]:
    if not 0.0 < cfg.tau < 1.0:
        yield "tau", cfg.tau, "τ must lie strictly between 0 and 1"


def check_exp_alpha(cfg) -> Iterator[Problem]:
    if cfg.exp_alpha <= 0:
        yield "exp_alpha", cfg.exp_alpha, "the exponential temperature α must be positive"


def check_eta(cfg) -> Iterator[Problem]:
    if cfg.eta == 0:
        yield "eta", cfg.eta, "AlignIQL needs η ≠ 0 (η > 0: aligned policy, η < 0: AWR-like weights)"


# ---------------------------------------------------------------- the weightings
def align(q: torch.Tensor, v: torch.Tensor, *, eta: float) -> torch.Tensor:
    adv = q - v.unsqueeze(-1)
    if eta > 0:
        return -eta * adv.square()            # AlignIQL Eq. 12
    return abs(eta) * adv                      # AlignIQL Remark 4.7 (η < 0)


def align_hard(q: torch.Tensor, v: torch.Tensor, *, alpha_s: torch.Tensor, beta_s: torch.Tensor) -> torch.Tensor:
    return -alpha_s.unsqueeze(-1) - beta_s.unsqueeze(-1) * q - 1.0   # AlignIQL Eq. 8


def expectile(q: torch.Tensor, v: torch.Tensor, *, tau: float) -> torch.Tensor:
    adv = q - v.unsqueeze(-1)
    return torch.log(torch.where(adv < 0, 1.0 - tau, tau)).expand_as(adv).clone()  # IDQL Eq. 9


def quantile(q: torch.Tensor, v: torch.Tensor, *, tau: float) -> torch.Tensor:
    adv = q - v.unsqueeze(-1)
    asym = torch.where(adv < 0, 1.0 - tau, tau)
    return torch.log(asym) - torch.log(adv.abs().clamp_min(_TINY))  # IDQL Eq. 10


def exponential(q: torch.Tensor, v: torch.Tensor, *, exp_alpha: float) -> torch.Tensor:
    # IDQL Eq. 12, log α + log|exp(αA) − 1| − log|A|, written without overflow:
    # log|e^x − 1| = x + log(1 − e^{−x}) for x > 0, log(1 − e^{x}) for x < 0.
    adv = q - v.unsqueeze(-1)
    x = exp_alpha * adv
    safe_x = torch.where(x.abs() < 1e-6, torch.full_like(x, 1e-6), x)
    log_num = torch.where(safe_x > 0, safe_x + torch.log(-torch.expm1(-safe_x)),
                          torch.log(-torch.expm1(safe_x)))
    logw = torch.log(torch.tensor(exp_alpha)) + log_num - torch.log(adv.abs().clamp_min(_TINY))
    # At A → 0 the weight tends to α²; use the limit where the formula is 0/0.
    limit = torch.full_like(adv, 2.0 * float(torch.log(torch.tensor(exp_alpha))))
    return torch.where(x.abs() < 1e-6, limit, logw)


def greedy(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    best = q.argmax(dim=-1, keepdim=True)
    logw = torch.full_like(q, float("-inf"))
    return logw.scatter(-1, best, 0.0)


register_weighting(Weighting("align", align, "AlignIQL Eq. 12 (η > 0), Remark 4.7 (η < 0)",
                             settings=("eta",), check=check_eta))
register_weighting(Weighting("align_hard", align_hard, "AlignIQL Eq. 8 with multipliers of Lemma 4.3",
                             needs_multipliers=True))
register_weighting(Weighting("expectile", expectile, "IDQL Eq. 9", settings=("tau",), check=check_tau))
register_weighting(Weighting("quantile", quantile, "IDQL Eq. 10", settings=("tau",), check=check_tau))
register_weighting(Weighting("exponential", exponential, "IDQL Eq. 12", settings=("exp_alpha",),
                             check=check_exp_alpha))
register_weighting(Weighting("greedy", greedy, "IDQL Algorithm 2, argmax over Q"))


def get_weighting(name: str) -> Weighting:
    """The registry entry of `name`; an unknown name is a programming error here (config_check
    refuses a configured one, naming the field, before anything runs)."""
    try:
        return WEIGHTINGS[name]
    except KeyError:
        raise ValueError(f"unknown weighting {name!r}; expected one of {tuple(WEIGHTINGS)}") from None


def settings_of(name: str, cfg) -> tuple[tuple[str, float], ...]:
    """The values of the config fields the weighting `name` reads, as (field, value) pairs."""
    return tuple((field, float(cfg[field])) for field in get_weighting(name).settings)


def log_weights(name: str, q: torch.Tensor, v: torch.Tensor, *, alpha_s: torch.Tensor | None = None,
                beta_s: torch.Tensor | None = None, **settings: float) -> torch.Tensor:
    """log w(s, a_i) of weighting `name` for q [B, N] and v [B]; returns [B, N] (up to a per-state constant).

    `settings` may hold more than the weighting reads (callers pass a config's whole set); only its
    own are passed on, and each of its own must be there.
    """
    entry = get_weighting(name)
    kwargs = {k: settings[k] for k in entry.settings if k in settings}
    if entry.needs_multipliers:
        if alpha_s is None or beta_s is None:
            raise ValueError(f"{name} needs the multipliers α(s), β(s)")
        kwargs.update(alpha_s=alpha_s, beta_s=beta_s)
    return entry.log_weights(q, v, **kwargs)


def select(logw: torch.Tensor, q: torch.Tensor, mode: str,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Index [B] of the chosen candidate per state."""
    if mode == "argmax":
        top = logw.max(dim=-1, keepdim=True).values
        is_top = logw >= top - 1e-6 * (1.0 + top.abs())
        return torch.where(is_top, q, torch.full_like(q, float("-inf"))).argmax(dim=-1)
    if mode == "implicit":
        probs = torch.softmax(logw, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def expected_q(logw: torch.Tensor, q: torch.Tensor, mode: str) -> torch.Tensor:
    """E_{a~π}[Q(s, a)] of the extracted policy over the candidates, [B].

    Exact over the N candidates: the softmax-weighted mean for "implicit",
    the chosen candidate's Q for "argmax". Minus V(s) this is the policy
    alignment gap of AlignIQL's Definition 3.1 (Eq. 7 holds when it is zero).
    """
    if mode == "implicit":
        return (torch.softmax(logw, dim=-1) * q).sum(-1)
    idx = select(logw, q, "argmax")
    return q.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
