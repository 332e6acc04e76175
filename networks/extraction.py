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

Two ways to act on the weights (IDQL Algorithm 2): "implicit" draws one candidate
from the normalised weights; "argmax" takes the largest weight, ties (expectile
weights are piecewise constant) broken by the larger Q.
"""
from __future__ import annotations

import torch

WEIGHTINGS = ("align", "align_hard", "expectile", "quantile", "exponential", "greedy")
MODES = ("implicit", "argmax")

_TINY = 1e-8


def log_weights(weighting: str, q: torch.Tensor, v: torch.Tensor, *, eta: float = 1.0,
                tau: float = 0.7, exp_alpha: float = 1.0,
                alpha_s: torch.Tensor | None = None, beta_s: torch.Tensor | None = None) -> torch.Tensor:
    """log w(s, a_i) for q [B, N] and v [B]; returns [B, N] (up to a per-state constant)."""
    adv = q - v.unsqueeze(-1)
    if weighting == "align":
        if eta > 0:
            return -eta * adv.square()            # AlignIQL Eq. 12
        return abs(eta) * adv                      # AlignIQL Remark 4.7 (η < 0)
    if weighting == "align_hard":
        if alpha_s is None or beta_s is None:
            raise ValueError("align_hard needs the multipliers α(s), β(s)")
        return -alpha_s.unsqueeze(-1) - beta_s.unsqueeze(-1) * q - 1.0   # AlignIQL Eq. 8
    if weighting == "expectile":
        return torch.log(torch.where(adv < 0, 1.0 - tau, tau)).expand_as(adv).clone()  # IDQL Eq. 9
    if weighting == "quantile":
        asym = torch.where(adv < 0, 1.0 - tau, tau)
        return torch.log(asym) - torch.log(adv.abs().clamp_min(_TINY))  # IDQL Eq. 10
    if weighting == "exponential":
        # IDQL Eq. 12, log α + log|exp(αA) − 1| − log|A|, written without overflow:
        # log|e^x − 1| = x + log(1 − e^{−x}) for x > 0, log(1 − e^{x}) for x < 0.
        x = exp_alpha * adv
        safe_x = torch.where(x.abs() < 1e-6, torch.full_like(x, 1e-6), x)
        log_num = torch.where(safe_x > 0, safe_x + torch.log(-torch.expm1(-safe_x)),
                              torch.log(-torch.expm1(safe_x)))
        logw = torch.log(torch.tensor(exp_alpha)) + log_num - torch.log(adv.abs().clamp_min(_TINY))
        # At A → 0 the weight tends to α²; use the limit where the formula is 0/0.
        limit = torch.full_like(adv, 2.0 * float(torch.log(torch.tensor(exp_alpha))))
        return torch.where(x.abs() < 1e-6, limit, logw)
    if weighting == "greedy":
        best = q.argmax(dim=-1, keepdim=True)
        logw = torch.full_like(q, float("-inf"))
        return logw.scatter(-1, best, 0.0)
    raise ValueError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")


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
