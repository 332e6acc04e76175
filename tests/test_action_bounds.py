"""Any box action space: the learner and μ work in [−1, 1], data and actions map from/to the env's bounds.

Before this, every stored action was clipped to ±0.99999 and every actor action to ±1 whatever the
environment's box, so a Pendulum-v1 (±2) or InvertedPendulum-v5 (±3) policy could never push harder
than 1. Here real datasets of those environments (written to a temp Minari store) whose actions sit
near 2.5 (beyond ±1) are pretrained on, and the policy loaded by `launch.api.load_policy`, the online
actor and the environments must all act near the data's actions in the environment's units: the
old clip (≤ 1), or a map missing on either side, misses them by 0.8 or more.
"""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from actor.envs import NormalizedActions, make_env, make_vector_env
from data import load_dataset
from data.bounds import ACTION_CLIP, ActionBounds, parse_override
from data.minari_io import write_minari
from errors import ConfigError, UserFacingError
from tests.conftest import _env_var

TARGET, SPREAD = 2.5, 0.2
TOLERANCE = 0.35      # the old ±1 clip gives ≤ 1, a forgotten map back 0.83 (InvertedPendulum) or 1.0 (Pendulum)


class UnboundedPoint(gym.Env):
    """A 1-d point pushed by an action whose space is unbounded (no scale to map [-1, 1] onto)."""

    metadata: dict = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.last_action = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = np.zeros(2, np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.last_action = np.asarray(action, dtype=np.float32).copy()
        self.x = self.x + np.float32(0.01) * float(self.last_action[0])
        return self.x.copy(), -float(abs(self.x[0])), False, False, {}


UNBOUNDED_ID = "TestUnboundedPoint-v0"
if UNBOUNDED_ID not in gym.registry:
    gym.register(UNBOUNDED_ID, entry_point="tests.test_action_bounds:UnboundedPoint", max_episode_steps=20)


def collect(env_id: str, transitions: int, seed: int = 0, action_fn=None) -> list[dict]:
    """Real episodes of `env_id` whose actions are TARGET + N(0, SPREAD²), clipped to the env's bounds
    as the environment accepts them (or `action_fn(rng, low, high)`)."""
    env = gym.make(env_id)
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng(seed)
    episodes, total = [], 0
    while total < transitions:
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        ep = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        while True:
            a = action_fn(rng, low, high) if action_fn else np.clip(TARGET + SPREAD * rng.standard_normal(low.shape),
                                                                     low, high)
            obs, r, term, trunc, _ = env.step(np.asarray(a, np.float32))
            for k, v in (("observations", obs), ("actions", a), ("rewards", r), ("terminations", term),
                         ("truncations", trunc)):
                ep[k].append(v)
            total += 1
            if term or trunc or total >= transitions:
                ep["truncations"][-1] = ep["truncations"][-1] or not term
                break
        episodes.append({k: np.asarray(v, dtype=np.float32 if k == "actions" else None) for k, v in ep.items()})
    env.close()
    return episodes


TINY = {"num_critic_steps": 300, "num_actor_steps": 300, "critic_batch_size": 64, "actor_batch_size": 64,
        "critic_hidden": (32, 32), "diffusion": {"width": 32, "inner": 64, "num_blocks": 1, "dropout": 0.0,
                                                 "lr": 1e-3, "cosine_decay": False, "ema": 0.05},
        "eval": {"interval": 300, "episodes": 1, "max_episode_steps": 5, "modes": ("argmax",),
                 "num_candidates": (4,)},
        "log_interval": 300, "checkpoint_interval": 300, "wandb": {"mode": "disabled"}, "num_threads": 1,
        "reward_scale": "none"}     # InvertedPendulum pushed at 2.5 falls after 3 steps in every episode


@pytest.fixture(scope="module", params=["InvertedPendulum-v5", "Pendulum-v1"])
def pretrained(request, tmp_path_factory):
    """(env id, Minari store, run directory, data actions) of a tiny pretraining on real env data near 2.5."""
    from launch.api import pretrain

    env_id = request.param
    store = tmp_path_factory.mktemp("store")
    dataset_id = f"test/{env_id.split('-')[0].lower()}/push-v0"
    episodes = collect(env_id, 1500)
    with _env_var("MINARI_DATASETS_PATH", str(store)):
        write_minari(dataset_id, episodes, env_id=env_id)
        run_dir = pretrain(TINY, overrides={"dataset": dataset_id, "name": "bounds",
                                            "workdir": str(tmp_path_factory.mktemp("runs"))})
    actions = np.concatenate([e["actions"] for e in episodes])
    return env_id, store, run_dir, actions


def rollout_observations(env, policy, steps: int = 30) -> np.ndarray:
    obs, _ = env.reset(seed=3)
    seen = []
    for _ in range(steps):
        seen.append(obs)
        obs, _, term, trunc, _ = env.step(policy.act(obs))
        if term or trunc:
            obs, _ = env.reset()
    return np.stack(seen).astype(np.float32)


def test_policy_acts_in_the_environments_units(pretrained, capsys):
    from launch.api import load_policy

    env_id, _store, run_dir, data_actions = pretrained
    high = float(gym.make(env_id).action_space.high[0])
    expected = float(data_actions.mean())       # 2.5 where the box holds it (±3); the upper bound 2 for Pendulum
    assert expected > 1.0 + 2 * TOLERANCE
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    meta = state["dataset_meta"]
    assert (meta["action_low"], meta["action_high"]) == ([-high], [high])
    assert meta["obs_dim"] == gym.make(env_id).observation_space.shape[0] and meta["env_id"] == env_id

    policy = load_policy(run_dir / "checkpoint.pt", mode="argmax", num_candidates=8)
    assert policy.action_high.tolist() == [high]
    env = policy.make_env(seed=1)
    assert env.action_space.high[0] == high          # the env in its own units: no wrapper for the API's user
    obs = rollout_observations(env, policy)
    batch = policy.act(obs)
    assert batch.shape == (len(obs), 1) and batch.dtype == np.float32
    assert abs(float(batch.mean()) - expected) < TOLERANCE, (batch.mean(), expected)
    assert np.all(np.abs(batch) <= high + 1e-6)
    single = policy.act(obs[0])
    assert single.shape == (1,)
    assert abs(float(load_policy(run_dir, num_candidates=8, mode="implicit").act(obs).mean()) - expected) < TOLERANCE
    with pytest.raises(UserFacingError, match="obs_dim"):
        policy.act(np.zeros((2, obs.shape[1] + 1)))
    with pytest.raises(ConfigError, match="mode"):
        load_policy(run_dir, mode="greedy")

    # a checkpoint made before the metadata was recorded: loadable, acts in [-1, 1] as its run did, says so
    old = {k: v for k, v in state.items() if k != "dataset_meta"}
    torch.save(old, run_dir / "old.pt")
    capsys.readouterr()
    legacy = load_policy(run_dir / "old.pt", num_candidates=8)
    assert "predates recorded dataset metadata" in capsys.readouterr().out
    assert np.all(np.abs(legacy.act(obs)) <= 1.0)
    with pytest.raises(UserFacingError, match="does not record its environment"):
        legacy.make_env()
    # a finetuning run directory: learner_checkpoint.pt (no metadata inside) with the run's dataset_meta.json
    online = run_dir / "online"
    online.mkdir()
    torch.save(old, online / "learner_checkpoint.pt")
    (online / "dataset_meta.json").write_text(json.dumps(meta))
    finetuned = load_policy(online, num_candidates=8)
    assert finetuned.checkpoint.name == "learner_checkpoint.pt"
    assert abs(float(finetuned.act(obs).mean()) - expected) < TOLERANCE


def test_online_actor_stores_unit_actions_and_steps_the_env_in_its_units(pretrained):
    """The actor's vector envs get env units; the replay gets [-1, 1], like the offline data."""
    from actor.actor_loop import VectorActor
    from configs.finetune import get_config
    from launch.api import apply_overrides, load_policy
    from learner.checkpoint import load_checkpoint
    from networks.factory import acting_params

    env_id, _store, run_dir, data_actions = pretrained
    state = load_checkpoint(run_dir / "checkpoint.pt")
    cfg = apply_overrides(get_config(), TINY)
    cfg.online.envs_per_actor = 2
    cfg.online.exploration = "argmax"
    actor = VectorActor(cfg, state["dataset_meta"], seed=0)
    actor.load(1, acting_params(load_policy(run_dir).modules, cfg.algorithm))
    try:
        high = float(state["dataset_meta"]["action_high"][0])
        rows = [actor.step() for _ in range(5)]
        stored = np.concatenate([r["action"] for r in rows])
        assert np.all(np.abs(stored) <= 1.0)
        assert abs(float(stored.mean()) * high - float(data_actions.mean())) < TOLERANCE
        # what the environment received: the stored action times its bound (Pendulum keeps it as last_u)
        if env_id == "Pendulum-v1":
            sent = np.array([e.unwrapped.last_u for e in actor.venv.envs])
            np.testing.assert_allclose(sent, high * rows[-1]["action"][:, 0], rtol=1e-6)
    finally:
        actor.close()


def test_study_evaluation_needs_no_dataset(pretrained, tmp_path):
    """study.evaluate reads sizes, env, rewards and bounds from the checkpoint: the dataset may be gone."""
    from study.evaluate import evaluate_checkpoint, load_learner

    _env_id, _store, run_dir, _ = pretrained
    with _env_var("MINARI_DATASETS_PATH", str(tmp_path)):      # an empty store: loading the data would fail
        cfg, learner, meta, transform, env_fn = load_learner(str(run_dir / "checkpoint.pt"))
        assert isinstance(env_fn(0), gym.Wrapper) and isinstance(env_fn(0).env, NormalizedActions)
        out = evaluate_checkpoint(str(run_dir / "checkpoint.pt"), str(tmp_path / "eval.json"), episodes=1,
                                  modes=["argmax"], num_candidates=[4])
    assert out["results"]["argmax"]["4"]["length_mean"] > 0
    assert json.loads((tmp_path / "eval.json").read_text())["results"]


def test_outside_actions_are_counted_and_reported(minari_datasets_path, capsys):
    def action(rng, low, high):     # 7 % of the actions beyond Pendulum's ±2, the rest uniform inside
        return np.full(low.shape, 2.5, np.float32) if rng.random() < 0.07 else rng.uniform(low, high)

    episodes = collect("Pendulum-v1", 400, action_fn=action)
    write_minari("test/pendulum/outside-v0", episodes, env_id="Pendulum-v1")
    raw = np.concatenate([e["actions"] for e in episodes])[:, 0]
    outside = int((raw > 2.0).sum())
    assert outside > 10
    capsys.readouterr()
    ds = load_dataset("test/pendulum/outside-v0")
    printed = capsys.readouterr().out
    assert ds.actions_outside.count == outside and ds.actions_outside.total == 400
    assert f"{outside} of 400 stored actions ({100 * outside / 400:.2f} %)" in printed
    assert "config.action_bounds" in printed
    inside = raw <= 2.0
    np.testing.assert_allclose(ds.actions[inside, 0], raw[inside] / 2.0, atol=1e-6)   # mapped, not clipped to ±1
    assert ds.actions.max() == np.float32(ACTION_CLIP)            # the sampler's guard, after the map
    assert ds.action_bounds == ActionBounds((-2.0,), (2.0,))


def test_unbounded_action_spaces_are_refused_unless_given_a_scale(minari_datasets_path):
    from configs.base import get_config
    from learner.config_check import check_config

    episodes = collect(UNBOUNDED_ID, 60, action_fn=lambda rng, low, high: rng.normal(0.0, 2.0, (1,)))
    write_minari("test/unbounded/point-v0", episodes, env_id=UNBOUNDED_ID)
    with pytest.raises(ConfigError) as e:
        load_dataset("test/unbounded/point-v0")
    assert "config.action_bounds" in str(e.value) and "not finite" in str(e.value)
    ds = load_dataset("test/unbounded/point-v0", action_bounds="-4,4")
    raw = np.concatenate([e["actions"] for e in episodes])
    np.testing.assert_allclose(ds.actions, np.clip(raw / 4.0, -ACTION_CLIP, ACTION_CLIP), atol=1e-6)
    env = make_env(ds, seed=0)                       # the dataset's bounds: [-1, 1] in, ±4 out
    env.reset()
    env.step(np.array([0.5], np.float32))
    assert env.unwrapped.last_action.tolist() == [2.0]
    for bad in ("4,-4", "nan,1", "-inf,1", "abc", "1,2,3"):
        with pytest.raises(ConfigError, match="config.action_bounds"):
            parse_override(bad)
        cfg = get_config()
        cfg.action_bounds = bad
        with pytest.raises(ConfigError, match="config.action_bounds"):
            check_config(cfg)


def test_unit_bounds_are_the_identity_bit_for_bit(minari_datasets_path):
    """±1 tasks (every D4RL one) skip the map: the same bits as before it existed."""
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (1000, 3)).astype(np.float32)
    unit = ActionBounds.unit(3)
    assert unit.is_identity
    assert np.array_equal(unit.normalize(a), a) and np.array_equal(unit.denormalize(a), a)
    # what computing the map would have done: not the identity in floating point
    computed = (2.0 * (a + np.float32(1.0)) / np.float32(2.0) - np.float32(1.0)).astype(np.float32)
    assert not np.array_equal(computed, a)

    from tests.test_datasets import synthetic_episodes
    eps = synthetic_episodes(11, 3, [40, 30], ["term", "trunc"])
    eps[0]["actions"][0] = [1.0, -1.0, 0.5]
    write_minari("mujoco/hopper/medium-v0", eps, env_id="Hopper-v5")
    ds = load_dataset("mujoco/hopper/medium-v0")
    raw = np.concatenate([e["actions"] for e in eps]).astype(np.float32)
    assert np.array_equal(ds.actions, np.clip(raw, -ACTION_CLIP, ACTION_CLIP))   # the old loader's exact result
    assert ds.action_bounds.is_identity and ds.actions_outside.count == 0
    env = make_env(ds, seed=0)
    assert not isinstance(env.env, NormalizedActions) and env.action_space == gym.make("Hopper-v5").action_space
    venv = make_vector_env("Hopper-v5", 2, seed=0, action_bounds=ds.action_bounds)
    assert not isinstance(venv.envs[0].env, NormalizedActions)
    venv.close()
