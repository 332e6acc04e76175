"""The platform from Python: pretrain, finetune, and act with a trained policy.

    from launch.api import finetune, load_policy, pretrain

    run_dir = pretrain({"num_critic_steps": 2000, "num_actor_steps": 2000})   # overrides on configs/quickstart.py
    policy = load_policy(run_dir / "checkpoint.pt", mode="argmax", num_candidates=16)
    action = policy.act(obs)              # [obs_dim] -> [act_dim], or [B, obs_dim] -> [B, act_dim]; env units
    ft_dir = finetune({"online.total_env_steps": 20_000}, pretrained=run_dir / "checkpoint.pt")

Why: the absl programs are the way to run the platform from a shell, but using a trained policy in
other code (a controller, a notebook, another evaluation) needed a learner, its dataset and the
evaluator's plumbing. Here `pretrain` and `finetune` are thin calls of exactly what
`python -m launch.pretrain` and `python -m launch.finetune` run (`launch.pretrain.train`,
`launch.finetune.run`, which the programs' `main` call too), and `load_policy` rebuilds only the
acting networks from a checkpoint and its recorded metadata (`dataset_meta`: sizes, environment,
action bounds), never loading the dataset.

`config`, for `pretrain` and `finetune`, is one of:
- None: the program's default config file (configs/quickstart.py, configs/finetune.py);
- a dict of overrides on that default, keys as on the command line without `--config.`
  (`{"seed": 1, "eval.episodes": 5}`; nested dicts work too: `{"eval": {"episodes": 5}}`);
- a path to a config file (`"configs/locomotion.py"`, relative to the working directory or to the
  repository), whose `get_config()` is called;
- an `ml_collections.ConfigDict` (copied, never changed).
`overrides=` (a dict as above) applies on top of any of these. An unknown field or a value of
the wrong type raises `errors.ConfigError` naming the field, as the command line does.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from errors import ConfigError, UserFacingError

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN_CONFIG = "configs/quickstart.py"      # launch.pretrain's default --config
FINETUNE_CONFIG = "configs/finetune.py"        # launch.finetune's default --config
MODES = ("argmax", "implicit")

ConfigLike = Any     # None | Mapping of overrides | str / os.PathLike (config file) | ml_collections.ConfigDict


# --------------------------------------------------------------------------- configs
def load_config_file(path: str | os.PathLike):
    """`get_config()` of a config file, found from the working directory, else from the repository."""
    given = Path(path)
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, ROOT / given]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise ConfigError(f"No config file at {path} (looked in {', '.join(str(p.parent) for p in candidates)}); "
                          f"the config files are in {ROOT / 'configs'}.")
    spec = importlib.util.spec_from_file_location(f"_api_config_{found.stem}", found)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"The config file {found} defines no get_config(); see configs/base.py.")
    return module.get_config()


def _flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= _flatten(value, name + ".")
        else:
            out[name] = value
    return out


def apply_overrides(cfg, overrides: Mapping[str, Any] | None):
    """Set `{"a.b": value}` on `cfg` as `--config.a.b=value` would; an unknown field is refused by name."""
    for name, value in _flatten(overrides or {}).items():
        *parents, leaf = name.split(".")
        node = cfg
        try:
            for part in parents:
                node = node[part]
            if leaf not in node:
                raise KeyError(leaf)
        except (KeyError, TypeError):
            raise ConfigError(f"The config has no field {name} (override {name}={value!r}); configs/base.py lists "
                              f"every field.") from None
        old = node[leaf]
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        try:
            node[leaf] = value
        except (TypeError, ValueError) as e:
            raise ConfigError(f"Invalid setting config.{name}={value!r}: the field holds a {type(old).__name__} "
                              f"({' '.join(str(e).split())}).") from None
    return cfg


def resolve_config(config: ConfigLike, default_file: str, overrides: Mapping[str, Any] | None = None):
    """A fresh ConfigDict from any of the forms the module docstring lists."""
    import ml_collections

    if config is None:
        cfg = load_config_file(default_file)
    elif isinstance(config, ml_collections.ConfigDict):
        cfg = copy.deepcopy(config)
    elif isinstance(config, Mapping):
        cfg = apply_overrides(load_config_file(default_file), config)
    elif isinstance(config, (str, os.PathLike)):
        cfg = load_config_file(config)
    else:
        raise ConfigError(f"config must be None, a dict of overrides, a config file path or an ml_collections "
                          f"ConfigDict; got a {type(config).__name__}.")
    return apply_overrides(cfg, overrides)


def changed_settings(cfg, config: ConfigLike, default_file: str):
    """What this call changed from its config file's defaults, which names the run directory as the
    command line's overrides do (launch/run_names.py): a sweep from Python never shares a directory.
    A ConfigDict comes from no file the API knows; it is compared with configs/base.py."""
    from launch.run_names import settings_of

    if isinstance(config, (str, os.PathLike)):
        base_file = str(config)
    elif config is None or isinstance(config, Mapping):
        base_file = default_file
    else:
        base_file = "configs/base.py"
    return settings_of(cfg, base_file, load_config_file(base_file))


# --------------------------------------------------------------------------- training
def pretrain(config: ConfigLike = None, *, overrides: Mapping[str, Any] | None = None, resume: bool = False,
             run_dir: str | os.PathLike | None = None) -> Path:
    """Offline pretraining, as `python -m launch.pretrain`; returns the run directory (checkpoint.pt in it).

    `resume=True` continues the run in the run directory (as --resume). Call it from the main
    thread: like the program, the run checkpoints and stops on Ctrl-C / SIGTERM.
    """
    from launch import pretrain as program

    cfg = resolve_config(config, PRETRAIN_CONFIG, overrides)
    summary = program.train(cfg, resume, Path(run_dir) if run_dir is not None else None,
                            settings=changed_settings(cfg, config, PRETRAIN_CONFIG))
    return Path(summary["run_dir"])


def finetune(config: ConfigLike = None, pretrained: str | os.PathLike | None = None, *,
             overrides: Mapping[str, Any] | None = None, resume: bool = False, launcher: str = "local",
             ray_address: str | None = None) -> Path:
    """Online finetuning, as `python -m launch.finetune`; returns the run directory.

    `pretrained`: a pretraining checkpoint (or its run directory) to start from; without it the
    run pretrains first. The learner, actors and evaluator run as child processes in the
    repository's directory, so the run's paths are made absolute first.
    """
    from launch import finetune as program

    cfg = resolve_config(config, FINETUNE_CONFIG, overrides)
    cfg.workdir = str(Path(cfg.workdir).resolve())
    from data import is_hdf5_path
    if is_hdf5_path(cfg.dataset) and Path(cfg.dataset).exists():
        cfg.dataset = str(Path(cfg.dataset).resolve())
    ckpt = None
    if pretrained is not None:
        ckpt = Path(pretrained)
        ckpt = (ckpt / "checkpoint.pt" if ckpt.is_dir() else ckpt).resolve()
    try:
        summary = program.run(cfg, str(ckpt) if ckpt else None, resume, launcher, ray_address,
                              settings=changed_settings(cfg, config, FINETUNE_CONFIG))
    finally:
        if launcher == "ray":
            from launch.ray_roles import stop_ray
            stop_ray()
    return Path(summary["run_dir"])


# --------------------------------------------------------------------------- acting
def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory: its finetuned learner_checkpoint.pt, else checkpoint.pt."""
    from learner.online import CHECKPOINT_NAME

    path = Path(path)
    if path.is_dir():
        for name in (CHECKPOINT_NAME, "checkpoint.pt", "pretrain/checkpoint.pt"):
            if (path / name).is_file():
                return path / name
        raise UserFacingError(f"The run directory {path} holds no checkpoint ({CHECKPOINT_NAME} or checkpoint.pt).")
    if not path.is_file():
        raise UserFacingError(f"No checkpoint at {path}: give a checkpoint.pt (pretraining), a "
                              f"learner_checkpoint.pt (finetuning) or the run directory holding one.")
    return path


