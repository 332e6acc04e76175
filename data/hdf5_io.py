"""Legacy D4RL HDF5 files (``hopper-medium-v2.hdf5`` and friends).

Many people still have the original D4RL downloads, and those files cannot
be loaded through Minari. They are flat arrays (observations, actions,
rewards, terminals, timeouts, sometimes next_observations) with no episode
structure and usually no record of the environment, so the env id comes from
the caller (or from file attributes when a tool wrote them).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from data.dataset import OfflineDataset, infer_domain
from data.validate import check_finite, missing_keys_error, unreadable_error
from errors import DatasetError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
_ENV_ATTRS = ("env_id", "env", "env_name", "gym_env_id")

# D4RL's reference scores (d4rl/infos.py: REF_MIN_SCORE = random policy,
# REF_MAX_SCORE = expert), per task family, used only when a file carries no
# reference attributes, so that legacy files score on the familiar scale.
D4RL_REF_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
    "pen": (96.262799, 3076.8331017826877),
    "door": (-56.512833, 2880.5693087298737),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
}

# D4RL names its locomotion datasets after the task ("hopper-medium-v2"); the
# gymnasium environments with the same observation/action layout.
D4RL_TASK_TO_ENV = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}


def task_family(env_id: str) -> str:
    """'Hopper-v5' -> 'hopper', 'AntMaze_UMaze-v4' -> 'antmaze', 'AdroitHandPen-v1' -> 'pen'."""
    base = re.sub(r"-v\d+$", "", env_id).lower()
    if base.startswith("antmaze"):
        return "antmaze"
    if base.startswith("adroithand"):
        return base[len("adroithand"):]
    return base.split("-")[0].split("_")[0]


def _decode(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _decode(value[()])
    return str(value)


def _resolve_env_id(raw: str, path: str) -> str:
    """A registered gymnasium id is used as is; a D4RL task name is mapped."""
    import gymnasium as gym

    try:
        gym.spec(raw)
        return raw
    except Exception:  # noqa: BLE001 - not registered: try the D4RL naming
        pass
    family = raw.split("-")[0].lower()
    if family in D4RL_TASK_TO_ENV:
        return D4RL_TASK_TO_ENV[family]
    raise DatasetError(
        f"HDF5 dataset '{path}' names environment '{raw}', which is not a registered gymnasium "
        "id; pass the environment explicitly (--config.env_id, e.g. Hopper-v5)."
    )


def _env_action_space(env_id: str, label: str):
    """The environment's action space: a legacy file records none, so its bounds come from the env."""
    from data.dataset import make_raw_env

    try:
        env = make_raw_env(env_id)
    except DatasetError as e:
        raise DatasetError(f"{e} HDF5 dataset '{label}' records no action bounds, so they are taken from the "
                           "environment; where it cannot be built here, give them with "
                           "config.action_bounds='low,high'.") from None
    try:
        return env.action_space
    finally:
        env.close()


