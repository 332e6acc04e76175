"""Generalised IQL value losses on u = Q(s, a) − V(s) (IDQL section 4.1).

Each returns the per-sample loss; V(s) = argmin_V E_{a~μ}[f(Q − V)] (IDQL Eq. 6)
is then the expectile, quantile or log-mean-exp of Q under the data's actions.
"""
from __future__ import annotations

import torch


def expectile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """L_2^τ(u) = |τ − 1(u < 0)| u²  (AlignIQL Eq. 1, IQL)."""
    return torch.where(u < 0, 1.0 - tau, tau) * u.square()


def quantile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """L_1^τ(u) = |τ − 1(u < 0)| |u|  (IDQL section 4.1, "Quantiles")."""
    return torch.where(u < 0, 1.0 - tau, tau) * u.abs()


def exponential_loss(u: torch.Tensor, alpha: float, max_exponent: float = 20.0) -> torch.Tensor:
    """Linex loss exp(αu) − αu − 1 (IDQL section 4.1, "Exponential").

    Its minimiser is V = (1/α) log E[exp(αQ)] (IDQL Eq. 11). The exponent is
    clamped so that one outlier Q cannot overflow the loss; the clamp changes
    nothing where |αu| < max_exponent.
    """
    x = (alpha * u).clamp(max=max_exponent)
    return torch.exp(x) - x - 1.0


def value_loss(kind: str, u: torch.Tensor, tau: float, exp_alpha: float) -> torch.Tensor:
    if kind == "expectile":
        return expectile_loss(u, tau).mean()
    if kind == "quantile":
        return quantile_loss(u, tau).mean()
    if kind == "exponential":
        return exponential_loss(u, exp_alpha).mean()
    raise ValueError(f"unknown critic loss {kind!r}")


def multiplier_losses(alpha_s: torch.Tensor, beta_s: torch.Tensor, q: torch.Tensor, v: torch.Tensor,
                      max_exponent: float = 20.0):
    """Dual losses of AlignIQL-hard (Lemma 4.3, Eq. 11), to be *minimised*.

    Eq. 11 maximises L_M = −E_{a~μ}[exp(−α − βQ − 1)] − α − βV. Setting its
    gradient to zero gives Eq. 9 (E_μ[g] = 1, normalisation) for α and Eq. 10
    (E_μ[Q g] = V, policy alignment) for β. We minimise −L_M, split in two so
    that each network only moves its own multiplier:
        L_α = E[exp(−α − sg(β)Q − 1)] + α,      L_β = E[exp(−sg(α) − βQ − 1)] + βV.
    The exponent is clamped against overflow (AlignIQL appendix D notes the
    instability of this term); gradients are also clipped by the caller.
    """
    def g(a, b):
        return torch.exp((-a - b * q - 1.0).clamp(max=max_exponent))

    loss_alpha = (g(alpha_s, beta_s.detach()) + alpha_s).mean()
    loss_beta = (g(alpha_s.detach(), beta_s) + beta_s * v).mean()
    return loss_alpha, loss_beta
