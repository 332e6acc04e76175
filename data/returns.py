"""Discounted Monte-Carlo returns-to-go: the fixed point a critic can be checked against.

On the behaviour data, Q(s, a) of an IQL-style critic should approach the discounted return-to-go
G_t = Σ_k γ^k r_{t+k} of the data (for expectile τ = 0.5, and exceed it for τ > 0.5); on the
states a policy visits, Q of the action it chose should approach what that action then earned.
Both comparisons need G only where it is known: after a time-limit truncation the episode would
have gone on, so steps close to a truncation have a return-to-go cut short and are left out.
"""
from __future__ import annotations

import math

import numpy as np


def truncation_horizon(discount: float, tolerance: float = 0.01) -> int:
    """Steps H with γ^H ≤ tolerance: a return-to-go at least H steps before a cut is within
    `tolerance` (relative to the value scale) of the uncut one. γ = 0.99 gives 459."""
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"discount must lie in [0, 1), got {discount}")
    if discount == 0.0:
        return 1
    return int(math.ceil(math.log(tolerance) / math.log(discount)))


def returns_to_go(rewards: np.ndarray, terminated: bool, discount: float,
                  tolerance: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """G_t of one episode, and which steps have a trustworthy G_t.

    `terminated`: the episode really ended (all G exact); otherwise it was cut (time limit, end of
    data) and only steps at least `truncation_horizon` before the cut count.
    """
    r = np.asarray(rewards, dtype=np.float64)
    g = np.zeros_like(r)
    acc = 0.0
    for t in range(len(r) - 1, -1, -1):
        acc = r[t] + discount * acc
        g[t] = acc
    valid = np.ones(len(r), dtype=bool)
    if not terminated:
        valid[max(0, len(r) - truncation_horizon(discount, tolerance)):] = False
    return g, valid


def dataset_returns_to_go(rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray,
                          discount: float, tolerance: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """returns_to_go over a flat transition array whose episodes end at a terminal or a timeout
    (the last transition ends one too, as a cut)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    ends = np.flatnonzero((np.asarray(terminals) > 0) | (np.asarray(timeouts) > 0))
    if len(rewards) and (not len(ends) or ends[-1] != len(rewards) - 1):
        ends = np.append(ends, len(rewards) - 1)
    g = np.zeros_like(rewards)
    valid = np.zeros(len(rewards), dtype=bool)
    start = 0
    for end in ends:
        sl = slice(start, end + 1)
        g[sl], valid[sl] = returns_to_go(rewards[sl], bool(terminals[end] > 0), discount, tolerance)
        start = end + 1
    return g, valid
