"""The offline dataset as tensors on the learner's device, sampled uniformly.

Kept whole on the GPU when there is one (a D4RL dataset is ~1-2M transitions,
tens of MB), so a batch is one gather with no host-device copy.
"""
from __future__ import annotations

import numpy as np
import torch


class OfflineBuffer:
    def __init__(self, observations, actions, rewards, next_observations, terminals, device):
        def t(x):
            return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
        self.obs, self.act, self.reward = t(observations), t(actions), t(rewards)
        self.next_obs = t(next_observations)
        # mask = 0 only on a true termination; a time-limit truncation bootstraps (docs/algorithm.md, "Data").
        self.mask = 1.0 - t(terminals)
        self.size = self.obs.shape[0]
        self.device = device

    @classmethod
    def from_dataset(cls, dataset, reward_transform, device) -> "OfflineBuffer":
        return cls(dataset.observations, dataset.actions, reward_transform(dataset.rewards),
                   dataset.next_observations, dataset.terminals, device)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Uniform with replacement, from torch's global RNG (saved in checkpoints)."""
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return {"obs": self.obs[idx], "act": self.act[idx], "reward": self.reward[idx],
                "next_obs": self.next_obs[idx], "mask": self.mask[idx]}
