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
