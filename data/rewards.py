"""Reward preprocessing shared by the offline data and the online actors.

The critic is trained on transformed rewards; once fine-tuning starts, online
transitions must be transformed identically or the offline and online halves
of each batch would disagree about the value scale. So the transform is a
tiny affine object that is computed once from the offline dataset, saved
with the run (``to_dict``) and handed to actors (``from_dict``).

Recipes (IDQL appendix D.1, AlignIQL appendix D.1; docs/algorithm.md "Data"):
locomotion r <- 1000 r / (R_max - R_min) over the dataset's episode returns;
AntMaze r <- r - 1 (offline and online); Adroit unchanged.

PointMaze (D4RL maze2d) has no recipe in either paper (IQL and IDQL evaluate
AntMaze, not maze2d). It is the same kind of task, sparse goal reaching with
no terminal states, so it takes AntMaze's r - 1: the locomotion scale would
divide by the spread of episode returns, which for success-cut episodes is
about 1 (0 or 1 per episode) and would multiply rewards by 1000.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    from data.dataset import OfflineDataset


@dataclass(frozen=True)
class RewardTransform:
    """r -> scale * r + shift."""

    scale: float = 1.0
    shift: float = 0.0

    def __call__(self, r):
        if np.isscalar(r):
            return float(self.scale * r + self.shift)
        r = np.asarray(r, dtype=np.float32)
        return (np.float32(self.scale) * r + np.float32(self.shift)).astype(np.float32)

    def to_dict(self) -> dict[str, float]:
        return {"scale": float(self.scale), "shift": float(self.shift)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RewardTransform":
        return cls(scale=float(d["scale"]), shift=float(d["shift"]))


def reward_transform_for(dataset: "OfflineDataset") -> RewardTransform:
    """The paper's preprocessing for the dataset's domain.

    Locomotion divides by the spread of complete-episode returns, so a
    dataset whose episodes all return the same (or that has fewer than two
    complete episodes) has no defined scale: that is reported rather than
    silently dividing by zero.
    """
    if dataset.domain in ("antmaze", "pointmaze"):
        return RewardTransform(1.0, -1.0)
    if dataset.domain == "adroit":
        return RewardTransform(1.0, 0.0)
    returns = np.asarray(dataset.episode_returns, dtype=np.float64)
    spread = float(returns.max() - returns.min()) if returns.size >= 2 else 0.0
    if not spread > 0.0:
        raise DatasetError(
            f"Dataset '{dataset.name or dataset.env_id}' has {returns.size} complete episode(s) "
            f"with return spread {spread:g}; the locomotion reward scale 1000/(R_max - R_min) needs "
            "at least two complete episodes with different returns. Use a larger dataset."
        )
    return RewardTransform(1000.0 / spread, 0.0)