def checkpoint_meta(state: Mapping[str, Any], path: Path, config_json: str | os.PathLike | None = None,
                    say: Callable[[str], None] | None = print) -> tuple[dict, bool]:
    """(the run's dataset metadata, complete?) for a loaded checkpoint, without loading the dataset.

    Pretraining checkpoints carry it (`dataset_meta`); a finetuning learner checkpoint has the
    run's dataset_meta.json beside it (or beside its config.json). Checkpoints made before either
    give what they recorded (sizes, reward transform) with ±1 action bounds, which is what their
    runs clipped to; `complete` is then False (no environment, no reference scores).
    """
    from actor.actor_loop import load_dataset_meta

    if isinstance(state.get("dataset_meta"), Mapping):
        return dict(state["dataset_meta"]), True
    beside = [path.parent / "dataset_meta.json"]
    if path.parent.name == "pretrain":       # a finetuning run's pretraining: the run's file is one level up
        beside.append(path.parent.parent / "dataset_meta.json")
    if config_json is not None:
        beside.append(Path(config_json).parent / "dataset_meta.json")
    for candidate in beside:
        if candidate.is_file():
            return load_dataset_meta(candidate), True
    if state.get("obs_dim") is None or state.get("act_dim") is None:
        raise UserFacingError(f"The checkpoint {path} records neither its dataset's metadata nor its sizes, and no "
                              f"dataset_meta.json lies beside it; it is not a checkpoint of this platform.")
    if say is not None:
        say(f"The checkpoint {path} predates recorded dataset metadata (dataset_meta): it acts with the sizes it "
            f"recorded and actions in [-1, 1], as its run clipped them; its environment is not recorded.")
    meta = {"obs_dim": int(state["obs_dim"]), "act_dim": int(state["act_dim"]), "env_id": None,
            "env_spec_json": None, "reward_transform": state.get("reward_transform"),
            "dataset": state.get("dataset"), "action_low": None, "action_high": None}
    return meta, False


