"""Behaviour policies used to make D4RL-style datasets (data/behavior)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from data.behavior.policy import (LEVELS, V0_WEIGHTS_DIR, WEIGHTS_DIR, BehaviorPolicy,
                                  StochasticBehaviorPolicy, available_policies, load_behavior_policy,
                                  load_stochastic_policy, policy_path, stochastic_policy_path)
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
    available, frozen = available_policies(), available_policies(V0_WEIGHTS_DIR)
    for env_id in EXPECTED_ENVS:
        assert available.get(env_id) == list(LEVELS), available
        assert frozen.get(env_id) == list(LEVELS), frozen  # what the -v0 datasets are made from
        for level in LEVELS:
            assert stochastic_policy_path(env_id, level).is_file(), (env_id, level)
            assert not stochastic_policy_path(env_id, level, V0_WEIGHTS_DIR).exists()


@pytest.mark.parametrize("weights_dir", [WEIGHTS_DIR, V0_WEIGHTS_DIR], ids=["current", "v0"])
@pytest.mark.parametrize("env_id", ENVS)
@pytest.mark.parametrize("level", LEVELS)
def test_weights_load_with_weights_only(env_id, level, weights_dir):
    path = policy_path(env_id, level, weights_dir)
    assert path.stat().st_size < 200 * 1024
    state_dict = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state_dict.values())
    policy = BehaviorPolicy.from_state_dict(state_dict)

    env = gym.make(env_id)
    assert policy.obs_dim == env.observation_space.shape[0]
    assert policy.act_dim == env.action_space.shape[0]
    obs = np.stack([env.reset(seed=i)[0] for i in range(4)])
    env.close()
    actions = load_behavior_policy(env_id, level, weights_dir).act(obs)
    assert actions.shape == (4, policy.act_dim) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1.0)
    np.testing.assert_array_equal(actions, policy.act(obs))  # deterministic
    np.testing.assert_allclose(policy.act(obs[0]), actions[0], atol=1e-6)  # single observation


@pytest.mark.parametrize("env_id", ENVS)
def test_medium_beats_random(env_id):
    policy = load_stochastic_policy(env_id, "medium")
    sample_rng = np.random.default_rng(0)
    rng = np.random.default_rng(0)
    low, high = -1.0, 1.0
    seeds = (123, 456)
    medium = np.mean([_episode_return(env_id, policy.act, s) for s in seeds])
    sampled = np.mean([_episode_return(env_id, lambda o: policy.act(o, sample_rng), s) for s in seeds])
    random = np.mean([_episode_return(env_id, lambda o: rng.uniform(low, high, policy.act_dim), s)
                      for s in seeds])
    # Random: about 20 (Hopper) and -300 (HalfCheetah); medium: about 1/3 of expert.
    assert medium > random + 500 and sampled > random + 500, (medium, sampled, random)


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


# ---------------------------------------------------------------- stochastic actor

def _tanh_gaussian_moments(mu, sigma, nodes=120):
    """E[tanh(mu + sigma*eps)] and its std for eps ~ N(0, 1), by Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    a = np.tanh(np.asarray(mu)[..., None] + np.asarray(sigma)[..., None] * x)
    m1 = (a * w).sum(-1)
    return m1, np.sqrt(((a - m1[..., None]) ** 2 * w).sum(-1))


def _known_actor(mean_bias, log_std_bias, obs_dim=11, hidden=(16, 16)):
    """A freshly initialised actor whose heads ignore the state: mu and log_std are the biases."""
    torch.manual_seed(0)
    policy = StochasticBehaviorPolicy(obs_dim, len(mean_bias), hidden)
    with torch.no_grad():
        policy.mean.weight.zero_()
        policy.mean.bias.copy_(torch.tensor(mean_bias))
        policy.log_std.weight.zero_()
        policy.log_std.bias.copy_(torch.tensor(log_std_bias))
    return policy.eval()