def load_hdf5(path: str | Path, env_id: str | None = None, action_bounds: str = "") -> OfflineDataset:
    """Flat transitions from a D4RL-style HDF5 file.

    Without ``next_observations`` the next state is the following row, so the
    last transition of an episode cut by a timeout (and a final unfinished
    row) has no successor and is dropped; terminal transitions are kept (their
    s' is never bootstrapped from). With ``next_observations`` every row is
    kept, timeouts included.

    The actions are mapped into [-1, 1] from the environment's action space, or from
    ``action_bounds`` ("low,high", ``config.action_bounds``) where given (data/bounds.py).
    """
    import h5py

    from data.bounds import resolve_action_bounds

    path = Path(path)
    label = str(path)
    if not path.is_file():
        raise DatasetError(
            f"HDF5 dataset '{label}' does not exist (or is not a file). Give the path to a D4RL-style "
            ".hdf5 file, or a Minari dataset id such as mujoco/hopper/medium-v0."
        )
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # noqa: BLE001 - h5py raises OSError and others
        raise unreadable_error(label, e) from None

    attrs: dict[str, str] = {}
    with f:
        found = list(f.keys())
        missing = [k for k in REQUIRED_KEYS if k not in f or not isinstance(f[k], h5py.Dataset)]
        if missing:
            raise missing_keys_error(label, missing, found)
        try:
            arrays = {k: np.asarray(f[k][()]) for k in REQUIRED_KEYS}
            if "next_observations" in f and isinstance(f["next_observations"], h5py.Dataset):
                arrays["next_observations"] = np.asarray(f["next_observations"][()])
            holders = [f.attrs]
            if "metadata" in f and isinstance(f["metadata"], h5py.Group):
                holders.append(f["metadata"].attrs)
            for holder in holders:
                for key, value in holder.items():
                    attrs.setdefault(key, _decode(value))
        except Exception as e:  # noqa: BLE001 - truncated or damaged data blocks
            raise unreadable_error(label, e) from None

    if env_id is None:
        raw = next((attrs[k] for k in _ENV_ATTRS if attrs.get(k)), None)
        if raw is None:
            raise DatasetError(
                f"HDF5 dataset '{label}' does not record which environment it belongs to (no "
                f"{'/'.join(_ENV_ATTRS)} attribute), so it cannot be checked or evaluated; pass the "
                "environment explicitly (--config.env_id, a gymnasium id such as Hopper-v5)."
            )
        env_id = _resolve_env_id(raw, label)

    obs = arrays["observations"]
    n = obs.shape[0] if obs.ndim else 0
    lengths = {k: (v.shape[0] if v.ndim else 0) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(
            f"HDF5 dataset '{label}' has arrays of different lengths "
            f"({', '.join(f'{k}: {v}' for k, v in lengths.items())}); every array needs one row "
            "per transition."
        )
    # Before any row is dropped: a NaN in a dropped row is still a broken file.
    check_finite(arrays, label)
    obs = obs.reshape(n, -1)
    actions = arrays["actions"].reshape(n, -1)
    rewards = arrays["rewards"].reshape(n).astype(np.float64)
    term = arrays["terminals"].reshape(n).astype(bool)
    tout = arrays["timeouts"].reshape(n).astype(bool) & ~term

    # Episode returns over all rows, before any row is dropped.
    ends = np.nonzero(term | tout)[0]
    starts = np.concatenate([[0], ends[:-1] + 1]) if ends.size else np.zeros(0, dtype=np.int64)
    csum = np.concatenate([[0.0], np.cumsum(rewards)])
    episode_returns = (csum[ends + 1] - csum[starts]).astype(np.float32)

    if "next_observations" in arrays:
        next_obs = arrays["next_observations"].reshape(n, -1)
        keep = np.ones(n, dtype=bool)
    else:
        idx = np.arange(n)
        has_next_row = idx < n - 1
        keep = term | (has_next_row & ~tout)
        next_obs = obs[np.minimum(idx + 1, n - 1)]
        # A terminal last row has no following row; its s' is unused (mask 0).
        if n and term[-1]:
            next_obs[-1] = obs[-1]

    refs = (attrs.get("ref_min_score"), attrs.get("ref_max_score"))
    if refs[0] is not None and refs[1] is not None:
        try:
            ref_min, ref_max = float(refs[0]), float(refs[1])
        except ValueError:
            ref_min = ref_max = None
    else:
        ref_min, ref_max = D4RL_REF_SCORES.get(task_family(env_id), (None, None))

    bounds = resolve_action_bounds(lambda: _env_action_space(env_id, label), action_bounds, actions.shape[1], label)
    return OfflineDataset(
        observations=obs[keep],
        actions=actions[keep],
        rewards=rewards[keep],
        next_observations=next_obs[keep],
        terminals=term[keep],
        timeouts=tout[keep],
        episode_returns=episode_returns,
        env_id=env_id,
        env_spec_json=None,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        name=label,
        domain=infer_domain(env_id, path.stem),
        action_bounds=bounds,
    )