class Policy:
    """A trained policy: observations in, actions in the environment's units out.

    `act` draws N candidates from μ and extracts one (argmax or implicit, with the run's
    weighting), in the learner's [-1, 1], then maps them into the environment's bounds recorded
    in the checkpoint. Its randomness comes from a private generator (`seed`), so the same
    observations give the same actions from a fresh policy.
    """

    def __init__(self, acting, modules: dict, bounds, meta: dict, cfg, device, seed: int, checkpoint: Path,
                 mode: str, num_candidates: int):
        import torch

        self._acting, self.bounds, self.meta, self.cfg = acting, bounds, meta, cfg
        self.modules = modules          # the acting networks (networks.factory.acting_params publishes them)
        self.device = torch.device(device)
        self.checkpoint, self.mode, self.num_candidates = checkpoint, mode, num_candidates
        self.obs_dim, self.act_dim = int(meta["obs_dim"]), int(meta["act_dim"])
        self.action_low = np.asarray(bounds.low, dtype=np.float32)
        self.action_high = np.asarray(bounds.high, dtype=np.float32)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))

    def act(self, obs: np.ndarray) -> np.ndarray:
        """[obs_dim] -> [act_dim], or [B, obs_dim] -> [B, act_dim]; float32, in the environment's units."""
        import torch

        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        if single:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise UserFacingError(f"Policy.act takes one observation [obs_dim] or a batch [B, obs_dim] with "
                                  f"obs_dim = {self.obs_dim} (the checkpoint's); got an array of shape "
                                  f"{np.shape(obs)}. Dict observations are flattened as Policy.make_env does.")
        actions, _ = self._acting.act(torch.as_tensor(x, device=self.device), self.generator)
        actions = self.bounds.denormalize(np.clip(actions.float().cpu().numpy(), -1.0, 1.0))
        return actions[0] if single else actions

    def make_env(self, seed: int = 0, **make_kwargs):
        """The run's environment (its stored spec, dict observations flattened as the data), in its own units."""
        from actor.actor_loop import env_source
        from actor.envs import make_env

        if not self.meta.get("env_id") and not self.meta.get("env_spec_json"):
            raise UserFacingError(f"The checkpoint {self.checkpoint} does not record its environment (made before "
                                  f"dataset metadata was recorded); build it yourself, e.g. with "
                                  f"actor.envs.make_env('<env id>', seed).")
        return make_env(env_source(self.meta), seed, **make_kwargs)


