"""The in-memory offline dataset every other role consumes.

One flat table of transitions is what the learner samples from, whatever the
source (Minari, legacy D4RL HDF5, a locally made dataset), so all loaders end
here and all source-specific quirks stay in the loaders. The class also
carries what is needed to rebuild the matching environment and to report
D4RL-style normalised scores, because evaluation must use exactly the
environment and references the data came with.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from data.bounds import ACTION_CLIP, ActionBounds, OutsideReport  # noqa: F401  (ACTION_CLIP re-exported)
from data.goals import flatten_batch, flatten_one  # noqa: F401  (one flattening for data and envs)
from errors import DatasetError

DOMAINS = ("locomotion", "antmaze", "pointmaze", "adroit")
_ADROIT_TASKS = ("pen", "door", "hammer", "relocate")


def infer_domain(env_id: str | None, name: str | None = None) -> str:
    """Domain decides reward preprocessing and defaults (e.g. expectile tau).

    Dataset ids (``D4RL/antmaze/umaze-v1``, ``D4RL/pointmaze/umaze-v2``,
    ``D4RL/pen/human-v2``) and gymnasium-robotics env ids (``AntMaze_UMaze-v4``,
    ``PointMaze_UMaze-v3``, ``AdroitHandPen-v1``) both name the task, so either
    is enough. Anything else is treated as locomotion, whose reward scaling is
    the generic return-range one.
    """
    text = f"{name or ''} {env_id or ''}".lower()
    tokens = set(re.split(r"[/_\-\s.]+", text))
    if "antmaze" in text:
        return "antmaze"
    if "pointmaze" in text:
        return "pointmaze"
    if "adroit" in text or tokens.intersection(_ADROIT_TASKS):
        return "adroit"
    return "locomotion"


def _as_1d(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).reshape(-1)


@dataclass
class OfflineDataset:
    """Transitions (s, a, r, s') with termination and truncation kept apart.

    ``terminals`` is 1 only where the environment really terminated (the only
    place the critic must not bootstrap); ``timeouts`` marks time-limit
    truncations, which keep mask = 1. The old D4RL loader dropped timeout
    transitions instead: that loses data and is not repeated here.
    ``episode_returns`` are raw returns of complete episodes, needed for the
    locomotion reward scale and for dataset summaries.

    ``actions`` are in the learner's units, [−1, 1]: the stored actions mapped from
    ``action_bounds`` (the environment's box, data/bounds.py; ±1 when not given, the identity), then
    kept within ±ACTION_CLIP for the diffusion sampler. Stored actions outside the bounds are
    counted in ``actions_outside`` and reported on the console, not silently clipped.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_returns: np.ndarray
    env_id: str
    env_spec_json: str | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    name: str = ""
    domain: str = field(default="")
    action_bounds: ActionBounds | None = None
    actions_outside: OutsideReport | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # Imported here: validate.py imports this module for type hints.
        from data.validate import check_consistent, check_finite

        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        if self.observations.ndim == 1:
            self.observations = self.observations[:, None]
            self.next_observations = self.next_observations.reshape(-1, 1)
        if self.actions.ndim == 1:
            self.actions = self.actions[:, None]
        self.rewards = _as_1d(self.rewards)
        self.terminals = _as_1d(self.terminals)
        self.timeouts = _as_1d(self.timeouts)
        self.episode_returns = _as_1d(self.episode_returns)
        # A transition that terminated was not cut by the time limit.
        self.timeouts = np.where(self.terminals > 0, 0.0, self.timeouts).astype(np.float32)
        label = self.name or self.env_id
        check_consistent(self, label)
        # Finite check before clipping: clipping would hide an inf action.
        check_finite(
            {
                "observations": self.observations,
                "actions": self.actions,
                "rewards": self.rewards,
                "next_observations": self.next_observations,
                "terminals": self.terminals,
                "timeouts": self.timeouts,
                "episode_returns": self.episode_returns,
            },
            label,
        )
        bounds = self.action_bounds if self.action_bounds is not None else ActionBounds.unit(self.act_dim)
        if bounds.act_dim != self.act_dim:
            raise DatasetError(f"Dataset '{label}' has actions of {self.act_dim} numbers but action bounds of "
                               f"{bounds.act_dim} ({bounds.describe()}); the bounds belong to another environment.")
        self.actions_outside = bounds.outside(self.actions)
        if self.actions_outside.count:
            print(self.actions_outside.message(label, bounds), flush=True)
        # into the learner's [-1, 1] (the identity, skipped, for ±1 bounds), then the sampler's guard
        self.actions = np.clip(bounds.normalize(self.actions), -ACTION_CLIP, ACTION_CLIP)
        self.action_bounds = bounds
        if not self.domain:
            self.domain = infer_domain(self.env_id, self.name)
        if self.domain not in DOMAINS:
            raise DatasetError(
                f"Dataset '{label}' has domain '{self.domain}', which is not one of "
                f"{', '.join(DOMAINS)}; leave it empty to infer it from the dataset and env ids."
            )
        self.ref_min_score = None if self.ref_min_score is None else float(self.ref_min_score)
        self.ref_max_score = None if self.ref_max_score is None else float(self.ref_max_score)

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def size(self) -> int:
        return int(self.observations.shape[0])

    def __len__(self) -> int:
        return self.size

    @property
    def masks(self) -> np.ndarray:
        """1 − terminal: the bootstrap mask, so no consumer re-derives it wrongly."""
        return (1.0 - self.terminals).astype(np.float32)

    def normalized_score(self, returns) -> np.ndarray:
        """D4RL score: 0 = random policy, 100 = the expert reference."""
        if self.ref_min_score is None or self.ref_max_score is None:
            raise DatasetError(
                f"Dataset '{self.name or self.env_id}' carries no reference scores "
                f"(ref_min_score={self.ref_min_score}, ref_max_score={self.ref_max_score}), so "
                "normalised scores cannot be computed; report raw returns, or rebuild the dataset "
                "with reference scores (python -m launch.make_dataset records them)."
            )
        if self.ref_max_score == self.ref_min_score:
            raise DatasetError(
                f"Dataset '{self.name or self.env_id}' has equal reference scores "
                f"({self.ref_min_score}); normalised scores are undefined."
            )
        returns = np.asarray(returns, dtype=np.float64)
        return 100.0 * (returns - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)

    def episode_return_stats(self) -> dict[str, float]:
        """Summary used in logs and by launch scripts (raw returns)."""
        r = self.episode_returns.astype(np.float64)
        if r.size == 0:
            return {"episodes": 0}
        return {
            "episodes": int(r.size),
            "mean": float(r.mean()),
            "std": float(r.std()),
            "min": float(r.min()),
            "max": float(r.max()),
        }

    def env_spec(self) -> gym.envs.registration.EnvSpec | None:
        """The stored gymnasium spec, or None when only an id is known."""
        return parse_env_spec_json(self.env_spec_json) if self.env_spec_json else None


def dataset_meta(dataset: OfflineDataset, reward_transform) -> dict:
    """What acting and evaluating need to know about a dataset without loading it.

    Written as the run's `dataset_meta.json` (actors, evaluator) and into every pretraining
    checkpoint (`launch.api.load_policy`, `study.evaluate`): sizes, environment, reward transform,
    reference scores and the action bounds the actions were mapped with.
    """
    return {"obs_dim": dataset.obs_dim, "act_dim": dataset.act_dim, "env_id": dataset.env_id,
            "env_spec_json": dataset.env_spec_json, "reward_transform": reward_transform.to_dict(),
            "ref_min_score": dataset.ref_min_score, "ref_max_score": dataset.ref_max_score,
            "dataset": dataset.name, "domain": dataset.domain, **dataset.action_bounds.to_meta()}


# ---------------------------------------------------------------------------
# Environment rebuilding. It lives in data/ (not actor/) because validation
# must build the env to compare spaces; actor/envs.py reuses it. Flattening of
# dict observations (one order for data and envs) is in data/goals.py.
# ---------------------------------------------------------------------------

def parse_env_spec_json(spec_json: str) -> gym.envs.registration.EnvSpec:
    """EnvSpec from JSON, tolerating specs written by gymnasium 0.29.

    Minari datasets made with gymnasium 0.x store keys that gymnasium 1.x's
    ``EnvSpec`` no longer accepts (``apply_api_compatibility``, ``autoreset``);
    Minari strips them by string replacement, here every unknown key is dropped.
    """
    try:
        raw = json.loads(spec_json)
    except (TypeError, json.JSONDecodeError) as e:
        raise DatasetError(f"The stored environment spec is not valid JSON ({e}); "
                           "pass the environment id explicitly instead.") from None
    if not isinstance(raw, dict):
        raise DatasetError("The stored environment spec is not a JSON object; "
                           "pass the environment id explicitly instead.")
    known = {f.name for f in dataclasses.fields(gym.envs.registration.EnvSpec)}
    for key in [k for k in raw if k not in known]:  # e.g. apply_api_compatibility, autoreset
        raw.pop(key)
    try:
        return gym.envs.registration.EnvSpec.from_json(json.dumps(raw))
    except Exception as e:  # noqa: BLE001 - any malformed spec is a user problem
        raise DatasetError(f"The stored environment spec cannot be used ({type(e).__name__}: {e}); "
                           "pass the environment id explicitly instead.") from None


def make_raw_env(env_id: str, env_spec_json: str | None = None, **kwargs) -> gym.Env:
    """gym.make from the stored spec when there is one, else from the id.

    The spec is preferred because it pins kwargs and the time limit the data
    was collected with (e.g. AntMaze maze layout, Adroit variants).
    """
    target = parse_env_spec_json(env_spec_json) if env_spec_json else env_id
    register_robotics_envs(target)
    try:
        return gym.make(target, **kwargs)
    except Exception as e:  # noqa: BLE001 - report any construction failure plainly
        hint = ""
        if infer_domain(env_id) in ("antmaze", "pointmaze", "adroit") or "gymnasium_robotics" in str(e):
            hint = " AntMaze, PointMaze and Adroit environments need `pip install gymnasium-robotics`."
        elif "mujoco" in str(e).lower():
            hint = " MuJoCo environments need `pip install gymnasium[mujoco]`."
        raise DatasetError(
            f"The environment '{env_id}' cannot be built ({type(e).__name__}: {e}).{hint} "
            "Check the environment id (a gymnasium id such as Hopper-v5) or the dataset's stored spec."
        ) from None


def register_robotics_envs(target) -> None:
    """AntMaze, PointMaze and Adroit ids exist only once gymnasium-robotics registered them.

    gymnasium 1.x no longer loads plugins by itself, and importing the package
    costs ~0.3 s, so it is imported only for an id gymnasium does not know or a
    spec whose entry point lives there.
    """
    if isinstance(target, str):
        known, robotics = target in gym.registry, False
    else:
        known, robotics = True, str(target.entry_point).startswith("gymnasium_robotics")
    if known and not robotics:
        return
    try:
        import gymnasium_robotics
    except ImportError:
        return  # make_raw_env then reports the missing package
    gym.register_envs(gymnasium_robotics)


def needs_flattening(space: gym.Space) -> bool:
    """Dict/Tuple observations (AntMaze) must become one flat vector."""
    return not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1)


