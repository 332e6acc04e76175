"""Acting policies built from trained networks: what actors and the evaluator run.

They hold modules but no optimiser, so the learner can hand a policy to an
evaluator (or publish its weights to actors) without exposing training state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from networks import extraction
from networks.diffusion import DiffusionBehavior
from networks.mlp import GaussianActor, MultiplierNet, TwinQ, ValueNet


@dataclass(frozen=True)
class ExtractionSpec:
    """How to turn N candidates into one action.

    `settings` holds the values of the config fields the weighting's registry entry names
    (`extraction.settings_of`), so a new weighting with its own parameter needs no field here.
    """
    weighting: str = "align"       # a name in extraction.WEIGHTINGS
    mode: str = "argmax"           # "implicit" or "argmax"
    num_candidates: int = 16       # N
    settings: tuple[tuple[str, float], ...] = (("eta", 1.0),)


class AutocastSampler:
    """μ whose `sample` runs under torch.autocast (bfloat16 on CPU), candidates handed back in float32.

    An actor-side speed option (`online.actor_mu_dtype`): on CPUs with bf16 matrix units it makes
    the reverse diffusion ×1.2–1.6 faster at N ≥ 64 while argmax picks the same candidate in 99–100 %
    of visited states (bench.actor_throughput's bf16 check, docs/performance.md). The critic that
    weighs the candidates stays float32: in bf16 it flips near-ties (82–93 % same choice).
    """

    def __init__(self, behavior: DiffusionBehavior, dtype: torch.dtype = torch.bfloat16):
        self.behavior, self.dtype = behavior, dtype
        self.device_type = next(behavior.parameters()).device.type

    def sample(self, obs, num_candidates, generator=None):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.behavior.sample(obs, num_candidates, generator).float()


class CandidatePolicy:
    """Sample N actions per state from μ, weight them with (Q, V), pick one."""

    def __init__(self, behavior: DiffusionBehavior, critic: TwinQ, value: ValueNet, spec: ExtractionSpec,
                 alpha_net: MultiplierNet | None = None, beta_net: MultiplierNet | None = None):
        self.behavior, self.critic, self.value = behavior, critic, value
        self.alpha_net, self.beta_net = alpha_net, beta_net
        self.spec = spec

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None):
        """Actions [B, act] and per-state stats {"q": E_π[Q], "v": V, "gap": E_π[Q] − V,
        "q_chosen": Q of the action taken}."""
        s = self.spec
        b = obs.shape[0]
        cand = self.behavior.sample(obs, s.num_candidates, generator)          # [B, N, act]
        rows = obs.repeat_interleave(s.num_candidates, dim=0)
        q = self.critic(rows, cand.reshape(b * s.num_candidates, -1)).view(b, s.num_candidates)
        v = self.value(obs)
        alpha_s = self.alpha_net(obs) if self.alpha_net is not None else None
        beta_s = self.beta_net(obs) if self.beta_net is not None else None
        logw = extraction.log_weights(s.weighting, q, v, alpha_s=alpha_s, beta_s=beta_s, **dict(s.settings))
        idx = extraction.select(logw, q, s.mode, generator)
        actions = cand[torch.arange(b, device=obs.device), idx]
        eq = extraction.expected_q(logw, q, s.mode)
        q_chosen = q.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        return actions, {"q": eq, "v": v, "gap": eq - v, "q_chosen": q_chosen}


class GaussianPolicy:
    """IQL baseline: the Gaussian actor's mean."""

    def __init__(self, actor: GaussianActor, critic: TwinQ, value: ValueNet):
        self.actor, self.critic, self.value = actor, critic, value

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None):
        actions = self.actor(obs)
        q, v = self.critic(obs, actions), self.value(obs)
        return actions, {"q": q, "v": v, "gap": q - v, "q_chosen": q}
