"""Offline datasets: one entry point whatever the source.

``load_dataset`` takes either a Minari dataset id or a path to a legacy D4RL
HDF5 file, so launch scripts need a single ``--dataset`` flag; the result is
checked against its environment before anyone trains on it.
"""

from __future__ import annotations

from data.dataset import OfflineDataset
from data.make import EMBEDDED_DEFAULT, ensure_default_dataset
from data.rewards import RewardTransform, reward_transform_for

HDF5_SUFFIXES = (".hdf5", ".h5")


def is_hdf5_path(source: str) -> bool:
    return str(source).lower().endswith(HDF5_SUFFIXES)


def load_dataset(source: str, env_id: str | None = None, check_env: bool = True,
                 action_bounds: str = "") -> OfflineDataset:
    """Load, then verify finiteness (always) and env dimensions (``check_env``).

    ``env_id`` overrides the environment recorded in the data and is needed
    for HDF5 files that do not record one. ``check_env=False`` skips building
    the environment, for machines that lack it (pure offline analysis; a legacy
    HDF5 file still builds it for its action bounds unless ``action_bounds`` gives them).
    ``action_bounds`` ("low,high", ``config.action_bounds``) overrides the action
    bounds the actions are mapped into [-1, 1] with (data/bounds.py).
    """
    from data.validate import validate_dataset

    if is_hdf5_path(source):
        from data.hdf5_io import load_hdf5

        dataset = load_hdf5(source, env_id=env_id, action_bounds=action_bounds)
    else:
        from data.minari_io import load_minari

        dataset = load_minari(source, env_id=env_id, action_bounds=action_bounds)
    return validate_dataset(dataset, check_env=check_env)


__all__ = [
    "EMBEDDED_DEFAULT",
    "ensure_default_dataset",
    "HDF5_SUFFIXES",
    "OfflineDataset",
    "RewardTransform",
    "is_hdf5_path",
    "load_dataset",
    "reward_transform_for",
]
