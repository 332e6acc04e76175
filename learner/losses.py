"""Generalised IQL value losses on u = Q(s, a) − V(s) (IDQL section 4.1), and AlignIQL-hard's dual losses.

Each value loss returns the per-sample loss; V(s) = argmin_V E_{a~μ}[f(Q − V)] (IDQL Eq. 6)
is then the expectile, quantile or log-mean-exp of Q under the data's actions. They are V's loss
(`config.value_loss`); Q always regresses on r + γV(s') (AlignIQL Eq. 2).

The value losses form a registry, `VALUE_LOSSES` (name → `ValueLoss`: the function, the config
fields it reads, their rule), so a new one is added here once (docs/extending.md) and is then
checked at start-up and tested by tests/test_registry.py without further wiring.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import torch

from networks.extraction import Problem, check_exp_alpha, check_tau


@dataclass(frozen=True)
class ValueLoss:
    """One registry entry: `per_sample(u, **settings)` the loss of each u = Q − V; `settings` the
    top-level config fields passed to it by keyword; `check(cfg)` the `Problem`s of those fields;
    `cite` the paper equation it implements."""
    name: str
    per_sample: Callable[..., torch.Tensor]
    cite: str
    settings: tuple[str, ...] = ()
    check: Callable[[Any], Iterable[Problem]] = lambda cfg: ()


VALUE_LOSSES: dict[str, ValueLoss] = {}


def register_value_loss(entry: ValueLoss) -> ValueLoss:
    if entry.name in VALUE_LOSSES:
        raise ValueError(f"value loss {entry.name!r} is registered twice")
    VALUE_LOSSES[entry.name] = entry
    return entry


def expectile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """L_2^τ(u) = |τ − 1(u < 0)| u²  (AlignIQL Eq. 1, IQL)."""
    return torch.where(u < 0, 1.0 - tau, tau) * u.square()


def quantile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """L_1^τ(u) = |τ − 1(u < 0)| |u|  (IDQL section 4.1, "Quantiles")."""
    return torch.where(u < 0, 1.0 - tau, tau) * u.abs()


def guarded_exp(x: torch.Tensor, threshold: float = 20.0) -> torch.Tensor:
    """exp(x) up to `threshold`, continued by its tangent line beyond it.

    Guards a loss against overflow without changing the sign of its gradient:
    clamping x *by value* makes the term constant past the clamp (zero gradient,
    and in a sum with a linear term a gradient of the wrong sign), whereas the
    tangent keeps the slope exp(threshold) > 0, so descent still pulls x back.
    Equal to exp(x), value and slope, for x ≤ threshold.
    """
    c = torch.as_tensor(threshold, dtype=x.dtype, device=x.device)
    inside = torch.exp(torch.minimum(x, c))
    return torch.where(x <= c, inside, inside * (1.0 + x - c))


def exponential_loss(u: torch.Tensor, alpha: float, max_exponent: float = 20.0) -> torch.Tensor:
    """Linex loss exp(αu) − αu − 1 (IDQL section 4.1, "Exponential").

    Its minimiser is V = (1/α) log E[exp(αQ)] (IDQL Eq. 11). Beyond
    αu = max_exponent the exponential continues linearly (`guarded_exp`): no
    overflow, and V under a much larger Q still gets a push of the right sign,
    α(e^max_exponent − 1), where a clamp would give it none. The IDQL reference
    caps the weight exp(αu) at 6 in its gradient (same sign, a lower cap that
    also moves the minimiser); below the threshold this is the exact linex.
    """
    x = alpha * u
    return guarded_exp(x, max_exponent) - x - 1.0


register_value_loss(ValueLoss("expectile", expectile_loss, "AlignIQL Eq. 1; IDQL section 4.1 (Eq. 9's loss)",
                              settings=("tau",), check=check_tau))
register_value_loss(ValueLoss("quantile", quantile_loss, "IDQL section 4.1, Quantiles (Eq. 10's loss)",
                              settings=("tau",), check=check_tau))
register_value_loss(ValueLoss("exponential", lambda u, exp_alpha: exponential_loss(u, exp_alpha),
                              "IDQL section 4.1, Exponential (Eq. 11-12)", settings=("exp_alpha",),
                              check=check_exp_alpha))


def get_value_loss(name: str) -> ValueLoss:
    try:
        return VALUE_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown value loss {name!r}; expected one of {tuple(VALUE_LOSSES)}") from None


def value_loss_settings(name: str, cfg) -> dict[str, float]:
    """The values of the config fields the value loss `name` reads."""
    return {field: float(cfg[field]) for field in get_value_loss(name).settings}


def value_loss(name: str, u: torch.Tensor, settings: Mapping[str, float]) -> torch.Tensor:
    """Mean over the batch of value loss `name` on u = Q − V (IDQL Eq. 6), `settings` from
    `value_loss_settings`."""
    return get_value_loss(name).per_sample(u, **settings).mean()


def multiplier_losses(alpha_s: torch.Tensor, beta_s: torch.Tensor, q: torch.Tensor, v: torch.Tensor,
                      max_exponent: float = 20.0):
    """Dual losses of AlignIQL-hard (Lemma 4.3, Eq. 11), to be *minimised*.

    Eq. 11 maximises L_M = −E_{a~μ}[exp(−α − βQ − 1)] − α − βV. Setting its
    gradient to zero gives Eq. 9 (E_μ[g] = 1, normalisation) for α and Eq. 10
    (E_μ[Q g] = V, policy alignment) for β. We minimise −L_M, split in two so
    that each network only moves its own multiplier:
        L_α = E[exp(−α − sg(β)Q − 1)] + α,      L_β = E[exp(−sg(α) − βQ − 1)] + βV.
    The exponential is continued linearly past `max_exponent` (`guarded_exp`;
    AlignIQL appendix D notes the instability of this term): a clamp by value
    would flip the gradient's sign there (the loss becomes α + βV) and let the
    exponent run away; the tangent keeps the restoring force. Gradients are
    also clipped by the caller, per network.
    """
    def g(a, b):
        return guarded_exp(-a - b * q - 1.0, max_exponent)

    loss_alpha = (g(alpha_s, beta_s.detach()) + alpha_s).mean()
    loss_beta = (g(alpha_s.detach(), beta_s) + beta_s * v).mean()
    return loss_alpha, loss_beta
