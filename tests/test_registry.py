"""Every registered algorithm, value loss and weighting, tested the moment it is registered.

The cases are read from the registries themselves (networks/factory.py ALGORITHMS,
learner/losses.py VALUE_LOSSES, networks/extraction.py WEIGHTINGS), so a new entry runs here
without a line of this file changing (docs/extending.md): a few learner updates on tiny networks
and a tiny in-memory batch (CPU), acting in both modes through `make_policy` over the published
weights, a checkpoint round trip through learner/checkpoint.py and the config reader, and its bad
settings refused at start-up naming the field. Each weighting also has a case solved by hand here
(`HAND_CASES`): the generic tests can show that it runs, not that its formula is the paper's.

Also here: the translation of configs recorded before `critic_loss` became `value_loss`, the
online settings checked by learner/config_check.py, and the role folders' import rule.
"""
from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest
import torch

from configs import base, finetune
from errors import ConfigError
from learner.agent import Learner
from learner.checkpoint import load_checkpoint, save_checkpoint
from learner.config_check import check_config
from learner.losses import VALUE_LOSSES, value_loss_settings
from networks import extraction
from networks.extraction import MODES, WEIGHTINGS
from networks.factory import (ALGORITHMS, acting_params, build_acting_modules, load_acting_params, make_policy,
                              natural_weighting, upgrade_config)

OBS, ACT, N = 5, 2, 4
CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


def tiny_config(algorithm: str = "aligniql", **fields) -> ml_collections.ConfigDict:
    cfg = finetune.get_config()
    cfg.algorithm = algorithm
    cfg.critic_hidden = cfg.iql.hidden = cfg.multipliers.hidden = (16, 16)
    cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks, cfg.diffusion.time_dim = 16, 16, 1, 8
    cfg.critic_batch_size = cfg.actor_batch_size = 16
    cfg.num_critic_steps = cfg.num_actor_steps = 10
    for key, value in fields.items():
        cfg[key] = value
    return cfg


def runs(weighting) -> str:
    """An algorithm that can act with `weighting`: one that weighs candidates, with α(s), β(s) if it needs them."""
    return next(a.name for a in ALGORITHMS.values()
                if a.policy == "diffusion" and (a.multipliers or not weighting.needs_multipliers))


# (case id, config): every entry of every registry, in a config that uses it
CASES = ([(f"algorithm={name}", lambda name=name: tiny_config(name)) for name in ALGORITHMS]
         + [(f"value_loss={name}", lambda name=name: tiny_config(value_loss=name)) for name in VALUE_LOSSES]
         + [(f"weighting={name}", lambda w=w: tiny_config(runs(w), weighting=w.name))
            for name, w in WEIGHTINGS.items()])
case = pytest.mark.parametrize("make_cfg", [c for _, c in CASES], ids=[i for i, _ in CASES])


def batch(n=16, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, OBS, generator=g), "act": torch.rand(n, ACT, generator=g) * 2 - 1,
            "reward": torch.randn(n, generator=g), "next_obs": torch.randn(n, OBS, generator=g),
            "mask": torch.ones(n)}


