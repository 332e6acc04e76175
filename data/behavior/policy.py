"""Behaviour policies for making D4RL-style datasets locally.

D4RL's "medium" datasets were collected with a policy trained online (SAC)
until it reached about a third of expert return; "medium-replay" is the
replay buffer of that training run. We cannot download those policies, so
`data/behavior/train_sac.py` retrains them and stores each actor here twice,
as small torch state_dicts:

    data/behavior/weights/<env_id>_<level>.pt
        the deterministic part (tanh of the Gaussian mean): BehaviorPolicy
    data/behavior/weights/<env_id>_<level>_stochastic.pt
        the whole SAC actor (trunk, mean and log-std heads):
        StochasticBehaviorPolicy, which samples a = tanh(mu + sigma * eps)
        as SAC does while training (what D4RL's "medium" data were)

    level "medium"             the medium policy
    level "replay0".."replay3" snapshots at increasing quality (about 10%,
                               30%, 60%, 100% of the medium target), used for
                               medium-replay

`weights/README.md` records the command, seed, measured return and wall time
of every file. `weights/v0/` keeps, frozen, the earlier run's mean-path files
from which the local -v0 datasets are made (that run's log-std heads were
never saved).

Example:

    policy = load_behavior_policy("Hopper-v5", "medium")
    actions = policy.act(obs)   # obs: float [B, obs_dim] -> float32 [B, act_dim]

    stochastic = load_stochastic_policy("Hopper-v5", "medium")
    rng = np.random.default_rng(np.random.SeedSequence(0))
    actions = stochastic.act(obs, rng)   # one tanh-Gaussian sample per row
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from errors import DatasetError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# The mean-path files the local -v0 datasets (mean-plus-noise recipe) were made
# from, frozen so those ids keep building the same data after a retraining.
V0_WEIGHTS_DIR = WEIGHTS_DIR / "v0"
LEVELS = ("medium", "replay0", "replay1", "replay2", "replay3")
_FILE_RE = re.compile(r"^(?P<env>.+)_(?P<level>medium|replay[0-3])\.pt$")


class BehaviorPolicy(nn.Module):
    """Deterministic actor: obs -> ReLU MLP -> tanh(mean) in [-1, 1].

    This is exactly the mean path of the SAC actor in `train_sac.py` (the
    trainer's actor is a `StochasticBehaviorPolicy`, this plus a log-std
    head; `behavior_state_dict` drops the head). Sizes are read back from the
    state_dict by `from_state_dict`.
    """

    HEADS: tuple[str, ...] = ()  # heads beyond trunk and mean that a subclass stores

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
        """Rebuild the MLP from the shapes stored in `state_dict` (strict keys)."""
        idx = sorted(int(k.split(".")[1]) for k in state_dict
                     if k.startswith("trunk.") and k.endswith(".weight"))
        if not idx or "mean.weight" not in state_dict or any(
                f"{head}.weight" not in state_dict for head in cls.HEADS):
            raise DatasetError(
                "Behaviour policy weights have unexpected keys "
                f"{sorted(state_dict)}; expected trunk.N.weight/bias and "
                + " and ".join(f"{head}.weight/bias" for head in ("mean",) + cls.HEADS)
                + " as written by data/behavior/train_sac.py.")
        hidden = tuple(state_dict[f"trunk.{i}.weight"].shape[0] for i in idx)
        obs_dim = state_dict[f"trunk.{idx[0]}.weight"].shape[1]
        act_dim = state_dict["mean.weight"].shape[0]
        policy = cls(obs_dim, act_dim, hidden)
        try:
            policy.load_state_dict(state_dict, strict=True)
        except RuntimeError as e:
            raise DatasetError(
                f"Behaviour policy weights do not fit {cls.__name__} "
                f"({str(e).splitlines()[0]}); a file written for another policy class?") from None
        policy.eval()
        return policy

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions. obs [B, obs_dim] -> float32 [B, act_dim].

        A single observation [obs_dim] gives a single action [act_dim].
        """
        batch, single = self._obs_batch(obs)
        action = self(torch.from_numpy(batch)).numpy().astype(np.float32, copy=False)
        return action[0] if single else action

    def _obs_batch(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise DatasetError(
                f"Behaviour policy expects observations of shape [B, {self.obs_dim}], "
                f"got {obs.shape}; was it trained for a different environment?")
        return batch, single


class StochasticBehaviorPolicy(BehaviorPolicy):
    """The whole SAC actor: a Gaussian over pre-tanh actions, squashed by tanh.

    Haarnoja et al. 2018 (arXiv:1812.05905), Appendix C: u ~ N(mu(s), sigma(s)^2),
    a = tanh(u), sigma = exp(clamp(log_std(s), LOG_STD_MIN, LOG_STD_MAX)).
    `train_sac.Actor` subclasses this and samples through `squash`, so the
    actions drawn here are distributed exactly as SAC's own training actions.
    """

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
    HEADS = ("log_std",)

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (128, 128)):
        super().__init__(obs_dim, act_dim, hidden)
        self.log_std = nn.Linear(self.hidden[-1], act_dim)

    def mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clamped log-std of the pre-tanh Gaussian."""
        h = self.trunk(obs)
        return self.mean(h), self.log_std(h).clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)

    @staticmethod
    def squash(mu: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample: u = mu + sigma * eps, a = tanh(u). Returns (a, u)."""
        u = mu + log_std.exp() * eps
        return torch.tanh(u), u

    @torch.no_grad()
    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """One sampled action per row. obs [B, obs_dim] -> float32 [B, act_dim].

        eps ~ N(0, I) is drawn from ``rng`` (a numpy Generator, e.g.
        ``np.random.default_rng(seed_sequence)``), so the samples are
        reproducible from a seed and independent of torch's global RNG.
        ``rng=None`` gives the deterministic mean path, tanh(mu), the same
        actions as the matching `BehaviorPolicy` file (what evaluation uses).
        A single observation [obs_dim] gives a single action [act_dim].
        """
        if rng is None:
            return super().act(obs)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        batch, single = self._obs_batch(obs)
        mu, log_std = self.mean_log_std(torch.from_numpy(batch))
        eps = torch.from_numpy(rng.standard_normal(mu.shape, dtype=np.float32))
        action = self.squash(mu, log_std, eps)[0].numpy().astype(np.float32, copy=False)
        return action[0] if single else action

    @torch.no_grad()
    def action_std(self, obs: np.ndarray, rng: np.random.Generator, samples: int = 256) -> np.ndarray:
        """Monte-Carlo std of the sampled action (after tanh) at each state: [B, act_dim]."""
        batch, _ = self._obs_batch(obs)
        mu, log_std = self.mean_log_std(torch.from_numpy(batch))
        eps = torch.from_numpy(rng.standard_normal((samples, *mu.shape), dtype=np.float32))
        a = self.squash(mu[None], log_std[None], eps)[0]
        return a.std(0).numpy().astype(np.float32)