def load_policy(checkpoint: str | os.PathLike, mode: str = "argmax", num_candidates: int = 16,
                device: str = "cpu", *, seed: int = 0, config_json: str | os.PathLike | None = None,
                weighting: str = "") -> Policy:
    """The acting policy of a checkpoint (pretraining checkpoint.pt, finetuning learner_checkpoint.pt or
    a run directory), without its dataset.

    `mode`: "argmax" or "implicit" extraction over `num_candidates` samples of μ (ignored by IQL's
    Gaussian actor); `weighting`: override the run's weights (`eval.weighting`'s choices).
    `config_json`: the run's config.json, for a learner checkpoint written without its config.
    """
    import ml_collections
    import torch

    from data.bounds import bounds_from_meta
    from learner.checkpoint import load_checkpoint
    from networks.extraction import WEIGHTINGS
    from networks.factory import build_acting_modules, evaluation_policies, upgrade_config

    if mode not in MODES:
        raise ConfigError(f"Invalid argument mode={mode!r}: choose one of {', '.join(MODES)}.")
    if int(num_candidates) < 1:
        raise ConfigError(f"Invalid argument num_candidates={num_candidates!r}: N must be at least 1.")
    if weighting and weighting not in WEIGHTINGS:
        raise ConfigError(f"Invalid argument weighting={weighting!r}: choose one of {', '.join(WEIGHTINGS)} or "
                          f"leave it empty for the run's own.")
    path = find_checkpoint(checkpoint)
    state = load_checkpoint(path, map_location=device)
    raw = Path(config_json).read_text() if config_json is not None else state.get("config")
    if not raw:
        raise UserFacingError(f"The checkpoint {path} carries no config; pass config_json=<run>/config.json.")
    cfg = ml_collections.ConfigDict(upgrade_config(json.loads(raw)))    # older runs' fields read as they ran
    meta, complete = checkpoint_meta(state, path, config_json)
    # an old checkpoint: checkpoint_meta said already that it acts in [-1, 1]
    bounds = bounds_from_meta(meta, f"The metadata of checkpoint {path}", say=print if complete else None)
    modules = build_acting_modules(cfg, int(meta["obs_dim"]), int(meta["act_dim"]), torch.device(device))
    saved = state["learner"]["modules"]
    try:
        for name, module in modules.items():
            module.load_state_dict(saved[name])
    except (KeyError, RuntimeError) as e:
        raise UserFacingError(f"The checkpoint {path} does not hold the networks its config describes "
                              f"({str(e).splitlines()[0]}); pass the run's own config_json.") from None
    if weighting:
        cfg.eval.weighting = weighting
    acting = evaluation_policies(cfg, modules)(mode, int(num_candidates))   # the evaluator's own policy
    return Policy(acting, modules, bounds, meta, cfg, device, seed, path, mode, int(num_candidates))


__all__ = ["Policy", "apply_overrides", "checkpoint_meta", "finetune", "find_checkpoint", "load_config_file",
           "load_policy", "pretrain", "resolve_config"]