def trained(cfg, steps=3) -> Learner:
    torch.manual_seed(0)
    learner = Learner(cfg, OBS, ACT, CPU)
    for k in range(steps):
        metrics = learner.update(batch(seed=k))
        assert all(torch.isfinite(v) for v in metrics.values()), metrics
    return learner


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def act(policy, obs, seed=1):
    """(actions, stats) of `policy` at `obs`, drawn with a generator of seed `seed`."""
    return policy.act(obs, torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ every entry, end to end
@case
def test_the_config_passes_and_a_few_updates_train_every_network(make_cfg):
    cfg = make_cfg()
    check_config(cfg)
    torch.manual_seed(0)
    learner = Learner(cfg, OBS, ACT, CPU)
    trainable = {k: m for k, m in learner.modules.items() if k in learner.optimizers}
    before = {k: params(m) for k, m in trainable.items()}
    for k in range(3):
        metrics = learner.update(batch(seed=k))
        assert metrics and all(torch.isfinite(v) for v in metrics.values()), metrics
    for name, module in trainable.items():
        after = params(module)
        assert any(not torch.equal(before[name][k], after[k]) for k in after), f"{name} did not move"
    # V's loss is the configured entry, with the config's settings (IDQL Eq. 6)
    b = batch(seed=9)
    with torch.no_grad():
        loss, v, q_target = learner.value_objective(b["obs"], b["act"])
        entry = VALUE_LOSSES[cfg.value_loss]
        assert float(loss) == pytest.approx(float(entry.per_sample(q_target - v, **value_loss_settings(
            cfg.value_loss, cfg)).mean()))


@case
def test_the_published_weights_act_as_the_learner_in_both_modes(make_cfg):
    cfg = make_cfg()
    learner = trained(cfg)
    learner.train(False)
    modules = build_acting_modules(cfg, OBS, ACT)
    load_acting_params(modules, acting_params(learner.modules, cfg.algorithm))
    obs = torch.randn(6, OBS, generator=torch.Generator().manual_seed(3))
    for mode in MODES:
        policy = make_policy(cfg, modules, natural_weighting(cfg), mode, N)
        actions, stats = act(policy, obs)
        assert actions.shape == (6, ACT) and torch.isfinite(actions).all()
        assert all(torch.isfinite(s).all() for s in stats.values())
        # the actor's policy is the learner's own evaluation policy (same weights, same draws)
        mine, _ = act(learner.acting_policy(mode=mode, num_candidates=N), obs)
        assert torch.equal(actions, mine), mode
        if ALGORITHMS[cfg.algorithm].policy == "diffusion":
            # the action taken is one of μ's candidates, chosen by the configured weighting's own rule
            cand = modules["behavior_ema"].sample(obs, N, torch.Generator().manual_seed(1))
            assert all(any(torch.equal(a, c) for c in cs) for a, cs in zip(actions, cand))
            assert policy.spec.weighting == natural_weighting(cfg)
            assert dict(policy.spec.settings) == {f: float(cfg[f]) for f in WEIGHTINGS[policy.spec.weighting].settings}


@case
def test_a_checkpoint_round_trip_keeps_weights_actions_and_optimiser_state(make_cfg, tmp_path):
    cfg = make_cfg()
    learner = trained(cfg)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"learner": learner.state_dict(), "config": cfg.to_json(), "step": 3})

    state = load_checkpoint(path)
    saved_cfg = ml_collections.ConfigDict(upgrade_config(json.loads(state["config"])))   # as every reader does
    check_config(saved_cfg)
    restored = Learner(saved_cfg, OBS, ACT, CPU)
    restored.load_state_dict(state["learner"])
    for name, module in learner.modules.items():
        a, b = params(module), params(restored.modules[name])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    learner.train(False)
    restored.train(False)
    obs = torch.randn(4, OBS)
    for mode in MODES:
        got = act(restored.acting_policy(mode=mode, num_candidates=N), obs)[0]
        assert torch.equal(got, act(learner.acting_policy(mode=mode, num_candidates=N), obs)[0]), mode
    # optimiser moments and schedules came back too: one more update lands on the same weights
    for one in (learner, restored):
        one.train(True)
        torch.manual_seed(5)
        one.update(batch(seed=7))
    for name, module in learner.modules.items():
        a, b = params(module), params(restored.modules[name])
        assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a), name


PROBES = (0.0, -1.0, 1.0, 2.0, 0.5, -0.5)


def entries_in(cfg):
    """The registry entries a config uses, with the entry kind."""
    algorithm = ALGORITHMS[cfg.algorithm]
    out = [algorithm, VALUE_LOSSES[cfg.value_loss]]
    if algorithm.policy == "diffusion":
        out.append(WEIGHTINGS[natural_weighting(cfg)])
    return out


def set_field(cfg, field, value):
    *parents, leaf = field.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = value


@case
def test_bad_settings_of_the_entry_are_refused_naming_the_field(make_cfg):
    for entry in entries_in(make_cfg()):
        for field in entry.settings:
            cfg = make_cfg()
            set_field(cfg, field, float("nan"))          # passes every comparison a rule could make
            with pytest.raises(ConfigError, match=rf"config\.{field}=nan"):
                check_config(cfg)
            refused = []
            for probe in PROBES:
                cfg = make_cfg()
                set_field(cfg, field, probe)
                if any(p[0] == field for p in entry.check(cfg)):
                    refused.append(probe)
                if any(p[0] == field for e in entries_in(cfg) for p in e.check(cfg)):
                    with pytest.raises(ConfigError, match=rf"config\.{field}="):
                        check_config(cfg)
                else:
                    check_config(cfg)                    # what the rules accept, the start-up check accepts
            assert refused, f"{entry.name}: no rule refuses any of {PROBES} for {field}"


@pytest.mark.parametrize("field", ["algorithm", "value_loss", "weighting", "eval.weighting",
                                   "online.exploration_weighting"])
def test_an_unknown_name_is_refused_naming_the_field_and_the_choices(field):
    cfg = tiny_config()
    set_field(cfg, field, "nonexistent")
    registry = {"algorithm": ALGORITHMS, "value_loss": VALUE_LOSSES}.get(field, WEIGHTINGS)
    with pytest.raises(ConfigError, match=rf"config\.{field}='nonexistent'.*{'.*'.join(registry)}"):
        check_config(cfg)


