"""Action bounds: the learner and μ work in [−1, 1], each environment in its own box.

Why: the diffusion sampler clips every denoising step to [−1, 1] (networks/diffusion.py) and the
IQL actor squashes with tanh, so a policy can only ever produce actions in that box. Environments
with other bounds (Pendulum-v1: ±2, InvertedPendulum-v5: ±3) had their data clipped to ±1 and
their policies confined to half or a third of the range. So offline data are mapped into [−1, 1]
on loading, and actions back into the environment's units where they meet the environment
(`actor.envs.make_env`, `launch.api.Policy`), per dimension:

    a_norm = 2 (a − low) / (high − low) − 1,        a = low + (a_norm + 1) (high − low) / 2.

Bounds of exactly ±1 (every D4RL task) skip the map instead of computing it: 2(a + 1)/2 − 1 is not
`a` in floating point, and runs on those tasks must stay bit-identical to runs made before the map.

The bounds come from the dataset's stored action space (Minari), else from the environment, or
from the override `config.action_bounds = "low,high"` (the only way for an environment whose
action space is unbounded); they are stored in the run's metadata (`dataset_meta`, in every
pretraining checkpoint and in `dataset_meta.json`), so acting processes and `launch.api.load_policy`
map back without loading the dataset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from errors import ConfigError, DatasetError

# The diffusion sampler clips to [-1, 1]; keeping data strictly inside avoids
# atanh-style blow-ups and matches the references (docs/algorithm.md "Data"). A numerical guard
# only: stored actions outside the bounds are reported (`OutsideReport`) before it applies.
ACTION_CLIP = 1.0 - 1e-5

OVERRIDE_FIELD = "config.action_bounds"


@dataclass(frozen=True)
class ActionBounds:
    """Per-dimension [low, high] of the environment's actions, in its own units."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", tuple(float(x) for x in np.asarray(self.low, dtype=np.float64).reshape(-1)))
        object.__setattr__(self, "high", tuple(float(x) for x in np.asarray(self.high, dtype=np.float64).reshape(-1)))
        if len(self.low) != len(self.high):
            raise ValueError(f"action bounds of different sizes: low {self.low}, high {self.high}")

    @classmethod
    def unit(cls, act_dim: int) -> "ActionBounds":
        """±1 in every dimension: the map is the identity (and skipped)."""
        return cls((-1.0,) * int(act_dim), (1.0,) * int(act_dim))

    @property
    def act_dim(self) -> int:
        return len(self.low)

    @property
    def is_identity(self) -> bool:
        return all(x == -1.0 for x in self.low) and all(x == 1.0 for x in self.high)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.low, dtype=np.float64), np.asarray(self.high, dtype=np.float64)

    def normalize(self, actions) -> np.ndarray:
        """Environment units -> [−1, 1] (float32); returned unchanged (same values) for ±1 bounds."""
        a = np.asarray(actions, dtype=np.float32)
        if self.is_identity:
            return a
        low, high = self._arrays()
        return (2.0 * (a.astype(np.float64) - low) / (high - low) - 1.0).astype(np.float32)

    def denormalize(self, actions) -> np.ndarray:
        """[−1, 1] -> environment units (float32); returned unchanged (same values) for ±1 bounds."""
        a = np.asarray(actions, dtype=np.float32)
        if self.is_identity:
            return a
        low, high = self._arrays()
        return (low + (a.astype(np.float64) + 1.0) * (high - low) / 2.0).astype(np.float32)

    def outside(self, actions) -> "OutsideReport":
        """How many stored actions (rows) have a component outside [low, high]."""
        a = np.asarray(actions, dtype=np.float64).reshape(len(actions), -1)
        low, high = self._arrays()
        excess = np.maximum(low - a, a - high)                     # > 0 where outside
        rows = (excess > 0).any(axis=1)
        return OutsideReport(count=int(rows.sum()), total=int(a.shape[0]),
                             largest_excess=float(excess.max()) if excess.size and rows.any() else 0.0)

    def to_meta(self) -> dict[str, list[float]]:
        return {"action_low": list(self.low), "action_high": list(self.high)}

    def describe(self) -> str:
        lo, hi = set(self.low), set(self.high)
        if len(lo) == 1 and len(hi) == 1:
            return f"[{self.low[0]:g}, {self.high[0]:g}] in each of {self.act_dim} dimensions"
        return f"low {list(self.low)}, high {list(self.high)}"


