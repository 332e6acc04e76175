"""One-dimensional bandit: how each extraction weighting turns μ and Q into an implicit policy.

    python -m docs.bandit_figure                       # -> docs/figures/bandit.png  (a few seconds)
    python -m docs.bandit_figure --out=/tmp/bandit.png

Like IDQL's Figure 2: one state, a continuous action in [-1, 1], a behaviour policy μ that
is a mixture of three clusters of actions whose Q is low, medium and high, plus noise.
N candidates are drawn from μ; V is the τ-expectile of Q under μ (over those candidates,
exactly, by bisection), i.e. what IQL's value loss converges to. Then every weighting of
the platform (networks.extraction.log_weights — the same code actors and evaluators run)
reweights the candidates, and networks.extraction.expected_q gives E_π[Q] of the implicit
policy, to compare with V (AlignIQL Definition 3.1: the policy is aligned when they match).

AlignIQL-hard's multipliers α, β are scalars here (one state), solved from its dual (Eq. 11)
by Adam on learner.losses.multiplier_losses, the learner's own loss: at the optimum
E_μ[g] = 1 (Eq. 9) and E_μ[Q g] = V (Eq. 10), so E_π[Q] = V.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from learner.losses import multiplier_losses
from networks.extraction import expected_q, log_weights

# (mean action, std, mixture weight, Q level): three clusters of low / medium / high Q.
CLUSTERS = ((-0.6, 0.12, 0.45, 0.0), (0.05, 0.10, 0.35, 1.0), (0.65, 0.08, 0.20, 2.0))
Q_NOISE = 0.15
Q_SLOPE = 1.5          # Q also varies within a cluster: slope (a - cluster mean)


@dataclass
class Bandit:
    actions: torch.Tensor      # [N]
    q: torch.Tensor            # [N]
    cluster: np.ndarray        # [N] cluster index, for colours
    v: float                   # τ-expectile of q


def sample_bandit(num_candidates: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = np.array([c[2] for c in CLUSTERS])
    k = rng.choice(len(CLUSTERS), size=num_candidates, p=probs / probs.sum())
    mean = np.array([CLUSTERS[i][0] for i in k])
    std = np.array([CLUSTERS[i][1] for i in k])
    a = np.clip(mean + std * rng.standard_normal(num_candidates), -1.0, 1.0)
    q = np.array([CLUSTERS[i][3] for i in k]) + Q_SLOPE * (a - mean) + Q_NOISE * rng.standard_normal(num_candidates)
    return torch.tensor(a, dtype=torch.float64), torch.tensor(q, dtype=torch.float64), k


def expectile(q: torch.Tensor, tau: float, iters: int = 200) -> float:
    """The τ-expectile of the empirical distribution of q: the root of Σ |τ − 1(q < v)| (q − v) = 0.

    The left side is continuous and strictly decreasing in v, so bisection between min q and
    max q converges to the exact minimiser of IQL's expectile loss (AlignIQL Eq. 1).
    """
    lo, hi = float(q.min()), float(q.max())
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        u = q - mid
        g = float((torch.where(u < 0, 1.0 - tau, tau) * u).sum())
        if g > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def solve_multipliers(q: torch.Tensor, v: float, steps: int = 400, lr: float = 0.05) -> tuple[float, float]:
    """Scalars α, β maximising AlignIQL-hard's dual (Eq. 11), by Adam on the learner's multiplier losses."""
    alpha = torch.zeros(1, dtype=q.dtype, requires_grad=True)
    beta = torch.zeros(1, dtype=q.dtype, requires_grad=True)
    opt = torch.optim.Adam([alpha, beta], lr=lr)
    vv = torch.full_like(q, v)
    for _ in range(steps):
        loss_a, loss_b = multiplier_losses(alpha.expand_as(q), beta.expand_as(q), q, vv)
        opt.zero_grad()
        (loss_a + loss_b).backward()
        opt.step()
    return float(alpha.detach()), float(beta.detach())


def weightings(bandit: Bandit, tau: float, alpha: float, beta: float) -> dict[str, torch.Tensor]:
    """label -> log-weights [1, N] from the platform's extraction code."""
    q, v = bandit.q[None], torch.tensor([bandit.v], dtype=bandit.q.dtype)
    a_s, b_s = torch.tensor([alpha], dtype=q.dtype), torch.tensor([beta], dtype=q.dtype)
    return {
        "AlignIQL η=+1\nexp(−A²)": log_weights("align", q, v, eta=1.0),
        "AlignIQL η=−1\nexp(A)": log_weights("align", q, v, eta=-1.0),
        "AlignIQL-hard\nexp(−α−βQ−1)": log_weights("align_hard", q, v, alpha_s=a_s, beta_s=b_s),
        f"IDQL expectile\n|τ−1(A<0)|": log_weights("expectile", q, v, tau=tau),
        f"IDQL quantile\n|τ−1(A<0)|/|A|": log_weights("quantile", q, v, tau=tau),
        "IDQL exponential\nα|e^{αA}−1|/|A|": log_weights("exponential", q, v, exp_alpha=1.0),
        "greedy\nargmax Q": log_weights("greedy", q, v),
    }