@pytest.mark.parametrize("weighting", [w for w in WEIGHTINGS.values() if w.needs_multipliers], ids=lambda w: w.name)
@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS.values() if a.policy == "diffusion" and not a.multipliers],
                         ids=lambda a: a.name)
@pytest.mark.parametrize("field", ["weighting", "eval.weighting", "online.exploration_weighting"])
def test_a_weighting_that_needs_multipliers_is_refused_without_them(weighting, algorithm, field):
    cfg = tiny_config(algorithm.name)
    set_field(cfg, field, weighting.name)
    with pytest.raises(ConfigError, match=rf"config\.{field}='{weighting.name}'.*multiplier"):
        check_config(cfg)


@pytest.mark.parametrize("algorithm", list(ALGORITHMS.values()), ids=lambda a: a.name)
def test_each_algorithms_own_weighting_is_registered_and_runnable(algorithm):
    if algorithm.policy == "gaussian":
        assert algorithm.weighting is None
        return
    w = WEIGHTINGS[algorithm.weighting]
    assert algorithm.multipliers or not w.needs_multipliers


# ------------------------------------------------------------------ every weighting, solved by hand
E = math.e
# name -> [(q [N], v, settings, multipliers (α, β) or None, expected normalised weights [N])]
HAND_CASES = {
    # AlignIQL Eq. 12: A = (−1, 0, 1), w ∝ exp(−η A²) = (e⁻¹, 1, e⁻¹); Remark 4.7, η = −1: w ∝ exp(A)
    "align": [([0.0, 1.0, 2.0], 1.0, {"eta": 1.0}, None, [1 / E, 1.0, 1 / E]),
              ([0.0, 1.0, 2.0], 1.0, {"eta": -1.0}, None, [1 / E, 1.0, E])],
    # AlignIQL Eq. 8: w ∝ exp(−α − βQ − 1), α = 0.5, β = −1: w ∝ e^Q
    "align_hard": [([0.0, 1.0, 2.0], 0.0, {}, (0.5, -1.0), [1.0, E, E * E])],
    # IDQL Eq. 9: A = (−0.5, 0.5, 1.5), τ = 0.7: w = (0.3, 0.7, 0.7)
    "expectile": [([0.0, 1.0, 2.0], 0.5, {"tau": 0.7}, None, [0.3, 0.7, 0.7])],
    # IDQL Eq. 10: A = (−2, −1, 1), τ = 0.6: w = (0.4/2, 0.4/1, 0.6/1)
    "quantile": [([0.0, 1.0, 3.0], 2.0, {"tau": 0.6}, None, [0.2, 0.4, 0.6])],
    # IDQL Eq. 12: A = (−1, 1), α = 1: w = |e^A − 1|/|A| = (1 − e⁻¹, e − 1); at A = 0 its limit α² = 1;
    # α = 2, A = 1: w = 2(e² − 1)
    "exponential": [([0.0, 2.0], 1.0, {"exp_alpha": 1.0}, None, [1 - 1 / E, E - 1]),
                    ([1.0, 2.0], 1.0, {"exp_alpha": 1.0}, None, [1.0, E - 1]),
                    ([1.0, 2.0], 1.0, {"exp_alpha": 2.0}, None, [4.0, 2 * (E * E - 1)])],
    # the best candidate by Q alone
    "greedy": [([0.0, 3.0, 1.0], 0.0, {}, None, [0.0, 1.0, 0.0])],
}


@pytest.mark.parametrize("name", list(WEIGHTINGS))
def test_each_weighting_gives_its_papers_weights_on_a_case_solved_by_hand(name):
    if name not in HAND_CASES:
        pytest.fail(f"weighting {name!r} has no case solved by hand: add one to HAND_CASES (docs/extending.md)")
    for q, v, settings, multipliers, expected in HAND_CASES[name]:
        extra = {} if multipliers is None else {"alpha_s": torch.tensor([multipliers[0]]),
                                                 "beta_s": torch.tensor([multipliers[1]])}
        logw = extraction.log_weights(name, torch.tensor([q]), torch.tensor([v]), **extra, **settings)
        want = torch.tensor(expected) / sum(expected)
        assert torch.allclose(torch.softmax(logw, -1)[0], want, atol=1e-5), (name, settings)


