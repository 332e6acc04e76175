"""Diffusion behaviour model μ(a|s): DDPM with T=5 steps and IDQL's LN-ResNet.

IDQL section 3 / appendix G: the behaviour policy is learned by plain denoising
(IDQL Eq. 4) and sampled by reverse diffusion (IDQL Eq. 5). Sampling is
batched over states *and* candidates at once, [B*N] rows in one pass per
denoising step: the main speed lever for actors and evaluation.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from networks.linear import Linear


def vp_beta_schedule(num_steps: int) -> torch.Tensor:
    """Variance-preserving schedule (Song et al.), as IDQL uses it.

    α_t = exp(-β_min/T - ½(β_max-β_min)(2t-1)/T²), t = 1..T, with β_min = 0.1,
    β_max = 10; returns β_t = 1 - α_t. For T = 5: ≈ 0.196, 0.459, 0.636, 0.755, 0.835.
    """
    t = torch.arange(1, num_steps + 1, dtype=torch.float64)
    b_min, b_max = 0.1, 10.0
    alpha = torch.exp(-b_min / num_steps - 0.5 * (b_max - b_min) * (2 * t - 1) / num_steps**2)
    return (1.0 - alpha).float()


class FourierFeatures(nn.Module):
    """Learnable Fourier features of the (integer) diffusion step."""

    def __init__(self, dim: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(dim // 2, 1) * 0.2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * t.float().unsqueeze(-1) @ self.kernel.T
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


class ResidualBlock(nn.Module):
    """dropout -> LayerNorm -> Dense(inner) -> act -> Dense(width) -> +x (IDQL appendix G)."""

    def __init__(self, width: int, inner: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm = nn.LayerNorm(width)
        self.fc1 = Linear(width, inner)
        self.fc2 = Linear(inner, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc2(F.silu(self.fc1(self.norm(self.dropout(x)))))
        return x + h


class LNResNet(nn.Module):
    """Noise network ε_θ(a_t, s, t): concat(a_t, s, time embedding) -> Dense(width) -> blocks -> act -> Dense(act)."""

    def __init__(self, obs_dim: int, act_dim: int, width: int = 256, inner: int = 1024,
                 num_blocks: int = 3, dropout: float = 0.1, time_dim: int = 64):
        super().__init__()
        self.time_features = FourierFeatures(time_dim)
        self.time_mlp = nn.Sequential(Linear(time_dim, 2 * time_dim), nn.Mish(), Linear(2 * time_dim, time_dim))
        self.inp = Linear(act_dim + obs_dim + time_dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, inner, dropout) for _ in range(num_blocks))
        self.out = Linear(width, act_dim)

    def forward(self, noisy_action: torch.Tensor, obs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """t: one step per row [rows], or a single step [1] shared by every row (sampling)."""
        temb = self.time_mlp(self.time_features(t))
        if temb.shape[0] != noisy_action.shape[0]:
            temb = temb.expand(noisy_action.shape[0], -1)   # same embedding, computed once
        x = self.inp(torch.cat([noisy_action, obs, temb], dim=-1))
        for block in self.blocks:
            x = block(x)
        return self.out(F.silu(x))


class DiffusionBehavior(nn.Module):
    """μ(a|s) as a DDPM; holds the schedule as buffers so it moves with .to(device)."""

    def __init__(self, obs_dim: int, act_dim: int, num_steps: int = 5, **net_kwargs):
        super().__init__()
        self.act_dim = act_dim
        self.num_steps = num_steps
        self.noise_net = LNResNet(obs_dim, act_dim, **net_kwargs)
        betas = vp_beta_schedule(num_steps)
        alphas = 1.0 - betas
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", alphas)
        self.register_buffer("alpha_bars", torch.cumprod(alphas, dim=0))

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """IDQL Eq. 4: ‖ε − ε_θ(√ᾱ_t a + √(1−ᾱ_t) ε, s, t)‖², t ~ U{1..T}.

        Squared error summed over action dimensions, averaged over the batch.
        Index t here is 0-based (0..T-1) into the schedule. `t` and `noise` are drawn here unless
        given (bench.gpu_check gives both devices the same draws).
        """
        b = actions.shape[0]
        if t is None:
            t = torch.randint(0, self.num_steps, (b,), device=actions.device)
        if noise is None:
            noise = torch.randn_like(actions)
        ab = self.alpha_bars[t].unsqueeze(-1)
        noisy = ab.sqrt() * actions + (1 - ab).sqrt() * noise
        pred = self.noise_net(noisy, obs, t)
        return ((pred - noise) ** 2).sum(-1).mean()

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, num_candidates: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """N candidates per state, [B, N, act], by reverse diffusion (IDQL Eq. 5).

        a_{t-1} = (a_t − β_t/√(1−ᾱ_t) ε_θ(a_t, s, t)) / √α_t + √β_t z  (no noise at the last step),
        clipped to [−1, 1] after every step, starting from a_T ~ N(0, I).
        """
        b = obs.shape[0]
        rows = obs.repeat_interleave(num_candidates, dim=0)  # [B*N, obs], state-major
        x = torch.randn(rows.shape[0], self.act_dim, device=obs.device, dtype=obs.dtype, generator=generator)
        for t in reversed(range(self.num_steps)):
            tt = torch.full((1,), t, device=obs.device, dtype=torch.long)   # one t for all rows
            eps = self.noise_net(x, rows, tt)
            x = (x - self.betas[t] / (1 - self.alpha_bars[t]).sqrt() * eps) / self.alphas[t].sqrt()
            if t > 0:
                z = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
                x = x + self.betas[t].sqrt() * z
            x = x.clamp(-1.0, 1.0)
        return x.view(b, num_candidates, self.act_dim)
