"""Local D4RL-style datasets, because the real ones cannot be downloaded here.

D4RL's recipe (Fu et al. 2020, section 5): "medium" is data from one policy
trained online (SAC) to about a third of expert return, acting stochastically,
i.e. actions sampled from SAC's tanh-Gaussian actor; "medium-replay" is the
replay buffer of that training run, i.e. a mixture of increasingly good
policies. We reproduce both with the behaviour policies of ``data/behavior``
(snapshots ``medium`` and ``replay0..3`` of one SAC run), with one of two
action recipes (``actions``):

* ``"stochastic"`` (D4RL-faithful, the default; ids ``local/<env>/<kind>-v1``):
  each action is one sample a = tanh(mu(s) + sigma(s) * eps) of the whole SAC
  actor (``load_stochastic_policy``), eps drawn from the dataset's seed; no
  extra noise. The action spread is the policy's own, state-dependent.
* ``"mean-noise"`` (the earlier recipe, kept as a variant; ids
  ``local/<env>/<kind>-v0``): the actor's deterministic mean tanh(mu(s))
  plus isotropic Gaussian noise of std ``MEDIUM_NOISE_STD = 0.1``, clipped to
  [-1, 1]. Unlike D4RL, the spread is the same in every state and dimension.
  By default it uses the frozen mean-path files of ``data/behavior/weights/v0``
  (an earlier SAC run whose log-std heads were not kept), so the -v0 ids
  build the same data as before the behaviour policies were retrained; pass
  ``policy_loader`` to apply it to other weights.

Both recipes are measured side by side in ``docs/datasets.md``. A Minari id's
data never change under the same name: a new recipe gets a new ``-vN``.

* medium: rollouts of the medium policy.
* medium-replay: equal transition budgets from replay0, replay1, replay2,
  replay3, in that order (oldest first, as a replay buffer fills). Poor early
  snapshots end episodes early, so they contribute many short, low-return
  episodes, as in D4RL. (D4RL stored the SAC run's actual buffer; rolling
  out its snapshots is the reproducible stand-in.)

Reference scores: ref_min = mean return of a uniform-random policy measured
here with the dataset's seed (D4RL's definition of its random reference,
re-measured because our environments are the v5 versions); ref_max = D4RL's
expert reference (Hopper 3234.3, HalfCheetah 12135.0) so that normalised
scores stay comparable with published tables.

Everything is drawn from ``numpy.random.SeedSequence(seed)``: the same seed
gives identical arrays. Only complete episodes are stored, so a dataset holds
at least ``num_transitions`` transitions (it stops after the episode that
crosses the target): a cut-off episode would look like a short, poor episode
and distort the locomotion reward scale.
"""

from __future__ import annotations

import fcntl
import inspect
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from errors import DatasetError

KINDS = ("medium", "medium-replay")
STOCHASTIC, MEAN_NOISE = "stochastic", "mean-noise"
ACTION_RECIPES = (STOCHASTIC, MEAN_NOISE)  # the first is the default
# The -vN of the local ids each recipe is registered under (never reuse a version).
RECIPE_VERSION = {MEAN_NOISE: 0, STOCHASTIC: 1}
MEDIUM_NOISE_STD = 0.1
# Extra Gaussian action noise when none is given: only the mean-noise recipe adds any.
DEFAULT_NOISE_STD = {STOCHASTIC: 0.0, MEAN_NOISE: MEDIUM_NOISE_STD}
REPLAY_LEVELS = ("replay0", "replay1", "replay2", "replay3")
# D4RL REF_MAX_SCORE (d4rl/infos.py), the expert reference of each task.
D4RL_EXPERT_SCORES = {"Hopper-v5": 3234.3, "HalfCheetah-v5": 12135.0}
SUPPORTED_ENVS = tuple(D4RL_EXPERT_SCORES)
EMBEDDED_DEFAULT = "local/hopper/medium-v0"

Log = Callable[[str], None]


def _short_env_name(env_id: str) -> str:
    return env_id.split("-v")[0].lower()


