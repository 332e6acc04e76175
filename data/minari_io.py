"""Reading and writing Minari datasets (minari 0.5.3, HDF5 storage).

Minari is the maintained home of the D4RL datasets (``mujoco/hopper/medium-v0``,
``D4RL/antmaze/umaze-v1``, ``D4RL/pen/human-v2``), so it is the primary
format; datasets made locally are written in the same format so that there is
one loading path and they can be shared with other Minari tools.

Writing avoids ``minari.DataCollector`` because it needs jax; one
``EpisodeBuffer`` per episode passed to ``create_dataset_from_buffers`` needs
only h5py.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import gymnasium as gym
import numpy as np

from data.dataset import OfflineDataset, flatten_batch, parse_env_spec_json
from data.validate import unknown_dataset_error, unreadable_error
from errors import DatasetError


def minari_store() -> Path:
    """The local store, read from MINARI_DATASETS_PATH at call time (tests move it)."""
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path())


def _dataset_dir(dataset_id: str) -> Path:
    """Where minari keeps a dataset; rejects ids that are not Minari ids.

    Checked here because minari joins the id onto the store path unchecked.
    """
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):  # TypeError: minari's int(None) when "-vN" is missing
        raise DatasetError(
            f"'{dataset_id}' is not a valid Minari dataset id (expected namespace/name-vN, e.g. "
            "mujoco/hopper/medium-v0 or local/hopper/medium-v0) and does not end in .hdf5/.h5, "
            "so it is not a legacy D4RL file either."
        ) from None
    if ".." in dataset_id.split("/") or dataset_id.startswith("/"):
        raise DatasetError(f"'{dataset_id}' is not a valid Minari dataset id.")
    return minari_store() / dataset_id


def list_local_minari_ids() -> list[str]:
    """Ids in the local store; broken entries are skipped, not fatal."""
    import minari

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sorted(minari.list_local_datasets().keys())
    except Exception:  # noqa: BLE001 - listing is only used for messages
        return []


def minari_dataset_exists(dataset_id: str) -> bool:
    return (_dataset_dir(dataset_id) / "data").is_dir()


def _spec_json_from_metadata(metadata: Mapping[str, Any]) -> str | None:
    """Prefer the evaluation env spec: that is the env the policy is scored in.

    D4RL AntMaze datasets were collected in a continuing-task variant and
    name a separate ``eval_env_spec``; online fine-tuning and evaluation use
    the latter, as IDQL does with the D4RL evaluation env.
    """
    for key in ("eval_env_spec", "env_spec"):
        raw = metadata.get(key)
        if isinstance(raw, str) and raw:
            return parse_env_spec_json(raw).to_json()
    return None


def load_minari(dataset_id: str, env_id: str | None = None, action_bounds: str = "") -> OfflineDataset:
    """Flat transitions from a local Minari dataset.

    ``env_id`` overrides the environment recorded in the dataset (and is
    required when the dataset records none). The actions are mapped into [-1, 1]
    from the dataset's stored action space, or from ``action_bounds`` ("low,high",
    ``config.action_bounds``) where given (data/bounds.py).
    """
    from data.bounds import resolve_action_bounds

    from minari.dataset.minari_storage import MinariStorage

    path = _dataset_dir(dataset_id)
    if not (path / "data").is_dir():
        raise unknown_dataset_error(dataset_id, list_local_minari_ids(), str(minari_store()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The storage layer, not minari.load_dataset: MinariDataset parses
            # the env spec itself and fails on spec keys its string patches
            # miss; the spec is parsed leniently below instead.
            storage = MinariStorage.read(path / "data")
            metadata = storage.metadata
            _check_minari_version(metadata, dataset_id)
            stored_action_space = storage.action_space
            episodes = _read_episodes(storage, dataset_id)
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt files raise many types
        raise unreadable_error(dataset_id, e, location=str(path)) from None

    spec_json = None
    try:
        spec_json = _spec_json_from_metadata(metadata)
    except DatasetError:
        if env_id is None:
            raise
    if env_id is not None and spec_json is not None:
        if parse_env_spec_json(spec_json).id != env_id:
            spec_json = None  # the caller chose another env; do not rebuild the recorded one
    if env_id is None:
        if spec_json is None:
            raise DatasetError(
                f"Minari dataset '{dataset_id}' records no environment, so the environment to "
                "evaluate in is unknown; pass it explicitly (--config.env_id, a gymnasium id such as Hopper-v5)."
            )
        env_id = parse_env_spec_json(spec_json).id

    if not episodes:
        raise DatasetError(f"Minari dataset '{dataset_id}' contains no episodes.")
    cat = lambda k: np.concatenate([e[k] for e in episodes], axis=0)  # noqa: E731
    returns = [float(e["rewards"].sum(dtype=np.float64)) for e in episodes if e["complete"]]
    actions = cat("actions")
    bounds = resolve_action_bounds(stored_action_space, action_bounds, actions.reshape(len(actions), -1).shape[1],
                                   dataset_id)
    return OfflineDataset(
        observations=cat("observations"),
        actions=actions,
        rewards=cat("rewards"),
        next_observations=cat("next_observations"),
        terminals=cat("terminals"),
        timeouts=cat("timeouts"),
        episode_returns=np.asarray(returns, dtype=np.float32),
        env_id=env_id,
        env_spec_json=spec_json,
        ref_min_score=metadata.get("ref_min_score"),
        ref_max_score=metadata.get("ref_max_score"),
        name=dataset_id,
        action_bounds=bounds,
    )


def _check_minari_version(metadata: Mapping[str, Any], dataset_id: str) -> None:
    from minari import __version__, supported_dataset_versions

    version = metadata.get("minari_version")
    if version not in supported_dataset_versions:
        raise DatasetError(
            f"Minari dataset '{dataset_id}' was written by minari {version}, which the installed "
            f"minari {__version__} cannot read (it reads {', '.join(sorted(supported_dataset_versions))}); "
            "download a compatible version of the dataset or change the minari version."
        )


def _read_episodes(storage, dataset_id: str) -> list[dict]:
    """Per-episode transitions; observations hold one more entry than actions."""
    obs_space, act_space = storage.observation_space, storage.action_space
    out = []
    for ep in storage.get_episodes(range(storage.total_episodes)):
        t = len(ep["rewards"])
        obs = flatten_batch(obs_space, ep["observations"])
        act = flatten_batch(act_space, ep["actions"])
        if obs.shape[0] != t + 1 or act.shape[0] != t:
            raise DatasetError(
                f"Minari dataset '{dataset_id}', episode {ep['id']}: {t} rewards, {act.shape[0]} "
                f"actions and {obs.shape[0]} observations; an episode needs one observation more "
                "than actions (the final next state). The dataset is malformed; rebuild it."
            )
        if t == 0:
            continue
        term = np.asarray(ep["terminations"], dtype=bool).reshape(t)
        trunc = np.asarray(ep["truncations"], dtype=bool).reshape(t) & ~term
        out.append({
            "observations": obs[:-1],
            "next_observations": obs[1:],
            "actions": act,
            "rewards": np.asarray(ep["rewards"], dtype=np.float64).reshape(t),
            "terminals": term.astype(np.float32),
            "timeouts": trunc.astype(np.float32),
            # An episode cut by neither flag (collection stopped) is not a
            # complete return and would distort the reward scale.
            "complete": bool(term[-1] or trunc[-1]),
        })
    return out


def check_writable(dataset_id: str, overwrite: bool = False) -> Path:
    """Fail before any slow collection if the id cannot be written."""
    path = _dataset_dir(dataset_id)
    if path.exists():
        if not overwrite:
            raise DatasetError(
                f"Minari dataset '{dataset_id}' already exists at {path}; choose another id "
                "(e.g. bump the -vN version) or pass --overwrite to replace it."
            )
        if not (path / "data").is_dir():
            raise DatasetError(f"'{path}' is a Minari namespace folder, not a dataset; refusing to delete it.")
    return path


def write_minari(
    dataset_id: str,
    episodes: Iterable[Mapping[str, Any]],
    env_id: str | None = None,
    ref_min: float | None = None,
    ref_max: float | None = None,
    *,
    env_spec_json: str | None = None,
    eval_env_spec_json: str | None = None,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    description: str | None = None,
    algorithm_name: str | None = None,
    author: str = "offline-to-online RL platform",
    code_permalink: str = "data/minari_io.py",
    overwrite: bool = False,
) -> Path:
    """Write episodes as a Minari (HDF5) dataset and return its folder.

    The Python route for data collected any way you like (your own controller, logs of a real
    system): minari's ``DataCollector`` needs jax, this needs only h5py, and the result loads like
    every other dataset (``--config.dataset=<dataset_id>``)::

        import gymnasium as gym, numpy as np
        from data.minari_io import write_minari

        env, episodes = gym.make("InvertedPendulum-v5"), []
        for seed in range(20):
            obs, _ = env.reset(seed=seed)
            ep = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
            done = False
            while not done:
                action = env.action_space.sample()          # your policy; in the env's own units
                obs, r, term, trunc, _ = env.step(action)
                for key, value in zip(ep, (obs, action, r, term, trunc)):
                    ep[key].append(value)
                done = term or trunc
            episodes.append({k: np.asarray(v) for k, v in ep.items()})
        write_minari("local/invertedpendulum/mine-v0", episodes, env_id="InvertedPendulum-v5",
                     ref_min=5.0, ref_max=1000.0)    # returns scoring 0 and 100; None: unknown

    Store actions as the environment takes them (its own units; the learner maps its action box
    onto [-1, 1] when loading), terminations (the task ended: no bootstrap) apart from truncations
    (a time limit), and complete episodes only: a cut-off episode's return would distort the
    locomotion reward scale. ``data.make.make_policy_dataset`` (``python -m launch.make_dataset
    --env=<id> --policy=random|<checkpoint>``) does all this for a policy in a registered environment.

    Each episode maps ``observations`` ([T+1, ...] array, or a dict of them
    for Dict spaces), ``actions`` [T, ...], ``rewards``, ``terminations`` and
    ``truncations`` [T]. The environment comes from ``env_spec_json`` or
    ``env_id``; without either, both spaces must be given; ``eval_env_spec_json``
    records a separate evaluation environment (Minari's ``eval_env_spec``, which
    the loader prefers: e.g. a maze with a fixed goal). Reference scores
    are written into the metadata directly, because minari 0.5.3 stores them
    only when an env is given and otherwise computes ref_min itself by
    running 100 random episodes.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    path = check_writable(dataset_id, overwrite)
    if path.exists():
        shutil.rmtree(path)

    env: Any = None
    if env_spec_json:
        env = parse_env_spec_json(env_spec_json)
    elif env_id:
        env = env_id
    if env is None and (observation_space is None or action_space is None):
        raise DatasetError("write_minari needs an environment id/spec or both spaces.")

    buffers = []
    for i, ep in enumerate(episodes):
        buffers.append(EpisodeBuffer(
            id=i,
            observations=ep["observations"],
            actions=np.asarray(ep["actions"]),
            rewards=np.asarray(ep["rewards"], dtype=np.float64),
            terminations=np.asarray(ep["terminations"], dtype=bool),
            truncations=np.asarray(ep["truncations"], dtype=bool),
        ))
    if not buffers:
        raise DatasetError(f"Refusing to write Minari dataset '{dataset_id}' with no episodes.")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # minari warns about every optional metadata field
            ds = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=env,
                eval_env=parse_env_spec_json(eval_env_spec_json) if eval_env_spec_json else None,
                observation_space=observation_space,
                action_space=action_space,
                algorithm_name=algorithm_name or "unspecified",
                author=author,
                author_email="n/a",
                code_permalink=code_permalink,
                description=description or f"Offline dataset {dataset_id}.",
                data_format="hdf5",
            )
            refs = {k: float(v) for k, v in (("ref_min_score", ref_min), ("ref_max_score", ref_max))
                    if v is not None}
            if refs:
                ds.storage.update_metadata(refs)
    except BaseException as e:
        # A half-written folder would later look like a corrupt dataset and
        # block rebuilding under the same id.
        shutil.rmtree(path, ignore_errors=True)
        if isinstance(e, Exception) and not isinstance(e, DatasetError):
            raise DatasetError(
                f"Writing Minari dataset '{dataset_id}' failed ({type(e).__name__}: {e}); "
                "nothing was kept."
            ) from e
        raise
    return path


def delete_minari(dataset_id: str) -> None:
    """Remove one dataset folder (only a dataset, never a namespace)."""
    path = _dataset_dir(dataset_id)
    if (path / "data").is_dir():
        shutil.rmtree(path)


__all__ = [
    "check_writable",
    "delete_minari",
    "list_local_minari_ids",
    "load_minari",
    "minari_dataset_exists",
    "minari_store",
    "write_minari",
]