def compute(num_candidates: int = 512, tau: float = 0.7, seed: int = 0) -> dict:
    """Everything the figure shows, as numbers (tests check E_π[Q] ≈ V for AlignIQL-hard)."""
    a, q, k = sample_bandit(num_candidates, seed)
    bandit = Bandit(a, q, k, expectile(q, tau))
    alpha, beta = solve_multipliers(q, bandit.v)
    logws = weightings(bandit, tau, alpha, beta)
    rows = {}
    for label, lw in logws.items():
        rows[label] = {
            "weights": torch.softmax(lw, dim=-1)[0].numpy(),
            "implicit": float(expected_q(lw, bandit.q[None], "implicit")[0]),
            "argmax": float(expected_q(lw, bandit.q[None], "argmax")[0]),
        }
    return {"bandit": bandit, "alpha": alpha, "beta": beta, "tau": tau, "rows": rows,
            "mean_q": float(q.mean())}


def draw(result: dict, out: Path) -> Path:
    import logging

    import matplotlib
    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    b: Bandit = result["bandit"]
    rows = result["rows"]
    a, q = b.actions.numpy(), b.q.numpy()
    colours = np.array(["#d62728", "#ff7f0e", "#2ca02c"])[b.cluster]
    n_w = len(rows)
    fig = plt.figure(figsize=(15, 8.5))
    grid = fig.add_gridspec(3, n_w, height_ratios=[1.25, 1.0, 1.25], hspace=0.55, wspace=0.35)

    ax = fig.add_subplot(grid[0, : n_w // 2 + 1])
    ax.scatter(a, q, s=9, c=colours, alpha=0.7)
    ax.axhline(b.v, color="k", ls="--", lw=1.2, label=f"V = τ-expectile of Q under μ (τ={result['tau']})")
    ax.axhline(result["mean_q"], color="grey", ls=":", lw=1.2, label="E_μ[Q]")
    ax.set_xlabel("action a (N = %d candidates from μ)" % len(a))
    ax.set_ylabel("Q(a)")
    ax.set_title("bandit: μ has three clusters of actions with low / medium / high Q, plus noise")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlim(-1, 1)

    axh = fig.add_subplot(grid[0, n_w // 2 + 1:])
    axh.hist(a, bins=60, range=(-1, 1), color="0.6")
    axh.set_title("μ: histogram of the candidates")
    axh.set_xlabel("action a")
    axh.set_xlim(-1, 1)

    for j, (label, row) in enumerate(rows.items()):
        axw = fig.add_subplot(grid[1, j])
        w = row["weights"]
        order = np.argsort(a)
        axw.vlines(a[order], 0, w[order], colors=colours[order], lw=0.8)
        axw.set_title(label, fontsize=8.5)
        axw.set_xlim(-1, 1)
        axw.set_ylim(0, max(w.max() * 1.1, 1e-9))
        axw.tick_params(labelsize=7)
        if j == 0:
            axw.set_ylabel("normalised weight")
        axw.set_xlabel("a", fontsize=8)

    axb = fig.add_subplot(grid[2, :])
    labels = list(rows)
    x = np.arange(n_w)
    imp = [r["implicit"] for r in rows.values()]
    arg = [r["argmax"] for r in rows.values()]
    axb.bar(x, imp, width=0.55, color="#1f77b4", label="E_π[Q], implicit policy (draw by weight)")
    axb.scatter(x, arg, marker="D", color="k", zorder=3, label="Q of the argmax candidate")
    axb.axhline(b.v, color="k", ls="--", lw=1.2, label="V")
    for xi, yi in zip(x, imp):
        axb.text(xi, 0.5 * yi, f"gap\n{yi - b.v:+.3f}", ha="center", va="center", fontsize=9,
                 color="white", fontweight="bold")
    axb.set_xticks(x)
    axb.set_xticklabels(labels, fontsize=8)
    axb.set_ylabel("Q")
    axb.set_ylim(min(0.0, min(imp) - 0.2), max(arg) + 0.9)
    axb.set_title("E_π[Q] of each implicit policy against V (number: alignment gap E_π[Q] − V, "
                  "AlignIQL Def. 3.1)   —   AlignIQL-hard α=%.3f, β=%.3f from Eq. 11"
                  % (result["alpha"], result["beta"]), fontsize=10)
    axb.legend(loc="upper center", fontsize=8, ncol=3)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "figures" / "bandit.png"))
    p.add_argument("--num_candidates", type=int, default=512)
    p.add_argument("--tau", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    result = compute(args.num_candidates, args.tau, args.seed)
    path = draw(result, Path(args.out))
    print(f"V = {result['bandit'].v:.4f} (τ = {args.tau}); E_μ[Q] = {result['mean_q']:.4f}")
    for label, row in result["rows"].items():
        print(f"  {label.replace(chr(10), '  '):<45} E_π[Q] implicit {row['implicit']:.4f} "
              f"(gap {row['implicit'] - result['bandit'].v:+.4f})   argmax {row['argmax']:.4f}")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
