"""The critic-calibration diagnostic: returns-to-go by hand, and Q against them on real episodes."""
import numpy as np
import pytest
import torch

from actor.envs import make_env
from actor.evaluator import evaluate
from configs import finetune
from data.dataset import OfflineDataset
from data.returns import dataset_returns_to_go, returns_to_go, truncation_horizon
from data.rewards import RewardTransform
from learner.agent import Learner
from learner.calibration import DatasetCalibration, candidate_advantage, describe


def test_returns_to_go_by_hand():
    g, valid = returns_to_go([1.0, 1.0, 1.0], terminated=True, discount=0.5)
    assert g.tolist() == [1.75, 1.5, 1.0] and valid.all()
    # γ = 0.5: 0.5^7 < 0.01 ≤ 0.5^6, so the last 7 steps before a cut have an unknown tail
    assert truncation_horizon(0.5) == 7 and truncation_horizon(0.99) == 459
    g, valid = returns_to_go(np.ones(10), terminated=False, discount=0.5)
    assert valid.tolist() == [True] * 3 + [False] * 7
    # two episodes in one flat array: one terminated, one cut by a timeout
    rewards = np.array([1.0, 2.0, 4.0, 1.0, 1.0])
    g, valid = dataset_returns_to_go(rewards, terminals=np.array([0, 0, 1, 0, 0]),
                                     timeouts=np.array([0, 0, 0, 0, 1]), discount=0.5)
    assert g.tolist() == [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4.0, 1.5, 1.0]
    assert valid.tolist() == [True, True, True, False, False]


def tiny_dataset(rewards, terminals, obs_dim=3, act_dim=2):
    n = len(rewards)
    rng = np.random.default_rng(0)
    return OfflineDataset(observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
                          actions=rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
                          rewards=np.asarray(rewards, dtype=np.float32),
                          next_observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
                          terminals=np.asarray(terminals, dtype=np.float32), timeouts=np.zeros(n, np.float32),
                          episode_returns=np.array([3.0, 2.0]), env_id="Hopper-v5")


def test_dataset_calibration_compares_q_with_the_data_returns():
    data = tiny_dataset([1.0, 1.0, 1.0, 2.0], [0, 0, 1, 1], obs_dim=11, act_dim=3)
    cal = DatasetCalibration(data, RewardTransform(2.0, 0.0), discount=0.5, device="cpu")
    # scaled rewards 2, 2, 2 | 4: G = 3.5, 3, 2 | 4 → mean 3.125
    assert cal.mc_return == pytest.approx(3.125)
    cfg = finetune.get_config()
    cfg.critic_hidden, cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks = (8, 8), 8, 8, 1
    learner = Learner(cfg, 11, 3, torch.device("cpu"))
    with torch.no_grad():
        learner.critic_target.head.weight.zero_()
        learner.critic_target.head.bias.fill_(6.25)         # Q ≡ 6.25 = 2 × the data's returns
    m = cal.measure(learner)
    assert m["calibration/q_data"] == pytest.approx(6.25)
    assert m["calibration/q_over_return"] == pytest.approx(2.0)
    assert "optimistic" in describe(m)
    adv = candidate_advantage(learner, torch.zeros(4, 11), num_candidates=5)
    # a critic blind to the action gives every candidate the same advantage, Q − V(s) = 6.25 − V(0)
    with torch.no_grad():
        v0 = float(learner.value(torch.zeros(1, 11)))
    assert adv["max_adv"] == pytest.approx(adv["mean_adv"], abs=1e-4)
    assert adv["mean_adv"] == pytest.approx(6.25 - v0, abs=1e-4)


def test_evaluation_compares_q_of_the_actions_taken_with_the_return_that_followed():
    # An untrained policy makes Hopper fall within a few dozen steps: every episode terminates, so with
    # γ = 0 every step counts and the return that followed each action is its own reward.
    cfg = finetune.get_config()
    cfg.critic_hidden, cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks = (8, 8), 8, 8, 1
    torch.manual_seed(0)
    learner = Learner(cfg, 11, 3, torch.device("cpu"))
    learner.train(False)
    policy = learner.acting_policy(mode="argmax", num_candidates=4)
    res = evaluate(policy, lambda s: make_env("Hopper-v5", s), 3, seed=5, device=torch.device("cpu"),
                   reward_transform=RewardTransform(1.0, 0.0), discount=0.0)
    assert res.lengths.max() < 1000, "the untrained policy was expected to fall"
    assert res.calibration_steps == int(res.lengths.sum())
    assert res.mc_return == pytest.approx(res.returns.sum() / res.lengths.sum(), rel=1e-5)
    s = res.summary()
    assert s["q_minus_return"] == pytest.approx(s["q_chosen_mean"] - s["mc_return_mean"])
    assert s["termination_rate"] == 1.0                 # every episode fell
    # cut at 5 steps, before any fall: no episode ends in a terminal state
    cut = evaluate(policy, lambda s: make_env("Hopper-v5", s), 3, seed=5, device=torch.device("cpu"),
                   max_episode_steps=5)
    assert cut.lengths.tolist() == [5, 5, 5] and cut.summary()["termination_rate"] == 0.0
    # without a reward transform nothing is claimed
    assert "q_minus_return" not in evaluate(policy, lambda s: make_env("Hopper-v5", s), 1, seed=5,
                                            device=torch.device("cpu")).summary()