def test_quantile_weights_are_aligned_at_the_tau_quantile():
    # IDQL Theorem 4.1 for Eq. 10: at V = a τ-quantile of Q, E_π[Q] = V. Q = 0..4, τ = 0.6: every V in (2, 3)
    # is one (0.6·2 = 0.4·3 samples above / below), and E_μ[w·A] = 0.6·2 − 0.4·3 = 0.
    q = torch.arange(5.0).unsqueeze(0)
    v = torch.tensor([2.5])
    eq = extraction.expected_q(extraction.log_weights("quantile", q, v, tau=0.6), q, "implicit")
    assert float(eq) == pytest.approx(2.5, abs=1e-5)


# ------------------------------------------------------------------ configs recorded before value_loss
def old_config(algorithm: str, critic_loss: str) -> dict:
    """A config dict as runs recorded it while V's loss was called critic_loss and weighting did not exist."""
    d = base.get_config().to_dict()
    del d["value_loss"], d["weighting"]
    d.update(algorithm=algorithm, critic_loss=critic_loss)
    return d


@pytest.mark.parametrize("algorithm, critic_loss, acted_with", [
    ("idql", "quantile", "quantile"), ("idql", "exponential", "exponential"), ("idql", "expectile", "expectile"),
    ("aligniql", "quantile", "align"), ("aligniql_hard", "expectile", "align_hard"), ("iql", "expectile", None)])
def test_an_old_config_reads_as_it_ran(algorithm, critic_loss, acted_with):
    cfg = ml_collections.ConfigDict(upgrade_config(old_config(algorithm, critic_loss)))
    assert "critic_loss" not in cfg and cfg.value_loss == critic_loss
    assert natural_weighting(cfg) == acted_with     # old IDQL weighed by its critic loss's name
    check_config(cfg)
    learner = Learner(tiny_config(algorithm, value_loss=cfg.value_loss, weighting=cfg.weighting), OBS, ACT, CPU)
    learner.update(batch())


def test_the_committed_runs_configs_still_build_their_learner():
    # what study.evaluate and study.lift do with them: the learner (V's loss) and its evaluation policy
    from actor.actor_loop import load_config_json

    paths = sorted(ROOT.glob("results/**/config.json"))
    assert paths, "no committed run configs found"
    for path in paths[:: max(1, len(paths) // 6)]:
        cfg = load_config_json(path)
        assert "critic_loss" not in cfg and cfg.value_loss == "expectile", path
        expected = {"idql": "expectile", "aligniql": "align", "aligniql_hard": "align_hard"}[cfg.algorithm]
        assert natural_weighting(cfg) == expected, path
        learner = Learner(cfg, OBS, ACT, CPU)
        learner.train(False)
        actions, _ = act(learner.acting_policy(mode="argmax", num_candidates=2), torch.zeros(1, OBS))
        assert torch.isfinite(actions).all()


def test_a_config_still_naming_critic_loss_is_refused_pointing_to_value_loss():
    cfg = tiny_config()
    cfg.critic_loss = "quantile"                     # a config file written for the old name
    with pytest.raises(ConfigError, match="config.value_loss"):
        check_config(cfg)
    with pytest.raises(ConfigError, match="config.value_loss"):
        Learner(cfg, OBS, ACT, CPU)                  # not silently trained with the default loss
    both = {**old_config("idql", "quantile"), "value_loss": "expectile"}
    with pytest.raises(ConfigError, match="critic_loss='quantile'.*value_loss='expectile'"):
        upgrade_config(both)


def test_the_old_flag_on_the_command_line_points_to_the_new_name(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "launch.pretrain", f"--config.workdir={tmp_path}",
                           "--config.critic_loss=quantile"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "--config.critic_loss" in line]
    assert len(lines) == 1 and "config.value_loss" in lines[0], proc.stderr[-2000:]


# ------------------------------------------------------------------ online settings: checked in config_check
@pytest.mark.parametrize("field, value", [
    ("online.exploration", "greedy"), ("online.eval_mode", "best"), ("online.exploration_weighting", "nonexistent"),
    ("online.num_candidates", 0), ("online.actor_mu_dtype", "float16"), ("online.mu_lr_schedule", "linear"),
    ("online.online_batch_size", 0), ("online.offline_batch_size", 0), ("online.updates_per_env_step", 0.0),
    ("online.min_replay_size", 10**7), ("online.mu_steps_per_update", -1), ("online.replay_port", 70000),
    ("online.num_actors", 0), ("online.mu_lr_horizon", 0.5)])
def test_bad_online_settings_are_refused_naming_the_field(field, value):
    cfg = tiny_config()
    set_field(cfg, field, value)
    with pytest.raises(ConfigError, match=rf"config\.{field}="):
        check_config(cfg)


# ------------------------------------------------------------------ CONVENTIONS.md: no role imports launch/, study/
def test_no_role_folder_imports_launch_or_study():
    found = []
    for folder in ("learner", "actor", "replay", "networks", "data"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("launch", "study")]
    assert not found, found
