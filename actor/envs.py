"""Environments for acting and evaluation, rebuilt from the dataset.

The policy is trained on the dataset's flattened observations, so the env
must be the one the data came from (the stored gymnasium spec pins kwargs
and time limit; for Minari datasets the evaluation spec, e.g. AntMaze's
fixed-goal map) and must flatten dict observations exactly as the loader
does: ``FlatObservation`` calls the loader's own code (``data/goals.py``,
which documents the order: achieved_goal, desired_goal, observation). The references never
seeded their environments; here every env is seeded from the run seed, and
collection and evaluation are expected to use separate envs (separate calls).

Actions: policies act in [−1, 1] (data/bounds.py); ``make_env`` given action bounds other than ±1
(an ``OfflineDataset`` carries its own) wraps the env in ``NormalizedActions``, which maps them
into the environment's units, so actors, the evaluator and the replay all see [−1, 1] actions.
"""

from __future__ import annotations

from typing import Union

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from data.bounds import ActionBounds
from data.dataset import OfflineDataset, make_raw_env, needs_flattening
from data.goals import flatten_one
from errors import ConfigError

EnvSource = Union[OfflineDataset, str, EnvSpec]


class FlatObservation(gym.ObservationWrapper):
    """Dict observations -> the flat float32 vector of the dataset (same function as the loader)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._dict_space = env.observation_space
        dim = int(gym.spaces.flatdim(self._dict_space))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    def observation(self, observation):
        return flatten_one(self._dict_space, observation)


class NormalizedActions(gym.ActionWrapper):
    """Takes actions in [−1, 1] and hands the environment a = low + (a_norm + 1)(high − low)/2.

    Why a wrapper: every acting path (actors' vector envs, the evaluator, pretraining evaluations)
    builds its envs here, so one place maps the policy's box onto the environment's. Its action
    space is [−1, 1], so random exploration drawn from it is in the learner's units too.
    """

    def __init__(self, env: gym.Env, bounds: ActionBounds):
        super().__init__(env)
        self.bounds = bounds
        self.action_space = gym.spaces.Box(-1.0, 1.0, (bounds.act_dim,), np.float32)

    def action(self, action):
        return self.bounds.denormalize(action)


class SeedOnFirstReset(gym.Wrapper):
    """Seeds the first ``reset()`` even when the caller passes no seed.

    Callers (and vector envs) usually call ``reset()`` without a seed; this
    makes the first episode, and through the env's RNG all later ones,
    reproducible without every caller threading the seed through.
    """

    def __init__(self, env: gym.Env, seed: int):
        super().__init__(env)
        self._pending_seed: int | None = int(seed)

    def reset(self, *, seed=None, options=None):
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)


def _resolve(source: EnvSource) -> tuple[str, str | None]:
    if isinstance(source, OfflineDataset):
        return source.env_id, source.env_spec_json
    if isinstance(source, EnvSpec):
        return source.id, source.to_json()
    text = str(source).strip()
    if text.startswith("{"):  # a spec serialised with EnvSpec.to_json
        from data.dataset import parse_env_spec_json

        return parse_env_spec_json(text).id, text
    return text, None


def make_env(source: EnvSource, seed: int, action_bounds: ActionBounds | None = None, **make_kwargs) -> gym.Env:
    """One seeded env with flat observations; terminated/truncated stay separate.

    ``source`` is an ``OfflineDataset`` (preferred: its stored spec is used),
    a gymnasium id, an ``EnvSpec`` or its JSON. ``action_bounds`` (default: the
    dataset's own, for an ``OfflineDataset``) other than ±1 make the env take
    actions in [−1, 1] (``NormalizedActions``); none, or ±1, leave its actions as
    they are. ``make_kwargs`` go to ``gym.make`` (e.g. ``render_mode``).
    """
    env_id, spec_json = _resolve(source)
    if action_bounds is None and isinstance(source, OfflineDataset):
        action_bounds = source.action_bounds
    env = make_raw_env(env_id, spec_json, **make_kwargs)
    if needs_flattening(env.observation_space):
        env = FlatObservation(env)
    if action_bounds is not None and not action_bounds.is_identity:
        env = NormalizedActions(env, action_bounds)
    env.action_space.seed(int(seed))
    env.observation_space.seed(int(seed))
    return SeedOnFirstReset(env, int(seed))


def make_vector_env(
    source: EnvSource,
    num_envs: int,
    seed: int,
    autoreset_mode: str | AutoresetMode = AutoresetMode.SAME_STEP,
    action_bounds: ActionBounds | None = None,
    **make_kwargs,
) -> SyncVectorEnv:
    """``num_envs`` copies seeded ``seed, seed+1, ...``, stepped in one process.

    Same-step autoreset is the default because every step then yields a
    usable transition: when a sub-env finishes, the returned observation is
    already the reset one and the true s' is ``info["final_obs"][i]``
    (with ``terminated``/``truncated`` still separate). The next-step mode
    instead spends one step per episode on a reset whose action is ignored,
    which actors would have to skip. ``action_bounds``: as for ``make_env``.
    """
    if int(num_envs) < 1:
        raise ConfigError(f"num_envs must be at least 1, got {num_envs}.")
    fns = [
        (lambda i=i: make_env(source, int(seed) + i, action_bounds=action_bounds, **make_kwargs))
        for i in range(int(num_envs))
    ]
    venv = SyncVectorEnv(fns, autoreset_mode=autoreset_mode)
    venv.action_space.seed(int(seed))
    venv.observation_space.seed(int(seed))
    return venv


__all__ = ["EnvSource", "FlatObservation", "NormalizedActions", "SeedOnFirstReset", "make_env", "make_vector_env"]
