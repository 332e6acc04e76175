"""Feed-forward networks of the critic, value, multipliers and IQL's Gaussian actor.

The twin critic is one module with stacked weights (an "ensemble linear"), so
both heads run as one batched matmul per layer instead of two separate MLPs:
half the kernel launches on a GPU, same maths as two independent networks.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from networks.linear import Linear, ensemble_linear


class EnsembleLinear(nn.Module):
    """`num_members` independent linear layers evaluated with one batched matmul."""

    def __init__(self, num_members: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_features))
        # Same initialisation as nn.Linear, member by member.
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [members, batch, in] -> [members, batch, out]
        return ensemble_linear(x, self.weight, self.bias)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation=nn.ReLU,
        layer_norm: bool = False) -> nn.Sequential:
    """Linear → [LayerNorm] → activation per hidden layer, then a linear output.

    `layer_norm` places a LayerNorm after each hidden Dense, before its activation. (The IDQL and
    AlignIQL references' MLP flag `use_layer_norm` does something else: one LayerNorm on the input;
    `ValueNet` offers both.)
    """
    layers: list[nn.Module] = []
    last = in_dim
    for h in hidden:
        layers.append(Linear(last, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(activation())
        last = h
    layers.append(Linear(last, out_dim))
    return nn.Sequential(*layers)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension with a scale and shift of its own per ensemble member."""

    def __init__(self, num_members: int, features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_members, 1, features))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias, x, self.weight)


class TwinQ(nn.Module):
    """Two independent Q heads on concat(s, a) (IQL / IDQL critic, MLP 256-256 ReLU)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), num_heads: int = 2,
                 layer_norm: bool = False):
        super().__init__()
        self.num_heads = num_heads
        dims = [obs_dim + act_dim, *hidden]
        self.hidden_layers = nn.ModuleList(
            EnsembleLinear(num_heads, i, o) for i, o in zip(dims[:-1], dims[1:])
        )
        # Optional LayerNorm after each hidden layer (config.critic_layer_norm; the references run without).
        self.norms = nn.ModuleList(EnsembleLayerNorm(num_heads, o) for o in dims[1:]) if layer_norm else None
        self.head = EnsembleLinear(num_heads, dims[-1], 1)

    def all_heads(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Q of every head: [heads, batch]."""
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(self.num_heads, -1, -1)
        for k, layer in enumerate(self.hidden_layers):
            x = layer(x)
            if self.norms is not None:
                x = self.norms[k](x)
            x = torch.relu(x)
        return self.head(x).squeeze(-1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """min over heads: the pessimistic estimate every consumer uses."""
        return self.all_heads(obs, act).min(dim=0).values


# Where V's LayerNorm goes (config.value_layer_norm):
#   "input"  once, on the observation, before the first hidden layer. This is what both references run:
#            their launchers build V with `use_layer_norm=True`, and their MLP (jaxrl5/networks/mlp.py in
#            the IDQL and the AlignIQL code) applies that flag as one LayerNorm on the network's input.
#   "hidden" after each hidden layer, before its activation (this project's default before 2026-12-06,
#            which said wrongly that it followed the references; docs/results.md's runs used it).
#   "none"   no LayerNorm.
VALUE_LAYER_NORMS = ("input", "hidden", "none")


def value_layer_norm_placement(setting) -> str:
    """The placement a config's `value_layer_norm` names.

    Configs and checkpoints written before the placement was a choice hold a bool: True meant LayerNorm
    in the hidden layers, False none. On the command line a bool field becomes the text "True"/"False".
    """
    if isinstance(setting, bool):
        return "hidden" if setting else "none"
    text = str(setting).strip().lower()
    legacy = {"true": "hidden", "false": "none", "1": "hidden", "0": "none"}
    return legacy.get(text, text)


class ValueNet(nn.Module):
    """V(s), an MLP with LayerNorm placed as `layer_norm` says (see VALUE_LAYER_NORMS)."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256), layer_norm: str = "input"):
        super().__init__()
        if layer_norm not in VALUE_LAYER_NORMS:
            raise ValueError(f"unknown LayerNorm placement {layer_norm!r}; expected one of {VALUE_LAYER_NORMS}")
        self.norm = nn.LayerNorm(obs_dim) if layer_norm == "input" else None
        self.net = mlp(obs_dim, hidden, 1, layer_norm=layer_norm == "hidden")

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            obs = self.norm(obs)
        return self.net(obs).squeeze(-1)


# Where a multiplier network's LayerNorm goes (config.multipliers.layer_norm):
#   "input"         once, on the observation: the AlignIQL reference's α and β are its MLP with
#                   `use_layer_norm=True`, which normalises the input only (jaxrl5/networks/mlp.py).
#   "input+hidden"  on the input and after each hidden layer: this project's networks until 2026-12-06
#                   (their docstring said wrongly that the reference had hidden LayerNorms); configs
#                   written before the setting existed built this.
MULTIPLIER_LAYER_NORMS = ("input", "input+hidden")


class MultiplierNet(nn.Module):
    """A Lagrange multiplier α(s) or β(s) of AlignIQL-hard (Lemma 4.3).

    The input LayerNorm keeps the scale of the exponent exp(-α-βQ-1) under control when observation
    scales differ by orders of magnitude; see MULTIPLIER_LAYER_NORMS for the hidden ones.
    """

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256), layer_norm: str = "input"):
        super().__init__()
        if layer_norm not in MULTIPLIER_LAYER_NORMS:
            raise ValueError(f"unknown LayerNorm placement {layer_norm!r}; expected one of {MULTIPLIER_LAYER_NORMS}")
        self.norm = nn.LayerNorm(obs_dim)
        self.net = mlp(obs_dim, hidden, 1, layer_norm=layer_norm == "input+hidden")

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(obs)).squeeze(-1)


class GaussianActor(nn.Module):
    """IQL's explicit actor: tanh-squashed mean, state-independent log-std.

    Trained by advantage-weighted regression (AlignIQL Eq. 3); it exists so the
    platform can run the plain IQL baseline the papers compare against.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256),
                 log_std_min: float = -5.0, log_std_max: float = 2.0):
        super().__init__()
        self.mean_net = mlp(obs_dim, hidden, act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        """Built without argument checks: torch validates loc, scale and every sample by default, a host
        sync each on a GPU (three per AWR step). Mean and std are finite by construction (tanh, clamped
        log-std) unless training diverged, which the learner's NaN/inf check reports."""
        mean = torch.tanh(self.mean_net(obs))
        std = self.log_std.clamp(self.log_std_min, self.log_std_max).exp()
        return torch.distributions.Normal(mean, std, validate_args=False)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.distribution(obs).log_prob(act).sum(-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action (the mean), as IQL evaluates."""
        return torch.tanh(self.mean_net(obs))