def policy_path(env_id: str, level: str, weights_dir: Path | None = None) -> Path:
    """Where the mean-path weights for (env_id, level) live (the file may not exist)."""
    return Path(weights_dir or WEIGHTS_DIR) / f"{env_id}_{level}.pt"


def stochastic_policy_path(env_id: str, level: str, weights_dir: Path | None = None) -> Path:
    """Where the whole SAC actor for (env_id, level) lives (the file may not exist)."""
    return Path(weights_dir or WEIGHTS_DIR) / f"{env_id}_{level}_stochastic.pt"


def available_policies(weights_dir: Path | None = None) -> dict[str, list[str]]:
    """{env_id: [levels with a mean-path weight file]}, levels in LEVELS order."""
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    found: dict[str, list[str]] = {}
    if weights_dir.is_dir():
        for path in weights_dir.glob("*.pt"):
            m = _FILE_RE.match(path.name)
            if m:
                found.setdefault(m["env"], []).append(m["level"])
    return {env: sorted(levels, key=LEVELS.index) for env, levels in sorted(found.items())}


def _missing_policy_error(env_id: str, level: str, weights_dir: Path | None = None) -> DatasetError:
    available = available_policies(weights_dir)
    listing = "; ".join(f"{env}: {', '.join(lv)}" for env, lv in available.items()) or "none"
    return DatasetError(
        f"No behaviour policy for env '{env_id}' at level '{level}' in {weights_dir or WEIGHTS_DIR}. "
        f"Available (env: levels): {listing}. Levels are {', '.join(LEVELS)}; "
        "new ones can be trained with `python -m data.behavior.train_sac`.")


def load_behavior_policy(env_id: str, level: str, weights_dir: Path | None = None) -> BehaviorPolicy:
    """Load a stored deterministic behaviour policy; raises DatasetError if there is none.

    ``weights_dir`` defaults to WEIGHTS_DIR (the current run); V0_WEIGHTS_DIR
    holds the files the -v0 datasets were made from.
    """
    available = available_policies(weights_dir)
    if env_id not in available or level not in available[env_id]:
        raise _missing_policy_error(env_id, level, weights_dir)
    state_dict = torch.load(policy_path(env_id, level, weights_dir), map_location="cpu", weights_only=True)
    return BehaviorPolicy.from_state_dict(state_dict)


def load_stochastic_policy(env_id: str, level: str) -> StochasticBehaviorPolicy:
    """Load the whole SAC actor of (env_id, level); raises DatasetError if there is none."""
    path = stochastic_policy_path(env_id, level)
    if level not in LEVELS or not path.is_file():
        if level in LEVELS and policy_path(env_id, level).is_file():
            raise DatasetError(
                f"Behaviour policy '{env_id}' level '{level}' has only its deterministic file "
                f"{policy_path(env_id, level).name}, not the stochastic actor {path.name}; retrain it "
                "with `python -m data.behavior.train_sac` (which writes both) or use the "
                "mean-plus-noise recipe.")
        raise _missing_policy_error(env_id, level)
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    return StochasticBehaviorPolicy.from_state_dict(state_dict)
