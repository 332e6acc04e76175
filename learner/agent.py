"""The learner of the AlignIQL / IDQL family, and the IQL + AWR baseline.

Readable top to bottom: networks, then one update per role, each next to the
equation it implements. Per step, on the same batch (docs/algorithm.md, as in the
reference code): behaviour model (or Gaussian actor), then V, then Q and its
EMA target, then the AlignIQL-hard multipliers.

The learner never builds an environment; it hands out acting policies
(`acting_policy`) that actors and the evaluator run.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from learner.fast_path import portable_optimizer_state
from learner.losses import multiplier_losses, value_loss, value_loss_settings
from networks.factory import (acting_params, algorithm_of, natural_weighting, make_actor, make_behavior,
                              make_critic, make_multipliers, make_policy, make_value)


def cosine_decay(total_steps: int):
    """Multiplier for LambdaLR: cosine from 1 to 0 over `total_steps` (IDQL appendix E)."""
    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    return factor


def fused_kwargs(device: torch.device) -> dict:
    """Fused Adam / AdamW: one kernel over all of an optimiser's tensors instead of ~10 ops per tensor.

    Same update rule (parameters agree to float rounding, docs/performance.md); measured x1.07-1.16
    per whole learner step on CPU.
    """
    return {"fused": True} if device.type in ("cpu", "cuda") else {}


def ema_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """target ← (1 − rate)·target + rate·source, parameters only (IDQL Algorithm 1)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), rate)