def default_dataset_id(env_id: str, kind: str, actions: str = STOCHASTIC) -> str:
    """'Hopper-v5', 'medium' -> 'local/hopper/medium-v1' ('mean-noise' -> '...-v0')."""
    if actions not in RECIPE_VERSION:
        from errors import ConfigError

        raise ConfigError(f"Action recipe '{actions}' is unknown; choose one of {', '.join(ACTION_RECIPES)}.")
    return f"local/{_short_env_name(env_id)}/{kind}-v{RECIPE_VERSION[actions]}"


@dataclass(frozen=True)
class DatasetRecipe:
    """Everything that determines a made dataset (recorded in its description).

    ``noise_std=None`` means the recipe's default (``DEFAULT_NOISE_STD``).
    """

    env_id: str
    kind: str
    num_transitions: int = 100_000
    seed: int = 0
    noise_std: float | None = None
    ref_episodes: int = 10
    num_envs: int = 8
    actions: str = STOCHASTIC


# Datasets that `ensure_default_dataset` may build on first use: -v0 the
# mean-plus-noise variant, -v1 the D4RL-faithful stochastic actor.
DEFAULT_DATASETS: dict[str, DatasetRecipe] = {
    default_dataset_id(env, kind, actions): DatasetRecipe(env, kind, actions=actions)
    for env in SUPPORTED_ENVS for kind in KINDS for actions in ACTION_RECIPES
}


def _check_recipe(r: DatasetRecipe) -> None:
    from errors import ConfigError

    if r.env_id not in SUPPORTED_ENVS:
        raise ConfigError(
            f"Cannot make datasets for env '{r.env_id}': behaviour policies and expert "
            f"references exist for {', '.join(SUPPORTED_ENVS)} only."
        )
    if r.kind not in KINDS:
        raise ConfigError(f"Dataset kind '{r.kind}' is unknown; choose one of {', '.join(KINDS)}.")
    if r.actions not in ACTION_RECIPES:
        raise ConfigError(
            f"Action recipe '{r.actions}' is unknown; choose one of {', '.join(ACTION_RECIPES)} "
            f"('{STOCHASTIC}': samples of the SAC actor, as D4RL; '{MEAN_NOISE}': its mean plus "
            "Gaussian noise).")
    if r.num_transitions < 1:
        raise ConfigError(f"num_transitions must be positive, got {r.num_transitions}.")
    if r.noise_std is None or r.noise_std < 0:
        raise ConfigError(f"noise_std must be >= 0, got {r.noise_std}.")
    if r.ref_episodes < 1 or r.num_envs < 1:
        raise ConfigError("ref_episodes and num_envs must be at least 1.")


def _make_env(env_id: str):
    from data.dataset import make_raw_env

    return make_raw_env(env_id)


