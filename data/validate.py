"""Dataset checks that end in one readable paragraph, never a traceback.

A dataset problem found late (a NaN reaching the critic after an hour, an
observation size that only fails when the first evaluation episode starts)
costs far more than checking at load time, and the person who hits it needs
to know which dataset, which array and what to do, not where in the code it
failed. Every failure here is a `DatasetError` (a `UserFacingError`).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    import gymnasium as gym

    from data.dataset import OfflineDataset

MAKE_COMMAND = "python -m launch.make_dataset"


def unknown_dataset_error(dataset_id: str, local_ids: Iterable[str], store: str) -> DatasetError:
    """The id is neither local nor a file: say what is there and how to get more."""
    local = sorted(local_ids)
    close = difflib.get_close_matches(dataset_id, local, n=3, cutoff=0.6)
    found = ", ".join(local) if local else "none"
    guess = f" Did you mean {', '.join(close)}?" if close else ""
    return DatasetError(
        f"Minari dataset '{dataset_id}' is not in the local Minari store {store} "
        f"(set by MINARI_DATASETS_PATH; datasets found there: {found}).{guess} "
        f"On a machine with internet access run `minari download {dataset_id}` and copy the "
        "dataset folder into the store; or make a D4RL-style local dataset with "
        f"`{MAKE_COMMAND} --env=Hopper-v5 --kind=medium` (ids like local/hopper/medium-v0); "
        "a legacy D4RL file can be given as a path ending in .hdf5."
    )


def unreadable_error(source: str, exc: BaseException, location: str | None = None) -> DatasetError:
    """Corrupt, truncated or foreign files all end up here."""
    where = f" (stored in {location})" if location else ""
    return DatasetError(
        f"Dataset '{source}'{where} exists but cannot be read ({type(exc).__name__}: {exc}). "
        "The file is probably corrupt or incomplete (e.g. an interrupted download or write); "
        "delete it and download or rebuild it "
        f"(`minari download <id>` for Minari datasets, `{MAKE_COMMAND}` for local ones)."
    )


def missing_keys_error(path: str, missing: Iterable[str], found: Iterable[str]) -> DatasetError:
    return DatasetError(
        f"HDF5 dataset '{path}' lacks the required key(s) {', '.join(sorted(missing))} "
        f"(keys found: {', '.join(sorted(found)) or 'none'}). A D4RL-style file needs "
        "observations, actions, rewards, terminals and timeouts (next_observations is optional); "
        "add the missing arrays or convert the data to a Minari dataset."
    )


def check_consistent(dataset: "OfflineDataset", label: str) -> None:
    """Array ranks and lengths agree, so a bad loader fails here and not in a batch."""
    obs, nxt, act = dataset.observations, dataset.next_observations, dataset.actions
    n = obs.shape[0] if obs.ndim >= 1 else -1
    problems = []
    if obs.ndim != 2:
        problems.append(f"observations have shape {obs.shape}, expected [N, obs_dim]")
    if nxt.shape != obs.shape:
        problems.append(f"next_observations have shape {nxt.shape}, observations {obs.shape}")
    if act.ndim != 2 or act.shape[0] != n:
        problems.append(f"actions have shape {act.shape}, expected [{n}, act_dim]")
    for key in ("rewards", "terminals", "timeouts"):
        arr = getattr(dataset, key)
        if arr.shape != (n,):
            problems.append(f"{key} have shape {arr.shape}, expected [{n}]")
    if not problems and n == 0:
        problems.append("it contains no transitions")
    if problems:
        raise DatasetError(
            f"Dataset '{label}' is malformed: {'; '.join(problems)}. "
            "Every array must have one row per transition; rebuild or re-export the dataset."
        )


def check_finite(arrays: Mapping[str, np.ndarray], label: str) -> None:
    """NaN or inf anywhere would silently poison the critic; name where it is."""
    bad = []
    for key, arr in arrays.items():
        a = np.asarray(arr)
        if not np.issubdtype(a.dtype, np.floating):
            continue
        mask = ~np.isfinite(a)
        if mask.any():
            rows = np.nonzero(mask.reshape(a.shape[0], -1).any(axis=1))[0] if a.ndim else [0]
            kinds = []
            if np.isnan(a).any():
                kinds.append("NaN")
            if np.isinf(a).any():
                kinds.append("inf")
            bad.append(f"{key} has {int(mask.sum())} {'/'.join(kinds)} value(s) "
                       f"(first in row {int(rows[0])})")
    if bad:
        raise DatasetError(
            f"Dataset '{label}' contains non-finite numbers: {'; '.join(bad)}. "
            "Training on them would turn the losses into NaN; fix or drop those transitions "
            "before loading (or rebuild the dataset)."
        )


def check_env_dimensions(dataset: "OfflineDataset", env: "gym.Env | None" = None) -> None:
    """The data must fit the environment the policy will be evaluated in.

    Compared after flattening, because that is what the networks see.
    """
    import gymnasium as gym

    from data.dataset import make_raw_env

    own = env is None
    if own:
        env = make_raw_env(dataset.env_id, dataset.env_spec_json)
    try:
        obs_dim = int(gym.spaces.flatdim(env.observation_space))
        act_space = env.action_space
        act_dim = int(gym.spaces.flatdim(act_space))
    finally:
        if own:
            env.close()
    problems = []
    if obs_dim != dataset.obs_dim:
        problems.append(f"observations have {dataset.obs_dim} numbers per step but the "
                        f"environment's (flattened) observation space has {obs_dim}")
    if act_dim != dataset.act_dim:
        problems.append(f"actions have {dataset.act_dim} numbers per step but the environment's "
                        f"action space has {act_dim}")
    if problems:
        raise DatasetError(
            f"Dataset '{dataset.name or dataset.env_id}' does not fit environment "
            f"'{dataset.env_id}': {'; '.join(problems)}. The dataset was probably made for another "
            "environment: pass the right environment id (--config.env_id) or use a dataset for this one."
        )


def validate_dataset(dataset: "OfflineDataset", check_env: bool = True) -> "OfflineDataset":
    """All load-time checks; the array checks already ran when it was built."""
    if check_env:
        check_env_dimensions(dataset)
    return dataset
