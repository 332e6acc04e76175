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

Any other environment (``make_policy_dataset``, ``python -m launch.make_dataset
--env=<gymnasium id> --policy=random|<checkpoint.pt>``): episodes of a uniform
random policy or of a trained checkpoint (plus optional Gaussian noise), with
actions stored in the environment's own units, as it accepts them; ref_min is
the uniform-random return measured as above and ref_max only what is given.

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
    # The same loop as any policy's datasets (collect_episodes): for the recipes' ±1 bounds its noise
    # (σ times the half-range) is this σ, and the datasets are byte for byte those of the loop this
    # function had of its own.
    def policy(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return act(batch, rng) if stochastic else act(batch)

    return collect_episodes(env_id, policy, seed_seq, transitions=num_transitions, noise=noise_std,
                            num_envs=num_envs, log=log, label=label)


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


RANDOM_POLICY = "random"


def _env_label(env_id: str) -> str:
    """'InvertedPendulum-v5' -> 'invertedpendulum', 'ALE/Pong-v5' -> 'ale-pong': one Minari name part."""
    import re

    return re.sub(r"[^a-z0-9_]+", "-", _short_env_name(env_id)).strip("-") or "env"


def default_policy_dataset_id(env_id: str, policy: str) -> str:
    """'InvertedPendulum-v5', 'random' -> 'local/invertedpendulum/random-v0' (a checkpoint: '.../policy-v0')."""
    return f"local/{_env_label(env_id)}/{RANDOM_POLICY if policy == RANDOM_POLICY else 'policy'}-v0"


def _check_action_space(env_id: str, space, need_bounds: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The Box bounds (float64); ``need_bounds`` names what requires them to be finite."""
    import gymnasium as gym

    if not isinstance(space, gym.spaces.Box):
        raise DatasetError(
            f"The environment '{env_id}' has action space {space}, not a continuous box (gymnasium Box); this "
            "platform learns continuous actions only, so it cannot make a dataset for it.")
    low = np.asarray(space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(space.high, dtype=np.float64).reshape(-1)
    if need_bounds and not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise DatasetError(
            f"The environment '{env_id}' has unbounded actions (low {low.tolist()}, high {high.tolist()}), so "
            f"{need_bounds} is undefined; collect with a trained checkpoint (--policy=<checkpoint.pt>) and no "
            "noise, or wrap the environment with finite action bounds.")
    return low, high


def collect_episodes(
    env_id: str,
    act: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    seed_seq: np.random.SeedSequence,
    *,
    episodes: int | None = None,
    transitions: int | None = None,
    noise: float = 0.0,
    num_envs: int = 8,
    log: Log | None = print,
    label: str = "",
) -> list[dict[str, Any]]:
    """Complete episodes of ``act`` on any gymnasium environment, until the budget is met.

    ``act(obs[B, obs_dim], rng) -> actions[B, act_dim]`` gets the flattened
    observations of all ``num_envs`` environments at once (data/goals.py's
    flattening, the learner's) and returns actions in the environment's own
    units; ``noise`` adds N(0, (noise * (high - low) / 2)²) per dimension, so
    one σ means the same share of the range in every environment (and is the
    plain std for ±1 bounds). Actions are clipped to the environment's bounds
    (what it would execute) and stored so. Budget: exactly ``episodes``
    complete episodes, or complete episodes until ``transitions`` are reached
    (the episode that crosses the target is kept whole). Observations are
    stored as the environment returns them (dicts of arrays for Dict spaces).
    """
    import gymnasium as gym

    from data.goals import flatten_one

    if (episodes is None) == (transitions is None):
        raise DatasetError("collect_episodes needs exactly one budget: episodes or transitions.")
    rng = np.random.default_rng(seed_seq)
    envs = [_make_env(env_id) for _ in range(num_envs)]
    obs_space = envs[0].observation_space
    low, high = _check_action_space(env_id, envs[0].action_space, "action noise" if noise > 0 else None)
    half = (high - low) / 2.0
    is_dict = isinstance(obs_space, gym.spaces.Dict)
    reset_seeds = rng.integers(0, 2**31 - 1, size=num_envs)
    fresh = lambda o: {"obs": [o], "act": [], "rew": [], "term": [], "trunc": []}  # noqa: E731
    cur = [fresh(env.reset(seed=int(s))[0]) for env, s in zip(envs, reset_seeds)]
    out: list[dict[str, Any]] = []
    collected = steps = 0
    t0 = last_log = time.perf_counter()

    def done() -> bool:
        return len(out) >= episodes if episodes is not None else collected >= transitions

    try:
        while not done():
            batch = np.stack([flatten_one(obs_space, c["obs"][-1]) for c in cur]).astype(np.float32)
            action = np.asarray(act(batch, rng), dtype=np.float64).reshape(num_envs, -1)
            if noise > 0:
                action = action + noise * half * rng.standard_normal(action.shape)
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
                    if not done():
                        out.append({
                            "observations": ({k: np.stack([o[k] for o in c["obs"]]) for k in obs_space.spaces}
                                             if is_dict else np.asarray(c["obs"])),
                            "actions": np.asarray(c["act"], dtype=np.float32),
                            "rewards": np.asarray(c["rew"], dtype=np.float64),
                            "terminations": np.asarray(c["term"], dtype=bool),
                            "truncations": np.asarray(c["trunc"], dtype=bool),
                        })
                        collected += len(c["rew"])
                    cur[i] = fresh(env.reset()[0])
            now = time.perf_counter()
            if log is not None and (now - last_log > 5.0 or done()):
                last_log = now
                target = f"{len(out)}/{episodes} episodes" if episodes is not None else \
                    f"{min(collected, transitions)}/{transitions} transitions in {len(out)} episodes"
                log(f"[{label or env_id}] {target}, {steps} env steps, {steps / max(now - t0, 1e-9):.0f} steps/s")
    finally:
        for env in envs:
            env.close()
    return out


def make_policy_dataset(
    env_id: str,
    policy: str | Callable[[np.ndarray], np.ndarray] = RANDOM_POLICY,
    *,
    episodes: int | None = None,
    transitions: int | None = None,
    noise: float = 0.0,
    seed: int = 0,
    dataset_id: str | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    ref_episodes: int = 10,
    num_envs: int = 8,
    policy_label: str | None = None,
    overwrite: bool = False,
    log: Log | None = print,
) -> dict[str, Any]:
    """A Minari dataset for any registered gymnasium environment, in the platform's layout.

    Why: the behaviour-policy recipes exist for Hopper, HalfCheetah and PointMaze only, and
    minari's own DataCollector needs jax; this collects with ``collect_episodes`` and writes with
    ``data.minari_io.write_minari``, so the result loads like every other dataset (env spec,
    reference scores, terminations apart from truncations).

    ``policy``: ``"random"`` (uniform over the action box) or a callable ``act(obs[B, obs_dim])
    -> actions[B, act_dim]`` in the environment's units, e.g. ``launch.api.load_policy(ckpt).act``
    (``policy_label`` then says what it is, for the id and the description). ``noise``: Gaussian
    action noise as a share of each dimension's half-range (``collect_episodes``); uniform random
    actions take none. Budget: ``episodes`` or ``transitions`` (exactly one). Reference scores:
    ``ref_min_score`` defaults to the mean return of a uniform random policy over ``ref_episodes``
    episodes (D4RL's random reference; seeded), ``ref_max_score`` to none (normalised scores then
    need ``--config.reference_scores=min,max`` at training time). The default id is
    ``local/<env>/random-v0`` or ``local/<env>/policy-v0``.
    """
    from data.minari_io import check_writable, write_minari
    from errors import ConfigError

    is_random = isinstance(policy, str)
    if is_random and policy != RANDOM_POLICY:
        raise ConfigError(f"policy={policy!r}: give 'random' or a callable act(obs) (python -m launch.make_dataset "
                          "loads a checkpoint for --policy=path/to/checkpoint.pt).")
    if (episodes is None) == (transitions is None):
        raise ConfigError("Give exactly one budget: --episodes=N (complete episodes) or --transitions=N "
                          "(complete episodes until N transitions).")
    budget = episodes if episodes is not None else transitions
    if int(budget) < 1:
        raise ConfigError(f"--{'episodes' if episodes is not None else 'transitions'} must be at least 1, "
                          f"got {budget}.")
    if not (noise >= 0 and np.isfinite(noise)):
        raise ConfigError(f"--noise must be a finite number >= 0 (a share of each action's half-range), got {noise}.")
    if is_random and noise > 0:
        raise ConfigError(f"--noise={noise} adds Gaussian noise to a policy's actions; uniform random actions "
                          "(--policy=random) are as spread as they can be already. Leave it out, or collect with a "
                          "checkpoint (--policy=path/to/checkpoint.pt --noise=...).")
    if ref_episodes < 1 or num_envs < 1:
        raise ConfigError("--ref_episodes and --num_envs must be at least 1.")
    for name, value in (("ref_min_score", ref_min_score), ("ref_max_score", ref_max_score)):
        if value is not None and not np.isfinite(value):
            raise ConfigError(f"--{name} must be a finite number, got {value}.")
    if ref_min_score is not None and ref_max_score is not None and not ref_min_score < ref_max_score:
        raise ConfigError(f"--ref_min_score={ref_min_score} must be below --ref_max_score={ref_max_score} (the "
                          "returns that score 0 and 100).")

    label = RANDOM_POLICY if is_random else (policy_label or getattr(policy, "__qualname__", "policy"))
    dataset_id = dataset_id or default_policy_dataset_id(env_id, RANDOM_POLICY if is_random else "policy")
    check_writable(dataset_id, overwrite)
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()

    probe = _make_env(env_id)         # a bad id fails here, before any collection, with make_raw_env's message
    try:
        spec = probe.spec   # recorded as the dataset's env: it names the entry point, so an env of your own
        #                     (--env=my_module:MyEnv-v0) is rebuilt wherever my_module is importable
        low, high = _check_action_space(env_id, probe.action_space, "a uniform random policy" if is_random else None)
    finally:
        probe.close()
    if spec is None or spec.max_episode_steps is None:
        raise DatasetError(
            f"The environment '{env_id}' has no time limit (max_episode_steps), so an episode that never "
            "terminates would never end the collection; register it with max_episode_steps "
            "(gymnasium.register(..., max_episode_steps=1000)).")
    ref_seq, roll_seq = np.random.SeedSequence(int(seed)).spawn(2)
    if is_random:
        def act(obs, rng):
            return rng.uniform(low, high, size=(obs.shape[0], low.shape[0]))
    else:
        def act(obs, rng):
            return policy(obs)
    episodes_out = collect_episodes(env_id, act, roll_seq, episodes=episodes, transitions=transitions,
                                    noise=float(noise), num_envs=int(num_envs), log=log,
                                    label=f"{dataset_id} {label}")

    ref_note = "given"
    if ref_min_score is None:
        if np.isfinite(low).all() and np.isfinite(high).all():
            say(f"[{dataset_id}] measuring the random-policy reference over {ref_episodes} episodes")
            ref_min_score = random_policy_return(env_id, ref_seq, int(ref_episodes))
            ref_note = f"mean return of a uniform random policy over {ref_episodes} episodes (seeded)"
        else:
            ref_note = "none (unbounded actions have no uniform random policy)"
    if ref_min_score is not None and ref_max_score is not None and not ref_min_score < ref_max_score:
        raise DatasetError(
            f"The measured random-policy return {ref_min_score:g} is not below --ref_max_score={ref_max_score:g}; "
            "give a ref_max_score above it (the return that should score 100), or --ref_min_score too.")

    collection = {"env_id": env_id, "policy": label, "noise": float(noise), "seed": int(seed),
                  "episodes": episodes, "transitions": transitions, "num_envs": int(num_envs),
                  "ref_episodes": int(ref_episodes)}
    description = (
        f"Dataset for {env_id} made locally by data/make.py (make_policy_dataset): "
        + ("uniform random actions" if is_random else f"actions of the policy {label}")
        + (f" plus Gaussian noise of {noise} x the half-range" if noise else "")
        + f", in the environment's units. ref_min_score: {ref_note}; ref_max_score: "
        + ("given" if ref_max_score is not None else "none")
        + f". Collection: {json.dumps(collection)}")
    path = write_minari(dataset_id, episodes_out, env_spec_json=spec.to_json(), ref_min=ref_min_score,
                        ref_max=ref_max_score,
                        description=description, algorithm_name=f"data/make.py {label} (noise {noise})",
                        code_permalink="data/make.py", overwrite=overwrite)

    returns = np.asarray([e["rewards"].sum() for e in episodes_out], dtype=np.float64)
    summary = {
        "dataset_id": dataset_id, "path": str(path), "env_id": env_id, "policy": label, "noise": float(noise),
        "seed": int(seed), "episodes": len(episodes_out),
        "transitions": int(sum(len(e["rewards"]) for e in episodes_out)),
        "return_mean": float(returns.mean()), "return_std": float(returns.std()),
        "return_min": float(returns.min()), "return_max": float(returns.max()),
        "ref_min_score": ref_min_score, "ref_max_score": ref_max_score,
        "seconds": time.perf_counter() - t0,
    }
    refs = ", ".join(f"{k} {summary[k]:.1f}" if summary[k] is not None else f"no {k}"
                     for k in ("ref_min_score", "ref_max_score"))
    say(f"[{dataset_id}] wrote {summary['transitions']} transitions in {summary['episodes']} episodes "
        f"({label} actions" + (f", noise {noise}" if noise else "") + f") to {path} in {summary['seconds']:.1f}s; "
        f"return mean {summary['return_mean']:.1f} std {summary['return_std']:.1f} min {summary['return_min']:.1f} "
        f"max {summary['return_max']:.1f}; {refs}. Train on it with --config.dataset={dataset_id}.")
    return summary


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
