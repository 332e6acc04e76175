"""Goal-conditioned observations and success: one definition for data, actors and evaluator.

Why a module of its own: AntMaze and PointMaze (gymnasium-robotics) return dict
observations ``{"achieved_goal", "desired_goal", "observation"}``, Minari stores
them as one HDF5 group per key, and the networks need one flat vector. If the
loader and the environment wrapper flattened in different orders, a policy
trained offline would read the goal as its own position online, silently.
So both go through ``flatten_one`` / ``flatten_batch`` here.

The order is the space's own key order, which for ``gymnasium.spaces.Dict``
built from a plain dict is **sorted by key** (what ``gymnasium.spaces.flatten``
and Minari's stored space both give). For the maze tasks that is::

    [ achieved_goal (x, y) | desired_goal (x, y) | observation ]
      0:2                    2:4                   4:   (PointMaze: x, y, vx, vy;
                                                         AntMaze -v4: 27 body dims)

``flat_layout(space)`` returns these slices (tests check them against real
environments and datasets).

Success: gymnasium-robotics reports ``info["success"]`` each step (maze tasks:
within 0.45 of the goal; Adroit: the task's goal test). An evaluation episode
*succeeds* if any of its steps reported success, which for D4RL AntMaze, whose
evaluation episodes end at the first success (``eval=True``), is exactly its
success: there the return is 0 or 1 and the normalised score is
100 × success (D4RL ``ref_min_score = 0``, ``ref_max_score = 1``). Minari's
AntMaze evaluation specs keep the episode going after success
(``continuing_task=True``), so return-based normalisation would not give the
published numbers; ``scores_by_success`` says where the score is the success rate.
"""
from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np

GOAL_DOMAINS = ("antmaze", "pointmaze")
SUCCESS_KEYS = ("success", "is_success")


def is_goal_reaching(domain: str) -> bool:
    return domain in GOAL_DOMAINS


def scores_by_success(domain: str) -> bool:
    """AntMaze's published score is the success rate in % (D4RL returns 0/1 per episode)."""
    return domain == "antmaze"


def flatten_batch(space: gym.Space, x) -> np.ndarray:
    """Flatten a batch [T, ...] exactly as ``gymnasium.spaces.flatten`` would per item.

    Calling ``spaces.flatten`` once per step is far too slow for million-step
    datasets, so the common spaces are vectorised here; Dict keys go in the
    space's own order (sorted, see the module docstring). Tested for equality
    with ``gymnasium.spaces.flatten``.
    """
    from errors import DatasetError

    S = gym.spaces
    if isinstance(space, S.Box):
        a = np.asarray(x)
        return a.reshape(a.shape[0], -1).astype(np.float32)
    if isinstance(space, S.Dict):
        parts = [flatten_batch(sub, x[key]) for key, sub in space.spaces.items()]
        return np.concatenate(parts, axis=1)
    if isinstance(space, S.Tuple):
        parts = [flatten_batch(sub, x[i]) for i, sub in enumerate(space.spaces)]
        return np.concatenate(parts, axis=1)
    if isinstance(space, S.Discrete):
        a = np.asarray(x).reshape(-1).astype(np.int64) - int(space.start)
        out = np.zeros((a.shape[0], int(space.n)), dtype=np.float32)
        out[np.arange(a.shape[0]), a] = 1.0
        return out
    if isinstance(space, S.MultiBinary):
        a = np.asarray(x)
        return a.reshape(a.shape[0], -1).astype(np.float32)
    raise DatasetError(
        f"Observation/action space {space} is not supported (only Box, Dict, Tuple, Discrete "
        "and MultiBinary can be flattened into the flat float vectors the learner uses)."
    )


def _add_batch_axis(space: gym.Space, x):
    S = gym.spaces
    if isinstance(space, S.Dict):
        return {k: _add_batch_axis(sub, x[k]) for k, sub in space.spaces.items()}
    if isinstance(space, S.Tuple):
        return tuple(_add_batch_axis(sub, x[i]) for i, sub in enumerate(space.spaces))
    return np.asarray(x)[None]


def flatten_one(space: gym.Space, x) -> np.ndarray:
    """One observation, flattened by the same code as the dataset (``flatten_batch``)."""
    return flatten_batch(space, _add_batch_axis(space, x))[0]


def flat_layout(space: gym.Space) -> list[tuple[str, int, int]]:
    """``[(key, start, stop), ...]`` of a Dict space's parts in the flat vector (nested keys joined by '/')."""
    out: list[tuple[str, int, int]] = []

    def walk(sp: gym.Space, prefix: str, start: int) -> int:
        if isinstance(sp, gym.spaces.Dict):
            for key, sub in sp.spaces.items():
                start = walk(sub, f"{prefix}{key}/", start)
            return start
        size = int(gym.spaces.flatdim(sp))
        out.append((prefix.rstrip("/"), start, start + size))
        return start + size

    walk(space, "", 0)
    return out


def step_success(info: Mapping[str, Any]) -> bool | None:
    """The step's success flag, or None when the environment reports none."""
    for key in SUCCESS_KEYS:
        if key in info:
            return bool(np.asarray(info[key]).any())
    return None


__all__ = ["GOAL_DOMAINS", "flat_layout", "flatten_batch", "flatten_one", "is_goal_reaching",
           "scores_by_success", "step_success"]
