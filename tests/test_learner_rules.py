"""The learner follows the references where the review found it did not (issue: learning that works).

Small networks on random data: each test checks one rule that could silently break learning.
"""
import math
from pathlib import Path

import pytest
import torch

from configs import antmaze, finetune, idql_locomotion
from errors import ConfigError
from learner.agent import Learner
from learner.config_check import check_config
from learner.online import set_online_rates
from networks.factory import acting_params, build_acting_modules, load_acting_params

OBS, ACT = 5, 2
ROOT = Path(__file__).resolve().parents[1]


def small(cfg, algorithm="aligniql", steps=40):
    cfg.algorithm = algorithm
    cfg.critic_hidden = (16, 16)
    cfg.iql.hidden = (16, 16)
    cfg.multipliers.hidden = (16, 16)
    cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks = 16, 16, 1
    cfg.num_critic_steps = cfg.num_actor_steps = steps
    return cfg


def batch(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, OBS, generator=g), "act": torch.rand(n, ACT, generator=g) * 2 - 1,
            "reward": torch.randn(n, generator=g), "next_obs": torch.randn(n, OBS, generator=g),
            "mask": torch.ones(n)}


def finish_pretraining(learner, name):
    """Step the named schedule to the end of pretraining, as launch.pretrain does."""
    sched = learner.schedulers[name]
    for _ in range(learner.cfg.num_actor_steps):
        sched.optimizer.step()
        sched.step()
    return sched.optimizer.param_groups[0]["lr"]


def test_iql_actor_trains_online_at_its_own_rate():
    cfg = small(finetune.get_config(), "iql")
    learner = Learner(cfg, OBS, ACT, torch.device("cpu"))
    assert finish_pretraining(learner, "actor") == pytest.approx(0.0, abs=1e-12)
    set_online_rates(learner, cfg)
    assert learner.actor_opt.param_groups[0]["lr"] == pytest.approx(cfg.iql.actor_lr)
    before = [p.detach().clone() for p in learner.actor.parameters()]
    learner.update(batch(), train_critic=False)
    assert any(not torch.equal(p0, p) for p0, p in zip(before, learner.actor.parameters()))


def test_mu_rate_continues_the_cosine_over_a_longer_horizon():
    cfg = small(finetune.get_config(), steps=30)
    learner = Learner(cfg, OBS, ACT, torch.device("cpu"))
    assert finish_pretraining(learner, "behavior") == pytest.approx(0.0, abs=1e-12)
    set_online_rates(learner, cfg)            # default: "continue", horizon 4/3 of the 30 pretraining steps
    lr0 = cfg.diffusion.lr
    # at step 30 of a 40-step cosine: lr0 · ½(1 + cos(3π/4)) = 0.1464 · lr0
    assert learner.behavior_opt.param_groups[0]["lr"] == pytest.approx(lr0 * 0.5 * (1 + math.cos(0.75 * math.pi)))
    b = batch()
    for _ in range(5):
        learner.update(b, train_critic=False)
    assert learner.behavior_opt.param_groups[0]["lr"] == pytest.approx(lr0 * 0.5 * (1 + math.cos(math.pi * 35 / 40)))
    for _ in range(10):
        learner.update(b, train_critic=False)
    assert learner.behavior_opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    # the former behaviour stays available as a setting
    cfg.online.mu_lr_schedule, cfg.online.mu_lr = "constant", 1e-4
    set_online_rates(learner, cfg)
    learner.update(b, train_critic=False)
    assert learner.behavior_opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_value_layer_norm_by_default_and_acting_processes_rebuild_the_same_networks():
    cfg = small(finetune.get_config())
    assert cfg.value_layer_norm == "input" and not cfg.critic_layer_norm
    cfg.value_layer_norm, cfg.critic_layer_norm = "hidden", True
    learner = Learner(cfg, OBS, ACT, torch.device("cpu"))
    assert any(isinstance(m, torch.nn.LayerNorm) for m in learner.value.modules())
    for _ in range(3):
        learner.update(batch())
    acting = build_acting_modules(cfg, OBS, ACT)
    load_acting_params(acting, acting_params(learner.modules, cfg.algorithm))
    obs, act = batch()["obs"], batch()["act"]
    learner.train(False)
    with torch.no_grad():
        assert torch.allclose(acting["value"](obs), learner.value(obs))
        assert torch.allclose(acting["critic_target"](obs, act), learner.critic_target(obs, act))
    # the two critic heads normalise with their own scale and shift
    norms = learner.critic.norms[0]
    assert norms.weight.shape[0] == 2 and not torch.equal(norms.weight[0], norms.weight[1])