def rollout_episodes(
    env_id: str,
    act: Callable[..., np.ndarray],
    num_transitions: int,
    seed_seq: np.random.SeedSequence,
    noise_std: float,
    num_envs: int = 8,
    log: Log | None = print,
    label: str = "",
    stochastic: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Complete episodes of ``act`` + N(0, noise_std²), until the target is reached.

    ``stochastic``: ``act(obs, rng)`` samples the actions itself, from the
    rollout's generator (seeded by ``seed_seq``, after the reset seeds);
    otherwise ``act(obs)`` is deterministic. The policy sees all ``num_envs``
    observations at once (one batched call per step), and the batch never
    changes size, so the computation (and the result) does not depend on when
    episodes end.
    """
    rng = np.random.default_rng(seed_seq)
    envs = [_make_env(env_id) for _ in range(num_envs)]
    low, high = envs[0].action_space.low, envs[0].action_space.high
    reset_seeds = rng.integers(0, 2**31 - 1, size=num_envs)
    cur = []
    for env, s in zip(envs, reset_seeds):
        obs, _ = env.reset(seed=int(s))
        cur.append({"obs": [obs], "act": [], "rew": [], "term": [], "trunc": []})
    episodes: list[dict[str, np.ndarray]] = []
    collected = steps = 0
    t0 = last_log = time.perf_counter()
    try:
        while collected < num_transitions:
            batch = np.stack([c["obs"][-1] for c in cur]).astype(np.float32)
            action = act(batch, rng) if stochastic else act(batch)
            action = np.asarray(action, dtype=np.float64).reshape(num_envs, -1)
            if noise_std > 0:
                action = action + noise_std * rng.standard_normal(action.shape)
            action = np.clip(action, low, high).astype(np.float32)
            for i, env in enumerate(envs):
                obs, r, term, trunc, _ = env.step(action[i])
                steps += 1
                c = cur[i]
                c["obs"].append(obs)
                c["act"].append(action[i])
                c["rew"].append(float(r))
                c["term"].append(bool(term))
                c["trunc"].append(bool(trunc))
                if term or trunc:
                    if collected < num_transitions:
                        episodes.append({
                            "observations": np.asarray(c["obs"]),
                            "actions": np.asarray(c["act"], dtype=np.float32),
                            "rewards": np.asarray(c["rew"], dtype=np.float64),
                            "terminations": np.asarray(c["term"], dtype=bool),
                            "truncations": np.asarray(c["trunc"], dtype=bool),
                        })
                        collected += len(c["rew"])
                    obs, _ = env.reset()
                    cur[i] = {"obs": [obs], "act": [], "rew": [], "term": [], "trunc": []}
            now = time.perf_counter()
            if log is not None and (now - last_log > 5.0 or collected >= num_transitions):
                last_log = now
                log(f"[{label or env_id}] {min(collected, num_transitions)}/{num_transitions} "
                    f"transitions in {len(episodes)} complete episodes, {steps} env steps, "
                    f"{steps / max(now - t0, 1e-9):.0f} steps/s")
    finally:
        for env in envs:
            env.close()
    return episodes


def random_policy_return(env_id: str, seed_seq: np.random.SeedSequence, episodes: int) -> float:
    """D4RL's random reference: mean return of uniform actions over whole episodes."""
    rng = np.random.default_rng(seed_seq)
    env = _make_env(env_id)
    low, high = env.action_space.low, env.action_space.high
    returns = []
    try:
        env.reset(seed=int(rng.integers(0, 2**31 - 1)))
        for k in range(episodes):
            if k:
                env.reset()
            total, done = 0.0, False
            while not done:
                _, r, term, trunc, _ = env.step(rng.uniform(low, high).astype(np.float32))
                total += float(r)
                done = term or trunc
            returns.append(total)
    finally:
        env.close()
    return float(np.mean(returns))


def _load_policies(env_id: str, levels, loader, actions: str) -> dict[str, Any]:
    if loader is None:
        try:
            from data.behavior import policy as behavior
        except ImportError as e:
            raise DatasetError(
                f"Behaviour policies are not available ({e}); datasets cannot be made without "
                "data/behavior/policy.py and its weights (data/behavior/weights/)."
            ) from None
        if actions == STOCHASTIC:
            loader = behavior.load_stochastic_policy
        else:  # the frozen files the -v0 ids were made from, so their data never change
            def loader(env_id: str, level: str):
                return behavior.load_behavior_policy(env_id, level, weights_dir=behavior.V0_WEIGHTS_DIR)
    policies = {lv: loader(env_id, lv) for lv in levels}
    if actions == STOCHASTIC:
        for lv, policy in policies.items():
            try:
                takes_rng = len(inspect.signature(policy.act).parameters) >= 2
            except (TypeError, ValueError):
                takes_rng = True
            if not takes_rng:
                raise DatasetError(
                    f"The '{STOCHASTIC}' recipe samples actions with act(obs, rng), but the "
                    f"behaviour policy loaded for {env_id} level '{lv}' ({type(policy).__name__}) "
                    f"only has a deterministic act(obs); load it with load_stochastic_policy or use "
                    f"the '{MEAN_NOISE}' recipe.")
    return policies


def make_dataset(
    env_id: str,
    kind: str,
    num_transitions: int = 100_000,
    seed: int = 0,
    dataset_id: str | None = None,
    noise_std: float | None = None,
    ref_episodes: int = 10,
    num_envs: int = 8,
    overwrite: bool = False,
    policy_loader: Callable[[str, str], Any] | None = None,
    log: Log | None = print,
    actions: str = STOCHASTIC,
) -> dict[str, Any]:
    """Collect, write as a Minari dataset and return a summary dict.

    ``actions`` picks the recipe (module docstring): ``"stochastic"`` (the
    default) or ``"mean-noise"``; ``noise_std=None`` is the recipe's default
    extra noise (0 and 0.1). ``policy_loader(env_id, level)`` returns the
    behaviour policy: for ``"stochastic"`` an object with ``act(obs[B,
    obs_dim], rng) -> actions[B, act_dim]`` that samples using the numpy
    Generator ``rng`` (default ``load_stochastic_policy``), for
    ``"mean-noise"`` one with a deterministic ``act(obs)`` (default
    ``load_behavior_policy`` of the frozen ``weights/v0`` files). Tests
    inject other policies.
    """
    from data.minari_io import check_writable, write_minari

    if noise_std is None:
        noise_std = DEFAULT_NOISE_STD.get(actions, 0.0)
    recipe = DatasetRecipe(env_id, kind, int(num_transitions), int(seed), float(noise_std),
                           int(ref_episodes), int(num_envs), str(actions))
    _check_recipe(recipe)
    dataset_id = dataset_id or default_dataset_id(env_id, kind, actions)
    check_writable(dataset_id, overwrite)
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()

    levels = ("medium",) if kind == "medium" else REPLAY_LEVELS
    policies = _load_policies(env_id, levels, policy_loader, recipe.actions)
    stochastic = recipe.actions == STOCHASTIC
    ref_seq, *level_seqs = np.random.SeedSequence(recipe.seed).spawn(1 + len(levels))

    budgets = [num_transitions // len(levels)] * len(levels)
    budgets[-1] += num_transitions - sum(budgets)
    episodes: list[dict[str, np.ndarray]] = []
    for level, budget, seq in zip(levels, budgets, level_seqs):
        if budget <= 0:
            continue
        episodes += rollout_episodes(env_id, policies[level].act, budget, seq, recipe.noise_std,
                                     recipe.num_envs, log, label=f"{dataset_id} {level}",
                                     stochastic=stochastic)

    say(f"[{dataset_id}] measuring the random-policy reference over {ref_episodes} episodes")
    ref_min = random_policy_return(env_id, ref_seq, recipe.ref_episodes)
    ref_max = D4RL_EXPERT_SCORES[env_id]

    how = (f"actions sampled from the stochastic SAC actor, tanh(mu + sigma * eps)"
           + (f", plus Gaussian action noise std {recipe.noise_std}" if recipe.noise_std else
              ", no extra noise")
           if stochastic else
           f"the actor's deterministic mean with Gaussian action noise std {recipe.noise_std}")
    if policy_loader is not None:
        how += " (behaviour policies from an injected policy_loader)"
    elif stochastic:
        how += " (behaviour policies data/behavior/weights/<env>_<level>_stochastic.pt)"
    else:
        how += " (behaviour policies data/behavior/weights/v0/<env>_<level>.pt)"
    description = (
        f"D4RL-style '{kind}' dataset for {env_id} made locally by data/make.py: "
        + ("medium behaviour policy" if kind == "medium" else "behaviour snapshots replay0-replay3, "
           "equal transition budgets")
        + f", {how}. ref_min_score = mean return of a uniform "
        f"random policy over {ref_episodes} episodes (seeded); ref_max_score = D4RL expert "
        f"reference. Recipe: {json.dumps(asdict(recipe))}"
    )
    path = write_minari(dataset_id, episodes, env_id=env_id, ref_min=ref_min, ref_max=ref_max,
                        description=description,
                        algorithm_name=f"data/make.py {kind} ({recipe.actions}, noise std {recipe.noise_std})",
                        code_permalink="data/make.py", overwrite=overwrite)

    returns = np.asarray([e["rewards"].sum() for e in episodes], dtype=np.float64)
    mean_ret = float(returns.mean())
    summary = {
        "dataset_id": dataset_id,
        "path": str(path),
        "env_id": env_id,
        "kind": kind,
        "actions": recipe.actions,
        "noise_std": recipe.noise_std,
        "seed": recipe.seed,
        "episodes": len(episodes),
        "transitions": int(sum(len(e["rewards"]) for e in episodes)),
        "return_mean": mean_ret,
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "ref_min_score": ref_min,
        "ref_max_score": ref_max,
        "normalized_score": 100.0 * (mean_ret - ref_min) / (ref_max - ref_min),
        "seconds": time.perf_counter() - t0,
    }
    say(format_summary(summary))
    return summary


def read_recipe(dataset_id: str) -> DatasetRecipe | None:
    """The recipe a dataset made by ``make_dataset`` records in its description, else None.

    Datasets written before recipes had ``actions`` were all mean-plus-noise.
    """
    from minari.dataset.minari_storage import MinariStorage

    from data.minari_io import _dataset_dir

    description = MinariStorage.read(_dataset_dir(dataset_id) / "data").metadata.get("description") or ""
    marker = "Recipe: "
    if marker not in description:
        return None
    fields = json.loads(description[description.rindex(marker) + len(marker):])
    fields.setdefault("actions", MEAN_NOISE)
    return DatasetRecipe(**fields)


def load_recipe_policies(env_id: str, kind: str, actions: str,
                         policy_loader: Callable[[str, str], Any] | None = None) -> dict[str, Any]:
    """{level: behaviour policy} as ``make_dataset`` loads them for this recipe."""
    levels = ("medium",) if kind == "medium" else REPLAY_LEVELS
    return _load_policies(env_id, levels, policy_loader, actions)


def format_summary(s: dict[str, Any]) -> str:
    return (
        f"[{s['dataset_id']}] wrote {s['transitions']} transitions in {s['episodes']} episodes "
        f"({s.get('actions', MEAN_NOISE)} actions, extra noise std {s.get('noise_std', MEDIUM_NOISE_STD)}) "
        f"to {s['path']} in {s['seconds']:.1f}s; return mean {s['return_mean']:.1f} "
        f"std {s['return_std']:.1f} min {s['return_min']:.1f} max {s['return_max']:.1f}; "
        f"normalised score {s['normalized_score']:.1f} "
        f"(ref_min {s['ref_min_score']:.1f} random policy, ref_max {s['ref_max_score']:.1f} D4RL expert)"
    )


@contextmanager
def _store_lock(dataset_id: str):
    """Serialise builders: a learner and actors may start at the same moment."""
    from data.minari_io import minari_store

    lock_path = minari_store() / f".{dataset_id.replace('/', '__')}.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_default_dataset(dataset_id: str = EMBEDDED_DEFAULT, log: Log | None = print,
                           policy_loader: Callable[[str, str], Any] | None = None) -> str:
    """Build a registered local dataset the first time it is asked for.

    The platform must run out of the box without downloads, so its default
    dataset (``EMBEDDED_DEFAULT``, 100k transitions, well under a minute) and
    the other ids of ``DEFAULT_DATASETS`` (``local/{hopper,halfcheetah}/
    {medium,medium-replay}-v0`` mean-plus-noise, ``-v1`` stochastic actor, and
    ``local/pointmaze/{umaze,medium,large}[-dense]-v0`` of data/pointmaze.py) are
    made on first use. Existing datasets, HDF5 paths and ids that are present
    are returned untouched; an unknown missing id gets the usual "not found"
    message.
    """
    from data import is_hdf5_path
    from data.minari_io import list_local_minari_ids, minari_dataset_exists, minari_store
    from data.validate import unknown_dataset_error

    from data.pointmaze import DEFAULT_POINTMAZE_DATASETS, make_pointmaze_dataset

    if is_hdf5_path(dataset_id) or minari_dataset_exists(dataset_id):
        return dataset_id
    recipe = DEFAULT_DATASETS.get(dataset_id)
    maze_recipe = DEFAULT_POINTMAZE_DATASETS.get(dataset_id)
    if recipe is None and maze_recipe is None:
        raise unknown_dataset_error(dataset_id, list_local_minari_ids(), str(minari_store()))
    with _store_lock(dataset_id):
        if minari_dataset_exists(dataset_id):  # another process built it meanwhile
            return dataset_id
        if maze_recipe is not None:
            if log is not None:
                log(f"[{dataset_id}] not in the local Minari store {minari_store()}; building it once by D4RL's "
                    f"maze2d recipe ({maze_recipe.num_transitions} transitions, seed {maze_recipe.seed}).")
            make_pointmaze_dataset(**asdict(maze_recipe), dataset_id=dataset_id, log=log)
            return dataset_id
        if log is not None:
            log(f"[{dataset_id}] not in the local Minari store {minari_store()}; building it once "
                f"from the behaviour policies ({recipe.actions} actions, {recipe.num_transitions} "
                f"transitions, seed {recipe.seed}).")
        make_dataset(**asdict(recipe), dataset_id=dataset_id, policy_loader=policy_loader, log=log)
    return dataset_id