def test_stochastic_actor_round_trips_and_samples_its_tanh_gaussian(tmp_path):
    # Third dimension: log-std 3.0 is above LOG_STD_MAX = 2 and must be clamped to it;
    # fourth: -9 below LOG_STD_MIN = -5.
    mean_bias = [0.0, 0.5, -1.0, 0.3]
    log_std_bias = [np.log(0.2), np.log(0.8), 3.0, -9.0]
    path = tmp_path / "actor.pt"
    torch.save(_known_actor(mean_bias, log_std_bias).state_dict(), path)
    policy = StochasticBehaviorPolicy.from_state_dict(torch.load(path, weights_only=True))
    assert policy.hidden == (16, 16) and policy.act_dim == 4
    for k, v in _known_actor(mean_bias, log_std_bias).state_dict().items():
        assert torch.equal(policy.state_dict()[k], v), k

    obs = np.random.default_rng(1).normal(size=(40_000, 11)).astype(np.float32)
    a = policy.act(obs, np.random.default_rng(np.random.SeedSequence(7)))
    assert a.shape == (40_000, 4) and a.dtype == np.float32 and np.all(np.abs(a) <= 1)
    sigma = np.exp(np.clip(log_std_bias, -5.0, 2.0))
    mean, std = _tanh_gaussian_moments(mean_bias, sigma)
    np.testing.assert_allclose(a.std(0), std, rtol=0.02)
    np.testing.assert_allclose(a.mean(0), mean, atol=0.01)
    # The spread is the policy's, not a fixed noise: it differs between dimensions.
    assert a.std(0)[1] > 2.5 * a.std(0)[0] and a.std(0)[3] < 0.01
    # Monte-Carlo std of the same distribution, per state.
    per_state = policy.action_std(obs[:50], np.random.default_rng(0), samples=4000)
    np.testing.assert_allclose(per_state.mean(0), std, rtol=0.03)

    # Reproducible from the generator; another seed gives other samples.
    again = policy.act(obs[:100], np.random.default_rng(np.random.SeedSequence(7)))
    np.testing.assert_array_equal(again, a[:100])
    assert not np.array_equal(policy.act(obs[:100], np.random.default_rng(8)), a[:100])
    # No generator: the deterministic mean path, identical to a BehaviorPolicy of the same tensors.
    det = BehaviorPolicy.from_state_dict({k: v for k, v in policy.state_dict().items()
                                          if not k.startswith("log_std")})
    np.testing.assert_array_equal(policy.act(obs[:100]), det.act(obs[:100]))
    np.testing.assert_allclose(policy.act(obs[:100])[0], np.tanh(mean_bias), atol=1e-6)
    assert policy.act(obs[0], np.random.default_rng(0)).shape == (4,)
    with pytest.raises(TypeError, match="Generator"):
        policy.act(obs[:2], 123)


def test_sampling_matches_the_trainers_actor():
    """StochasticBehaviorPolicy.act draws from the same distribution as train_sac.Actor.sample."""
    from data.behavior.train_sac import Actor

    torch.manual_seed(3)
    actor = Actor(11, 3, (32, 32))
    with torch.no_grad():  # a spread that is neither tiny nor saturated
        actor.log_std.bias.fill_(np.log(0.5))
    policy = StochasticBehaviorPolicy.from_state_dict(actor.state_dict())
    obs = np.tile(np.random.default_rng(0).normal(size=(1, 11)).astype(np.float32), (40_000, 1))
    torch.manual_seed(0)
    with torch.no_grad():
        trainer_a = actor.sample(torch.from_numpy(obs))[0].numpy()
    a = policy.act(obs, np.random.default_rng(0))
    np.testing.assert_allclose(a.std(0), trainer_a.std(0), rtol=0.03)
    np.testing.assert_allclose(a.mean(0), trainer_a.mean(0), atol=0.01)
    assert a.std(0).min() > 0.1


def test_stochastic_loader_errors(tmp_path):
    mean_only = _known_actor([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]).behavior_state_dict()
    with pytest.raises(DatasetError, match="log_std"):
        StochasticBehaviorPolicy.from_state_dict(mean_only)
    full = _known_actor([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]).state_dict()
    with pytest.raises(DatasetError, match="BehaviorPolicy"):
        BehaviorPolicy.from_state_dict(full)
    with pytest.raises(DatasetError, match="Available"):
        load_stochastic_policy("Hopper-v5", "expert")
    with pytest.raises(DatasetError, match="Available"):
        load_stochastic_policy("NoSuchEnv-v0", "medium")


@pytest.mark.parametrize("env_id", ENVS)
@pytest.mark.parametrize("level", LEVELS)
def test_shipped_stochastic_actor_shares_the_mean_path(env_id, level):
    path = stochastic_policy_path(env_id, level)
    assert path.stat().st_size < 200 * 1024
    state_dict = torch.load(path, weights_only=True)
    mean_path = torch.load(policy_path(env_id, level), weights_only=True)
    assert set(state_dict) == set(mean_path) | {"log_std.weight", "log_std.bias"}
    for k, v in mean_path.items():  # both files come from the same snapshot
        assert torch.equal(state_dict[k], v), k
    policy = load_stochastic_policy(env_id, level)
    env = gym.make(env_id)
    obs = np.stack([env.reset(seed=i)[0] for i in range(4)])
    env.close()
    a = policy.act(obs, np.random.default_rng(0))
    assert a.shape == (4, policy.act_dim) and np.all(np.abs(a) <= 1)
    assert not np.allclose(a, load_behavior_policy(env_id, level).act(obs), atol=1e-3)


def test_train_sac_writes_both_files(tmp_path, monkeypatch):
    """A tiny run: every level gets a mean-path and a whole-actor file, of one snapshot."""
    from data.behavior import train_sac

    monkeypatch.chdir(tmp_path)  # MuJoCo may write a log file into the working directory
    out = tmp_path / "weights"
    assert train_sac.main(["--env=Hopper-v5", "--seed=0", "--steps=400", "--start_steps=200",
                           "--eval_every=400", "--eval_episodes=1", "--target_return=-1e9",
                           "--actor_hidden=32,32", "--critic_hidden=32", f"--out_dir={out}"]) == 0
    for level in LEVELS:
        mean_path = torch.load(out / f"Hopper-v5_{level}.pt", weights_only=True)
        full = StochasticBehaviorPolicy.from_state_dict(
            torch.load(out / f"Hopper-v5_{level}_stochastic.pt", weights_only=True))
        assert full.hidden == (32, 32)
        for k, v in mean_path.items():
            assert torch.equal(full.state_dict()[k], v), (level, k)