def test_multiplier_gradients_are_clipped_per_network():
    cfg = small(finetune.get_config(), "aligniql_hard")
    learner = Learner(cfg, OBS, ACT, torch.device("cpu"))
    b = batch()
    with torch.no_grad():
        learner.critic_target.head.bias.add_(300.0)          # Q in the hundreds: β's gradient scales with Q
        # β = 0 at every state, so exp(−α − βQ − 1) is e^{−α−1} whatever the initialisation: a random β
        # with βQ ≫ 1 would make the exponential vanish and β's gradient small (a flaky case, 6 seeds in 40)
        last = learner.beta_net.net[-1]
        last.weight.zero_()
        last.bias.zero_()

    def raw_norm(net, loss_index):
        from learner.losses import multiplier_losses
        with torch.no_grad():
            q, v = learner.critic_target(b["obs"], b["act"]), learner.value(b["obs"])
        losses = multiplier_losses(learner.alpha_net(b["obs"]), learner.beta_net(b["obs"]), q, v)
        grads = torch.autograd.grad(losses[loss_index], list(net.parameters()))
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))

    raw_alpha, raw_beta = raw_norm(learner.alpha_net, 0), raw_norm(learner.beta_net, 1)
    assert raw_beta > 10 * max(raw_alpha, 1.0)                # the case where a joint norm starves α
    learner.multiplier_step(b["obs"], b["act"])

    def kept_norm(net):
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters()])))

    clip = cfg.multipliers.grad_clip
    assert kept_norm(learner.alpha_net) == pytest.approx(min(raw_alpha, clip), rel=1e-4)
    assert kept_norm(learner.beta_net) == pytest.approx(min(raw_beta, clip), rel=1e-4)


def test_idql_mu_has_no_weight_decay():
    cfg = small(idql_locomotion.get_config(), "idql")
    learner = Learner(cfg, OBS, ACT, torch.device("cpu"))
    assert learner.behavior_opt.param_groups[0]["weight_decay"] == 0.0


@pytest.mark.parametrize("task, eta", [("umaze-v1", 1.0), ("umaze-diverse-v1", 1.0), ("medium-play-v1", -1.0),
                                       ("medium-diverse-v1", -1.0), ("large-play-v1", 1.0),
                                       ("large-diverse-v1", 1.0)])
def test_antmaze_eta_follows_table_3_per_task(task, eta):
    cfg = antmaze.get_config()
    cfg.dataset = f"D4RL/antmaze/{task}"
    check_config(cfg)
    assert cfg.eta == eta


def test_a_malformed_eta_table_is_rejected_naming_the_field():
    cfg = antmaze.get_config()
    cfg.eta_by_dataset = "medium-play=-1"
    with pytest.raises(ConfigError, match="eta_by_dataset"):
        check_config(cfg)


# configs/results.py holds the study's budgets, not a run's config
@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs").glob("*.py")
                                        if p.stem not in ("__init__", "results")))
def test_every_config_file_passes_the_config_check(name):
    # a config a user is pointed to (README, docs) must at least load and pass the start-up check
    import importlib

    cfg = importlib.import_module(f"configs.{name}").get_config()
    check_config(cfg)


def test_the_pointmaze_finetuning_config_is_idqls_frozen_mu_argmax_recipe():
    from configs import pointmaze_finetune

    cfg = pointmaze_finetune.get_config()
    o = cfg.online
    assert cfg.dataset == "local/pointmaze/medium-v0"
    assert (o.exploration, o.exploration_weighting, o.finetune_mu, o.eval_mode) == ("argmax", "greedy", False, "argmax")
    assert cfg.eval.weighting == "greedy"


def test_acting_params_are_a_snapshot_that_later_updates_do_not_change():
    # The pretraining evaluation process receives these through a multiprocessing queue, which pickles
    # them later on its own thread: views of the live CPU weights would be pickled after the learner's
    # next in-place updates, so the evaluation of "step k" scored the weights of a later step whenever
    # the machine was busy (the load-dependent failure of the background-evaluation test).
    cfg = small(finetune.get_config())
    learner = Learner(cfg, OBS, ACT, torch.device("cpu"))
    snapshot = learner.acting_params()
    kept = {k: v.copy() for k, v in snapshot.items()}
    for _ in range(3):
        learner.update(batch())
    changed = [k for k in kept if not (kept[k] == acting_params(learner.modules, cfg.algorithm)[k]).all()]
    assert changed, "the updates changed no acting weight: the test would prove nothing"
    assert all((snapshot[k] == kept[k]).all() for k in kept), "a snapshot followed the live weights"