@dataclass(frozen=True)
class OutsideReport:
    """Stored actions outside the environment's bounds: reported on loading, never silently clipped."""

    count: int
    total: int
    largest_excess: float

    @property
    def fraction(self) -> float:
        return self.count / self.total if self.total else 0.0

    def message(self, label: str, bounds: ActionBounds) -> str:
        return (f"[{label}] {self.count} of {self.total} stored actions ({100 * self.fraction:.2f} %) lie outside "
                f"the environment's action bounds {bounds.describe()} (by up to {self.largest_excess:.4g}); "
                f"the environment would clip them, and the learner sees them at the edge of [-1, 1]. If the "
                f"bounds are wrong, give the right ones with {OVERRIDE_FIELD}='low,high'.")


def parse_number_pair(text: Any, field: str, unreadable: str, out_of_order: str) -> tuple[float, float] | None:
    """A "low,high" setting (`config.action_bounds`, `config.reference_scores`): None where it is empty,
    else two finite numbers with low < high. `unreadable` / `out_of_order` end the message naming `field`."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    parts = [p.strip() for p in str(text).strip().strip("()[]").split(",")] if isinstance(text, str) else list(text)
    try:
        low, high = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"Invalid setting {field}={text!r}: {unreadable}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ConfigError(f"Invalid setting {field}={text!r}: {out_of_order}")
    return low, high


def parse_override(text: Any) -> tuple[float, float] | None:
    """`config.action_bounds`: "" (take the environment's) or "low,high", finite with low < high."""
    return parse_number_pair(
        text, OVERRIDE_FIELD,
        "give the action bounds as 'low,high' (two numbers, e.g. '-2,2', applied to every action dimension), "
        "or leave it empty to take the environment's.",
        "the bounds must be finite numbers with low < high (e.g. '-2,2'); the policy's [-1, 1] is mapped onto them.")


def resolve_action_bounds(space: Any, override: Any, act_dim: int, label: str) -> ActionBounds | None:
    """The bounds a run maps its actions with: the override, else the action space's own.

    `space` is a gymnasium action space or a function returning one (called only when no override
    is given, so an environment is built only where its bounds are needed). None where the space
    has another number of dimensions than the data: the data then belong to another environment,
    which `data.validate.check_env_dimensions` reports with both sizes.
    """
    pair = parse_override(override)
    if pair is not None:
        return ActionBounds((pair[0],) * int(act_dim), (pair[1],) * int(act_dim))
    if callable(space):
        space = space()
    import gymnasium as gym

    if not isinstance(space, gym.spaces.Box):
        raise DatasetError(f"[{label}] the action space {space} is not a continuous box; this platform learns "
                           f"continuous actions only (a gymnasium Box).")
    low = np.asarray(space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(space.high, dtype=np.float64).reshape(-1)
    if low.shape[0] != int(act_dim):
        return None      # data of another environment: data.validate names the sizes (check_env_dimensions)
    if not (np.isfinite(low).all() and np.isfinite(high).all()) or not (low < high).all():
        raise ConfigError(
            f"[{label}] the environment's action space has bounds low {low.tolist()}, high {high.tolist()}, which "
            f"are not finite (or not low < high), so there is no scale to map the policy's [-1, 1] onto. Give one "
            f"with {OVERRIDE_FIELD}='low,high' (e.g. --config.action_bounds=-2,2, the range your data's actions "
            f"and the environment's useful actions lie in).")
    return ActionBounds(tuple(low), tuple(high))


def bounds_from_meta(meta: Mapping[str, Any], where: str, say: Callable[[str], None] | None = print) -> ActionBounds:
    """The bounds recorded in a run's metadata; ±1 (with a note) for runs that predate them.

    Runs made before the bounds were recorded clipped every action to ±1 and acted in ±1 whatever
    the environment's box, so ±1 is exactly what they were trained and evaluated with.
    """
    act_dim = int(meta["act_dim"])
    if meta.get("action_low") is None or meta.get("action_high") is None:
        if say is not None:
            say(f"{where} records no action bounds (made before they were recorded); its run clipped actions to "
                f"[-1, 1], so it acts in [-1, 1] as it was trained.")
        return ActionBounds.unit(act_dim)
    bounds = ActionBounds(meta["action_low"], meta["action_high"])
    if bounds.act_dim != act_dim:
        raise ConfigError(f"{where} records action bounds of {bounds.act_dim} dimensions for actions of {act_dim}; "
                          f"the metadata is damaged.")
    return bounds


__all__ = ["ACTION_CLIP", "ActionBounds", "OutsideReport", "bounds_from_meta", "parse_override",
           "resolve_action_bounds"]
