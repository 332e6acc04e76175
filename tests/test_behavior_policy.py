"""Behaviour policies used to make D4RL-style datasets (data/behavior)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from data.behavior.policy import (LEVELS, BehaviorPolicy, available_policies, load_behavior_policy,
                                  policy_path)
from errors import DatasetError, UserFacingError

EXPECTED_ENVS = ("Hopper-v5", "HalfCheetah-v5")
ENVS = [env for env in EXPECTED_ENVS if env in available_policies()]


def _episode_return(env_id, act, seed):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, r, term, trunc, _ = env.step(act(obs))
        total += r
        done = term or trunc
    env.close()
    return total


def test_expected_weights_are_shipped():
    available = available_policies()
    for env_id in EXPECTED_ENVS:
        assert available.get(env_id) == list(LEVELS), available


@pytest.mark.parametrize("env_id", ENVS)
@pytest.mark.parametrize("level", LEVELS)
def test_weights_load_with_weights_only(env_id, level):
    path = policy_path(env_id, level)
    assert path.stat().st_size < 200 * 1024
    state_dict = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state_dict.values())
    policy = BehaviorPolicy.from_state_dict(state_dict)

    env = gym.make(env_id)
    assert policy.obs_dim == env.observation_space.shape[0]
    assert policy.act_dim == env.action_space.shape[0]
    obs = np.stack([env.reset(seed=i)[0] for i in range(4)])
    env.close()
    actions = load_behavior_policy(env_id, level).act(obs)
    assert actions.shape == (4, policy.act_dim) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1.0)
    np.testing.assert_array_equal(actions, policy.act(obs))  # deterministic
    np.testing.assert_allclose(policy.act(obs[0]), actions[0], atol=1e-6)  # single observation


@pytest.mark.parametrize("env_id", ENVS)
def test_medium_beats_random(env_id):
    policy = load_behavior_policy(env_id, "medium")
    rng = np.random.default_rng(0)
    low, high = -1.0, 1.0
    seeds = (123, 456)
    medium = np.mean([_episode_return(env_id, policy.act, s) for s in seeds])
    random = np.mean([_episode_return(env_id, lambda o: rng.uniform(low, high, policy.act_dim), s)
                      for s in seeds])
    # Random: about 20 (Hopper) and -300 (HalfCheetah); medium: about 1/3 of expert.
    assert medium > random + 500, (medium, random)


def test_unknown_level_and_env_raise_dataset_error():
    with pytest.raises(DatasetError, match="replay0") as info:
        load_behavior_policy("Hopper-v5", "expert")
    assert isinstance(info.value, UserFacingError)
    assert "Hopper-v5" in str(info.value)
    with pytest.raises(DatasetError, match="Available"):
        load_behavior_policy("NoSuchEnv-v0", "medium")


def test_wrong_observation_width_raises():
    policy = BehaviorPolicy(11, 3, (8, 8))
    with pytest.raises(DatasetError):
        policy.act(np.zeros((2, 17), np.float32))
