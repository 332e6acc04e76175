"""Seeded evaluation episodes, all run side by side with one batched policy call per step.

Episodes get their own environments seeded seed, seed+1, ... (never the
training or exploration environments), and the policy's randomness comes from
a private generator, so evaluating never perturbs the training RNG stream and
the same checkpoint always gets the same score.

Goal-reaching tasks (environments that report ``info["success"]``) also get
their success rate: the fraction of episodes with a successful step
(``data/goals.py``); for AntMaze the normalised score is that rate in %, as
D4RL defines it (``score_by_success``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from data.goals import step_success
from data.returns import returns_to_go


@dataclass
class EvalResult:
    returns: np.ndarray            # raw episode returns
    lengths: np.ndarray
    gap: float                     # mean over visited states of E_π[Q(s,a)] − V(s) (AlignIQL Def. 3.1)
    q: float
    v: float
    normalized: np.ndarray | None = field(default=None)
    # Calibration of the critic on the policy's own choices (when a reward transform and discount are
    # given): mean over steps with a known return-to-go of Q(s, a_taken), of the discounted return the
    # episode then earned from there (in the learner's reward scale), and the steps counted.
    q_chosen: float | None = None
    mc_return: float | None = None
    calibration_steps: int = 0
    successes: np.ndarray | None = None   # per episode: some step reported success (None: env reports none)
    # per episode: it ended in a terminal state, not at the time limit (Hopper, Walker2d, Ant: a fall).
    # A 20-episode mean hides a rare fall in its spread; the rate names it (docs/finetuning.md §7).
    terminations: np.ndarray | None = None

    def summary(self) -> dict[str, float]:
        out = {"return_mean": float(self.returns.mean()), "return_std": float(self.returns.std()),
               "length_mean": float(self.lengths.mean()), "alignment_gap": self.gap,
               "q_mean": self.q, "v_mean": self.v}
        if self.normalized is not None:
            out |= {"score_mean": float(self.normalized.mean()), "score_std": float(self.normalized.std())}
        if self.successes is not None:
            out["success_rate"] = float(self.successes.mean())
        if self.terminations is not None:
            out["termination_rate"] = float(self.terminations.mean())
        if self.calibration_steps:
            # > 0: the critic promises more than the chosen actions deliver (over-estimation it acts on)
            out |= {"q_chosen_mean": self.q_chosen, "mc_return_mean": self.mc_return,
                    "q_minus_return": self.q_chosen - self.mc_return}
        return out


def evaluate(policy, env_fn: Callable[[int], "object"], num_episodes: int, seed: int, device: torch.device,
             max_episode_steps: int = 0, normalize: Callable[[np.ndarray], np.ndarray] | None = None,
             reward_transform: Callable[[np.ndarray], np.ndarray] | None = None,
             discount: float | None = None, score_by_success: bool = False) -> EvalResult:
    """Run `num_episodes` episodes of `policy` (anything with `.act(obs_tensor, generator)`).

    The policy's actions are in the learner's [-1, 1]; `env_fn` builds envs that take them (actor.envs.make_env
    with the run's action bounds maps them into the environment's units).

    `score_by_success` (AntMaze): the normalised score is 100 x success per episode instead of
    `normalize(returns)`; it needs an environment that reports `info["success"]`.

    With `reward_transform` (the learner's reward scaling) and `discount`, also compare the critic's
    Q of every action taken with the discounted return that followed it (`EvalResult.q_chosen`,
    `mc_return`): the critic's error on exactly the actions the policy selects.
    """
    envs = [env_fn(seed + i) for i in range(num_episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    returns = np.zeros(num_episodes)
    lengths = np.zeros(num_episodes, dtype=np.int64)
    active = np.ones(num_episodes, dtype=bool)
    gap_sum = q_sum = v_sum = 0.0
    visited = 0
    calibrate = reward_transform is not None and discount is not None
    chosen_q: list[list[float]] = [[] for _ in range(num_episodes)]
    rewards: list[list[float]] = [[] for _ in range(num_episodes)]
    ended_by_termination = np.zeros(num_episodes, dtype=bool)
    succeeded = np.zeros(num_episodes, dtype=bool)
    reports_success = False
    try:
        while active.any():
            ids = np.flatnonzero(active)
            actions, stats = policy.act(torch.as_tensor(obs[ids], device=device), generator)
            actions = actions.float().cpu().numpy()
            gap_sum += float(stats["gap"].sum())
            q_sum += float(stats["q"].sum())
            v_sum += float(stats["v"].sum())
            visited += len(ids)
            q_taken = stats["q_chosen"].float().cpu().numpy() if calibrate else None
            for k, i in enumerate(ids):
                next_obs, reward, terminated, truncated, info = envs[i].step(actions[k])
                success = step_success(info)
                if success is not None:
                    reports_success = True
                    succeeded[i] |= success
                returns[i] += reward
                lengths[i] += 1
                obs[i] = next_obs
                if calibrate:
                    chosen_q[i].append(float(q_taken[k]))
                    rewards[i].append(float(reward))
                if terminated or truncated or (max_episode_steps and lengths[i] >= max_episode_steps):
                    active[i] = False
                    ended_by_termination[i] = bool(terminated)
    finally:
        for env in envs:
            env.close()
    successes = succeeded.astype(np.float64) if reports_success else None
    if score_by_success:
        if successes is None:
            raise ValueError("score_by_success needs an environment that reports info['success'].")
        normalized = 100.0 * successes
    else:
        normalized = normalize(returns) if normalize else None
    result = EvalResult(returns=returns, lengths=lengths, gap=gap_sum / visited, q=q_sum / visited,
                        v=v_sum / visited, normalized=normalized, successes=successes,
                        terminations=ended_by_termination.astype(np.float64))
    if calibrate:
        qs, gs = [], []
        for i in range(num_episodes):
            scaled = reward_transform(np.asarray(rewards[i], dtype=np.float64))
            g, valid = returns_to_go(scaled, bool(ended_by_termination[i]), float(discount))
            qs.append(np.asarray(chosen_q[i])[valid])
            gs.append(g[valid])
        qs, gs = np.concatenate(qs), np.concatenate(gs)
        if len(qs):
            result.q_chosen, result.mc_return = float(qs.mean()), float(gs.mean())
            result.calibration_steps = int(len(qs))
    return result
