"""Is the critic near its fixed point? Q on the behaviour data against the data's own returns.

With γ = 0.99 and a target EMA of 0.005, bootstrapping needs O(10⁴–10⁵) updates to carry reward
through the horizon; a critic stopped earlier ranks actions on values it has not learnt yet. This
puts a number on it: the mean of Q(s, a) over a fixed sample of dataset transitions against the
mean discounted Monte-Carlo return-to-go G of the same transitions (data/returns.py), in the
learner's reward scale. For expectile τ = 0.5 a converged critic has Q ≈ G; for τ > 0.5 Q exceeds
G by what the best in-data actions add. A ratio well below 1 says "train longer".

Datasets whose every episode is cut by a time limit or at a goal well within the discount horizon
(PointMaze: success-cut episodes of ~100 steps, no terminal states) have no transition with a known
return-to-go; there the diagnostic is off (`measure` returns nothing) instead of failing the run.
"""
from __future__ import annotations

import numpy as np
import torch

from data.returns import dataset_returns_to_go


class DatasetCalibration:
    def __init__(self, dataset, reward_transform, discount: float, device, sample_size: int = 4096,
                 seed: int = 0):
        g, valid = dataset_returns_to_go(reward_transform(dataset.rewards), dataset.terminals,
                                         dataset.timeouts, discount)
        candidates = np.flatnonzero(valid)
        self.size = len(candidates)
        if self.size == 0:
            return
        rng = np.random.default_rng(seed)    # its own stream: measuring never moves the training RNG
        idx = np.sort(rng.choice(candidates, size=min(sample_size, len(candidates)), replace=False))
        self.obs = torch.as_tensor(np.asarray(dataset.observations[idx], dtype=np.float32), device=device)
        self.act = torch.as_tensor(np.asarray(dataset.actions[idx], dtype=np.float32), device=device)
        self.mc_return = float(g[idx].mean())
        self.size = len(idx)

    @torch.no_grad()
    def measure(self, learner) -> dict[str, float]:
        """calibration/{q_data, v_data, mc_return_data, q_over_return}; {} when nothing can be measured."""
        if not self.size:
            return {}
        q = float(learner.critic_target(self.obs, self.act).mean())
        v = float(learner.value(self.obs).mean())          # V has no dropout: its mode does not matter
        return {"calibration/q_data": q, "calibration/v_data": v, "calibration/mc_return_data": self.mc_return,
                "calibration/q_over_return": q / self.mc_return if self.mc_return else float("nan")}


def describe(m: dict[str, float]) -> str:
    """One console line a user can act on."""
    if "calibration/q_over_return" not in m:
        return ("critic calibration: not measurable on this dataset (no transition has a known discounted "
                "return-to-go: every episode is cut within the discount horizon)")
    ratio = m["calibration/q_over_return"]
    verdict = "still far from its fixed point: train longer" if ratio < 0.8 else \
        "near the data's returns" if ratio < 1.25 else "above the data's returns (optimistic)"
    return (f"critic calibration: Q on dataset transitions {m['calibration/q_data']:.1f} vs their discounted "
            f"return-to-go {m['calibration/mc_return_data']:.1f} ({100 * ratio:.0f} %), {verdict}")


@torch.no_grad()
def candidate_advantage(learner, obs: torch.Tensor, num_candidates: int,
                        generator: torch.Generator | None = None) -> dict[str, float]:
    """max_i Q(s, a_i) − V(s) and mean_i Q(s, a_i) − V(s) over N candidates a_i ~ μ(·|s).

    What an argmax over N candidates stands to gain by the critic's own account: large where the
    critic's ranking of μ's samples is confident, whether or not that is true. Logged separately
    for online and offline rows, it shows whether the critic has grown optimistic about the states
    the policy now visits.
    """
    if not hasattr(learner, "behavior_ema"):
        return {}
    b = obs.shape[0]
    cand = learner.behavior_ema.sample(obs, num_candidates, generator)               # [B, N, act]
    rows = obs.repeat_interleave(num_candidates, dim=0)
    q = learner.critic_target(rows, cand.reshape(b * num_candidates, -1)).view(b, num_candidates)
    v = learner.value(obs)
    adv = q - v.unsqueeze(-1)
    return {"max_adv": float(adv.max(-1).values.mean()), "mean_adv": float(adv.mean())}
