"""Seeded evaluation episodes, all run side by side with one batched policy call per step.

Episodes get their own environments seeded seed, seed+1, ... (never the
training or exploration environments), and the policy's randomness comes from
a private generator, so evaluating never perturbs the training RNG stream and
the same checkpoint always gets the same score.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch


@dataclass
class EvalResult:
    returns: np.ndarray            # raw episode returns
    lengths: np.ndarray
    gap: float                     # mean over visited states of E_π[Q(s,a)] − V(s) (AlignIQL Def. 3.1)
    q: float
    v: float
    normalized: np.ndarray | None = field(default=None)

    def summary(self) -> dict[str, float]:
        out = {"return_mean": float(self.returns.mean()), "return_std": float(self.returns.std()),
               "length_mean": float(self.lengths.mean()), "alignment_gap": self.gap,
               "q_mean": self.q, "v_mean": self.v}
        if self.normalized is not None:
            out |= {"score_mean": float(self.normalized.mean()), "score_std": float(self.normalized.std())}
        return out


def evaluate(policy, env_fn: Callable[[int], "object"], num_episodes: int, seed: int, device: torch.device,
             max_episode_steps: int = 0, normalize: Callable[[np.ndarray], np.ndarray] | None = None) -> EvalResult:
    """Run `num_episodes` episodes of `policy` (anything with `.act(obs_tensor, generator)`)."""
    envs = [env_fn(seed + i) for i in range(num_episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    returns = np.zeros(num_episodes)
    lengths = np.zeros(num_episodes, dtype=np.int64)
    active = np.ones(num_episodes, dtype=bool)
    gap_sum = q_sum = v_sum = 0.0
    visited = 0
    try:
        while active.any():
            ids = np.flatnonzero(active)
            actions, stats = policy.act(torch.as_tensor(obs[ids], device=device), generator)
            actions = actions.float().cpu().numpy()
            gap_sum += float(stats["gap"].sum())
            q_sum += float(stats["q"].sum())
            v_sum += float(stats["v"].sum())
            visited += len(ids)
            for k, i in enumerate(ids):
                next_obs, reward, terminated, truncated, _ = envs[i].step(actions[k])
                returns[i] += reward
                lengths[i] += 1
                obs[i] = next_obs
                if terminated or truncated or (max_episode_steps and lengths[i] >= max_episode_steps):
                    active[i] = False
    finally:
        for env in envs:
            env.close()
    return EvalResult(returns=returns, lengths=lengths, gap=gap_sum / visited, q=q_sum / visited,
                      v=v_sum / visited, normalized=normalize(returns) if normalize else None)