class Learner:
    def __init__(self, cfg, obs_dim: int, act_dim: int, device: torch.device):
        self.cfg, self.device = cfg, device
        self.algorithm = cfg.algorithm
        # its registry entry (networks/factory.py): which networks it trains and how it acts
        self.entry = algorithm_of(cfg)
        # the config fields V's loss reads (learner/losses.py VALUE_LOSSES), looked up once
        self.value_settings = value_loss_settings(cfg.value_loss, cfg)
        # --- critic Q (two heads, min) with EMA target, and value V ---
        self.critic = make_critic(cfg, obs_dim, act_dim).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = make_value(cfg, obs_dim).to(device)
        fused = fused_kwargs(device)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, **fused)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.value_lr, **fused)
        self.modules: dict[str, nn.Module] = {"critic": self.critic, "critic_target": self.critic_target,
                                              "value": self.value}
        self.optimizers = {"critic": self.critic_opt, "value": self.value_opt}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}

        if self.entry.policy == "gaussian":
            # --- explicit Gaussian actor trained by AWR (IQL baseline) ---
            self.actor = make_actor(cfg, obs_dim, act_dim).to(device)
            self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.iql.actor_lr, **fused)
            self.modules["actor"] = self.actor
            self.optimizers["actor"] = self.actor_opt
            self.schedulers["actor"] = torch.optim.lr_scheduler.LambdaLR(
                self.actor_opt, cosine_decay(cfg.num_actor_steps))
        else:
            # --- diffusion behaviour model μ and its EMA copy (the one that samples) ---
            d = cfg.diffusion
            self.behavior = make_behavior(cfg, obs_dim, act_dim).to(device)
            self.behavior_ema = copy.deepcopy(self.behavior).requires_grad_(False).eval()
            self.behavior_opt = torch.optim.AdamW(self.behavior.parameters(), lr=d.lr, weight_decay=d.weight_decay,
                                                  **fused)
            self.modules.update(behavior=self.behavior, behavior_ema=self.behavior_ema)
            self.optimizers["behavior"] = self.behavior_opt
            self.schedulers["behavior"] = torch.optim.lr_scheduler.LambdaLR(
                self.behavior_opt, cosine_decay(cfg.num_actor_steps) if d.cosine_decay else (lambda _: 1.0))
        if self.entry.multipliers:
            # --- Lagrange multiplier networks α(s), β(s) (AlignIQL Lemma 4.3) ---
            m = cfg.multipliers
            self.alpha_net, self.beta_net = (net.to(device) for net in make_multipliers(cfg, obs_dim))
            # One optimiser per multiplier, each with its own gradient clipping (as the reference).
            self.alpha_opt = torch.optim.Adam(self.alpha_net.parameters(), lr=m.lr, **fused)
            self.beta_opt = torch.optim.Adam(self.beta_net.parameters(), lr=m.lr, **fused)
            self.modules.update(alpha=self.alpha_net, beta=self.beta_net)
            self.optimizers.update(alpha=self.alpha_opt, beta=self.beta_opt)

        self.critic_steps = 0
        self.actor_steps = 0

    # ------------------------------------------------------------------ objectives
    # Pure functions of the batch and the networks (no optimiser step, no counter), so that
    # `compile_objectives` can hand each to torch.compile and a CUDA graph can capture them.
    def value_objective(self, obs, act):
        """Generalised IQL value loss `config.value_loss` on the *target* critic's min-Q of dataset actions
        (AlignIQL Eq. 1 / IDQL Eq. 6)."""
        with torch.no_grad():
            q_target = self.critic_target(obs, act)
        v = self.value(obs)
        return value_loss(self.cfg.value_loss, q_target - v, self.value_settings), v, q_target

    def critic_objective(self, obs, act, reward, next_obs, mask):
        """MSE to r + γ·mask·V(s') with the freshly updated V, no target V (AlignIQL Eq. 2); heads summed."""
        with torch.no_grad():
            td_target = reward + self.cfg.discount * mask * self.value(next_obs)
        qs = self.critic.all_heads(obs, act)                      # [heads, B]
        return (qs - td_target).square().mean(dim=1).sum(), qs

    def behavior_objective(self, obs, act, t=None, noise=None):
        """One denoising loss on μ (IDQL Eq. 4); timesteps and noise drawn inside unless given."""
        return self.behavior.loss(obs, act, t, noise)

    def awr_objective(self, obs, act):
        """IQL's advantage-weighted regression (AlignIQL Eq. 3), weights exp(β·A) capped."""
        with torch.no_grad():
            adv = self.critic_target(obs, act) - self.value(obs)
            weight = torch.exp(self.cfg.iql.temperature * adv).clamp(max=self.cfg.iql.max_weight)
        return -(weight * self.actor.log_prob(obs, act)).mean(), weight

    def multiplier_objective(self, obs, act):
        """AlignIQL-hard dual losses (Eq. 11); E_{a~μ} estimated with the dataset's actions."""
        with torch.no_grad():
            q = self.critic_target(obs, act)
            v = self.value(obs)
        alpha_s, beta_s = self.alpha_net(obs), self.beta_net(obs)
        loss_alpha, loss_beta = multiplier_losses(alpha_s, beta_s, q, v)
        return loss_alpha, loss_beta, alpha_s, beta_s

    def compile_objectives(self, **compile_kwargs) -> None:
        """Replace each objective by its torch.compile'd version (fewer, fused kernels; same math).

        The optimiser steps stay eager: fused Adam is already one kernel per optimiser.
        """
        for name in ("value_objective", "critic_objective", "behavior_objective", "awr_objective",
                     "multiplier_objective"):
            setattr(self, name, torch.compile(getattr(self, name), **compile_kwargs))

    # ------------------------------------------------------------------ device steps
    # What a step does on the device: objective, backward, optimiser, EMA. The host-side
    # bookkeeping (learning-rate schedules, step counters) is in `advance`, outside what a CUDA
    # graph captures: a captured `scheduler.step()` would replay one fixed learning rate forever.
    def value_and_critic_step(self, obs, act, reward, next_obs, mask) -> dict[str, torch.Tensor]:
        v_loss, v, q_target = self.value_objective(obs, act)
        self.value_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        self.value_opt.step()

        q_loss, qs = self.critic_objective(obs, act, reward, next_obs, mask)
        self.critic_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.critic_opt.step()
        ema_update(self.critic_target, self.critic, self.cfg.target_ema)
        return {"loss/value": v_loss.detach(), "loss/critic": q_loss.detach(),
                "stats/v_mean": v.detach().mean(), "stats/q_mean": qs.detach().min(0).values.mean(),
                "stats/adv_mean": (q_target - v.detach()).mean()}

    def behavior_step(self, obs, act, t=None, noise=None) -> dict[str, torch.Tensor]:
        """μ's denoising step, then its EMA copy (rate 0.001)."""
        loss = self.behavior_objective(obs, act, t, noise)
        self.behavior_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.behavior_opt.step()
        ema_update(self.behavior_ema, self.behavior, self.cfg.diffusion.ema)
        return {"loss/behavior": loss.detach()}

    def awr_step(self, obs, act) -> dict[str, torch.Tensor]:
        loss, weight = self.awr_objective(obs, act)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        return {"loss/actor": loss.detach(), "stats/awr_weight": weight.mean()}

    def multiplier_step(self, obs, act) -> dict[str, torch.Tensor]:
        loss_alpha, loss_beta, alpha_s, beta_s = self.multiplier_objective(obs, act)
        self.alpha_opt.zero_grad(set_to_none=True)
        self.beta_opt.zero_grad(set_to_none=True)
        (loss_alpha + loss_beta).backward()      # each loss reaches only its own network (Eq. 11 split)
        # Clipped per network, not jointly: β's gradient scales with Q (hundreds) and would
        # otherwise shrink α's step to almost nothing under one shared norm.
        nn.utils.clip_grad_norm_(self.alpha_net.parameters(), self.cfg.multipliers.grad_clip)
        nn.utils.clip_grad_norm_(self.beta_net.parameters(), self.cfg.multipliers.grad_clip)
        self.alpha_opt.step()
        self.beta_opt.step()
        return {"loss/multiplier_alpha": loss_alpha.detach(), "loss/multiplier_beta": loss_beta.detach(),
                "stats/alpha_mean": alpha_s.detach().mean(), "stats/beta_mean": beta_s.detach().mean()}

    def device_update(self, batch: dict[str, torch.Tensor], train_actor: bool = True,
                      train_critic: bool = True) -> dict[str, torch.Tensor]:
        """One learner iteration's device work: actor rows are the whole batch, critic rows its first part.

        Per step, on the same batch (docs/algorithm.md): μ (or the Gaussian actor), then V, then Q and its
        target, then the AlignIQL-hard multipliers.
        """
        cb, ab = self.cfg.critic_batch_size, self.cfg.actor_batch_size
        obs, act = batch["obs"], batch["act"]
        metrics: dict[str, torch.Tensor] = {}
        if train_actor:
            step = self.awr_step if self.entry.policy == "gaussian" else self.behavior_step
            metrics |= step(obs[:ab], act[:ab])
        if train_critic:
            metrics |= self.value_and_critic_step(obs[:cb], act[:cb], batch["reward"][:cb],
                                                  batch["next_obs"][:cb], batch["mask"][:cb])
            if self.entry.multipliers:
                metrics |= self.multiplier_step(obs[:cb], act[:cb])
        return metrics

    def advance(self, actor_steps: int = 0, critic_steps: int = 0) -> None:
        """The host side of `actor_steps` actor and `critic_steps` critic steps: schedules and counters."""
        for _ in range(actor_steps):
            self.schedulers["actor" if self.entry.policy == "gaussian" else "behavior"].step()
        self.actor_steps += actor_steps
        self.critic_steps += critic_steps

    # ------------------------------------------------------------------ eager update (device step + bookkeeping)
    def update(self, batch: dict[str, torch.Tensor], train_actor: bool = True,
               train_critic: bool = True) -> dict[str, torch.Tensor]:
        """One eager learner step: `device_update`, then `advance`."""
        metrics = self.device_update(batch, train_actor, train_critic)
        self.advance(actor_steps=int(train_actor), critic_steps=int(train_critic))
        return metrics

    # ------------------------------------------------------------------ acting
    def acting_policy(self, weighting: str | None = None, mode: str = "argmax", num_candidates: int = 16):
        """The policy an evaluator runs (EMA μ, target critic, V, multipliers), same code as actors';
        `weighting` None: the config's (`networks.factory.natural_weighting`)."""
        return make_policy(self.cfg, self.modules, natural_weighting(self.cfg, weighting or ""), mode,
                           num_candidates)

    def acting_params(self) -> dict:
        """Flat numpy weights of the acting networks, as published to actors."""
        return acting_params(self.modules, self.algorithm)

    def train(self, mode: bool = True) -> None:
        for name, module in self.modules.items():
            # EMA copies never train: no dropout when they sample.
            module.train(mode and name not in ("behavior_ema", "critic_target"))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"modules": {k: m.state_dict() for k, m in self.modules.items()},
                # float learning rates, capturable off: a checkpoint of the CUDA-graph path loads anywhere
                "optimizers": {k: portable_optimizer_state(o.state_dict()) for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "critic_steps": self.critic_steps, "actor_steps": self.actor_steps}

    # μ's part of the state alone: what the behaviour-model process (learner/behavior_worker.py) hands
    # the main process at each sync point, and what it starts from. The same keys as `state_dict`'s.
    def behavior_state_dict(self) -> dict:
        return {"modules": {k: self.modules[k].state_dict() for k in ("behavior", "behavior_ema")},
                "optimizer": portable_optimizer_state(self.behavior_opt.state_dict()),
                "scheduler": self.schedulers["behavior"].state_dict(), "actor_steps": self.actor_steps}

    def load_behavior_state_dict(self, state: dict) -> None:
        for k in ("behavior", "behavior_ema"):
            self.modules[k].load_state_dict(state["modules"][k])
        self.behavior_opt.load_state_dict(state["optimizer"])
        self.schedulers["behavior"].load_state_dict(state["scheduler"])
        self.actor_steps = state["actor_steps"]

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.critic_steps, self.actor_steps = state["critic_steps"], state["actor_steps"]
