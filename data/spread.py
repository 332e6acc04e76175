"""How spread out a made dataset's actions are, per state, and how often they sit at the bounds.

D4RL's "medium" actions are samples of SAC's tanh-Gaussian actor, whose
spread depends on the state and the action dimension; the earlier local
recipe used the actor's mean plus isotropic N(0, 0.1^2) noise. To compare the
two on equal terms this draws, at ``states`` dataset states, ``samples``
actions exactly as ``data.make.rollout_episodes`` draws them for the dataset's
recorded recipe (policy sample or mean, plus the recipe's extra noise, then
clipped to the environment's bounds) and takes their standard deviation per state and
dimension. Results: per-dimension mean over states, and the mean over
dimensions ("overall").

Usage: ``python -m launch.dataset_stats --dataset_ids=local/hopper/medium-v0,local/hopper/medium-v1``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from errors import DatasetError

CLIP_LEVEL = 0.99  # |a| above this counts as "at the clip boundary"


def _draw(policy, obs: np.ndarray, stochastic: bool, noise_std: float, rng: np.random.Generator,
          bounds=None) -> np.ndarray:
    """Actions as the maker draws them (data.make.rollout_episodes: clipped to the env's bounds), for a
    batch of states, in the learner's [-1, 1] as the loader maps them (``bounds``: data/bounds.py; ±1 if None)."""
    action = policy.act(obs, rng) if stochastic else policy.act(obs)
    action = np.asarray(action, dtype=np.float64)
    if noise_std > 0:
        action = action + noise_std * rng.standard_normal(action.shape)
    if bounds is None or bounds.is_identity:
        return np.clip(action, -1.0, 1.0)
    return bounds.normalize(np.clip(action, bounds.low, bounds.high)).astype(np.float64)


def per_state_action_std(policy, obs: np.ndarray, stochastic: bool, noise_std: float,
                         rng: np.random.Generator, samples: int = 256, chunk: int = 250,
                         bounds=None) -> np.ndarray:
    """[N, act_dim]: std over ``samples`` draws of the recipe's action at each state (in [-1, 1] units,
    as the dataset's actions; ``bounds`` the dataset's action bounds)."""
    out = []
    for start in range(0, len(obs), chunk):
        o = obs[start:start + chunk]
        draws = _draw(policy, np.repeat(o, samples, axis=0), stochastic, noise_std, rng, bounds)
        out.append(draws.reshape(len(o), samples, -1).std(axis=1, ddof=1))
    return np.concatenate(out).astype(np.float32)


def measure_dataset(dataset_id: str, states: int = 2000, samples: int = 256, seed: int = 0,
                    policy_loader: Callable[[str, str], Any] | None = None) -> dict[str, Any]:
    """Size, returns, normalised score, clip fraction and (for 'medium') per-state action spread."""
    from data import load_dataset
    from data.make import STOCHASTIC, load_recipe_policies, read_recipe

    ds = load_dataset(dataset_id)
    recipe = read_recipe(dataset_id)
    if recipe is None:
        raise DatasetError(f"Dataset '{dataset_id}' records no data/make.py recipe, so the policy that "
                           "made it is unknown; only datasets made by launch.make_dataset can be measured.")
    returns = ds.episode_returns.astype(np.float64)
    at_clip = np.abs(ds.actions) > CLIP_LEVEL      # the learner's [-1, 1]: at the env's bounds whatever they are
    result: dict[str, Any] = {
        "dataset_id": dataset_id,
        "env_id": recipe.env_id,
        "kind": recipe.kind,
        "actions": recipe.actions,
        "noise_std": recipe.noise_std,
        "episodes": int(len(returns)),
        "transitions": int(ds.size),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "normalized_score": float(ds.normalized_score(returns.mean())),
        "clip_fraction": float(at_clip.mean()),
        "clip_fraction_per_dim": at_clip.mean(axis=0).tolist(),
    }
    if recipe.kind != "medium":
        return result  # medium-replay mixes four policies; its states carry no policy label
    policy = load_recipe_policies(recipe.env_id, recipe.kind, recipe.actions, policy_loader)["medium"]
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    idx = np.sort(rng.choice(ds.size, size=min(states, ds.size), replace=False))
    stochastic = recipe.actions == STOCHASTIC
    std = per_state_action_std(policy, ds.observations[idx], stochastic, float(recipe.noise_std), rng, samples,
                               bounds=ds.action_bounds)
    per_dim = std.mean(axis=0)
    result.update({
        "spread_states": int(len(idx)),
        "spread_samples": int(samples),
        "action_std_per_dim": per_dim.tolist(),
        "action_std": float(per_dim.mean()),
        "action_std_state_p10_p90": [float(np.percentile(std.mean(1), 10)),
                                     float(np.percentile(std.mean(1), 90))],
    })
    if stochastic and hasattr(policy, "mean_log_std"):
        import torch

        with torch.no_grad():
            _, log_std = policy.mean_log_std(torch.from_numpy(ds.observations[idx]))
        result["pre_tanh_sigma_per_dim"] = log_std.exp().mean(0).numpy().tolist()
    return result


def format_row(r: dict[str, Any]) -> str:
    """One markdown table row (see launch.dataset_stats for the header)."""
    f = lambda xs: " / ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    spread = (f"{f(r['action_std_per_dim'])} | **{r['action_std']:.3f}**"
              if "action_std" in r else "n/a | n/a")
    return (f"| `{r['dataset_id']}` | {r['actions']} | {r['episodes']} | {r['transitions']} | "
            f"{r['return_mean']:.1f} ± {r['return_std']:.1f} | {r['normalized_score']:.1f} | {spread} | "
            f"{100 * r['clip_fraction']:.1f}% |")


TABLE_HEADER = (
    "| dataset | actions | episodes | transitions | return mean ± std | normalised | "
    "per-state action std, per dim | overall | abs(a) > 0.99 |\n"
    "|---|---|---|---|---|---|---|---|---|"
)
