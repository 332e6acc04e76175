"""Behaviour policies for making D4RL-style datasets locally.

D4RL's "medium" datasets were collected with a policy trained online (SAC)
until it reached about a third of expert return; "medium-replay" is the
replay buffer of that training run. We cannot download those policies, so
`data/behavior/train_sac.py` retrains them and stores the deterministic part
of the actor here as small torch state_dicts:

    data/behavior/weights/<env_id>_<level>.pt
        level "medium"            the medium policy
        level "replay0".."replay3" snapshots at increasing quality
                                   (about 10%, 30%, 60%, 100% of the medium
                                   target), used for medium-replay

`weights/README.md` records the command, seed, measured return and wall time
of every file.

Example:

    policy = load_behavior_policy("Hopper-v5", "medium")
    actions = policy.act(obs)   # obs: float [B, obs_dim] -> float32 [B, act_dim]
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from errors import DatasetError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
LEVELS = ("medium", "replay0", "replay1", "replay2", "replay3")
_FILE_RE = re.compile(r"^(?P<env>.+)_(?P<level>medium|replay[0-3])\.pt$")


class BehaviorPolicy(nn.Module):
    """Deterministic actor: obs -> ReLU MLP -> tanh(mean) in [-1, 1].

    This is exactly the mean path of the SAC actor in `train_sac.py` (the
    trainer's actor subclasses this and adds a log-std head, which is not
    saved). Sizes are read back from the state_dict by `from_state_dict`.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (128, 128)):
        super().__init__()
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.hidden = tuple(int(h) for h in hidden)
        layers: list[nn.Module] = []
        d = self.obs_dim
        for h in self.hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.trunk = nn.Sequential(*layers)
        self.mean = nn.Linear(d, self.act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mean(self.trunk(obs)))

    def behavior_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the tensors `BehaviorPolicy` needs (drops subclass extras)."""
        return {k: v.detach().clone().cpu() for k, v in self.state_dict().items()
                if k.startswith(("trunk.", "mean."))}

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> "BehaviorPolicy":
        """Rebuild the MLP from the shapes stored in `state_dict`."""
        idx = sorted(int(k.split(".")[1]) for k in state_dict
                     if k.startswith("trunk.") and k.endswith(".weight"))
        if not idx or "mean.weight" not in state_dict:
            raise DatasetError(
                "Behaviour policy weights have unexpected keys "
                f"{sorted(state_dict)}; expected trunk.N.weight/bias and "
                "mean.weight/bias as written by data/behavior/train_sac.py.")
        hidden = tuple(state_dict[f"trunk.{i}.weight"].shape[0] for i in idx)
        obs_dim = state_dict[f"trunk.{idx[0]}.weight"].shape[1]
        act_dim = state_dict["mean.weight"].shape[0]
        policy = cls(obs_dim, act_dim, hidden)
        policy.load_state_dict(state_dict, strict=True)
        policy.eval()
        return policy

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions. obs [B, obs_dim] -> float32 [B, act_dim].

        A single observation [obs_dim] gives a single action [act_dim].
        """
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise DatasetError(
                f"Behaviour policy expects observations of shape [B, {self.obs_dim}], "
                f"got {obs.shape}; was it trained for a different environment?")
        action = self(torch.from_numpy(batch)).numpy().astype(np.float32, copy=False)
        return action[0] if single else action


def policy_path(env_id: str, level: str) -> Path:
    """Where the weights for (env_id, level) live (the file may not exist)."""
    return WEIGHTS_DIR / f"{env_id}_{level}.pt"


def available_policies() -> dict[str, list[str]]:
    """{env_id: [levels with a weight file]}, levels in LEVELS order."""
    found: dict[str, list[str]] = {}
    if WEIGHTS_DIR.is_dir():
        for path in WEIGHTS_DIR.glob("*.pt"):
            m = _FILE_RE.match(path.name)
            if m:
                found.setdefault(m["env"], []).append(m["level"])
    return {env: sorted(levels, key=LEVELS.index) for env, levels in sorted(found.items())}


def load_behavior_policy(env_id: str, level: str) -> BehaviorPolicy:
    """Load a stored behaviour policy; raises DatasetError if there is none."""
    available = available_policies()
    if env_id not in available or level not in available[env_id]:
        listing = "; ".join(f"{env}: {', '.join(lv)}" for env, lv in available.items()) or "none"
        raise DatasetError(
            f"No behaviour policy for env '{env_id}' at level '{level}'. "
            f"Available (env: levels): {listing}. Levels are {', '.join(LEVELS)}; "
            "new ones can be trained with `python -m data.behavior.train_sac`.")
    state_dict = torch.load(policy_path(env_id, level), map_location="cpu", weights_only=True)
    return BehaviorPolicy.from_state_dict(state_dict)
