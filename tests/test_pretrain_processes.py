"""Pretraining with μ in a second process (config.pretrain_processes="two", learner/behavior_worker.py).

What a user relies on: a run stopped and resumed ends bit for bit as an uninterrupted one (μ's
worker restarts from the checkpoint's μ and RNG state); both μ and the critic learn; the worker
never outlives pretraining, whether it ends, fails, or the worker itself dies; "auto" keeps one
process where a second cannot help.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import make_store
from tests.test_pretrain import small_config

DATASET_ID = "local/hopper/e2e-processes-v0"
# with pytest-xdist: the tests comparing with the uninterrupted run share one worker, and so its one run
SAME_RUN = pytest.mark.xdist_group("pretrain_processes_full_run")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory, DATASET_ID, 3000)


def two(workdir: Path, **overrides):
    """test_pretrain's small run with μ in a second process, evaluated briefly (one episode of 10 steps)."""
    brief = {"eval.episodes": 1, "eval.max_episode_steps": 10, "eval.modes": ("argmax",)}
    return small_config(workdir, dataset=DATASET_ID, pretrain_processes="two", **{**brief, **overrides})


def learner_state(summary) -> dict:
    return torch.load(Path(summary["run_dir"]) / "checkpoint.pt", weights_only=True)


def children() -> set[int]:
    import multiprocessing

    return {p.pid for p in multiprocessing.active_children() if p.name == "pretrain-behavior"}


@pytest.fixture(scope="module")
def uninterrupted(store, tmp_path_factory):
    from launch.pretrain import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(store))
        return train(two(tmp_path_factory.mktemp("full")), resume=False)


def assert_same_run(full, resumed) -> None:
    """Every module tensor, every optimiser tensor, both RNG states and every evaluation equal."""
    a, b = learner_state(full), learner_state(resumed)
    for name, module_state in a["learner"]["modules"].items():
        for key, tensor in module_state.items():
            assert torch.equal(tensor, b["learner"]["modules"][name][key]), f"{name}.{key} differs after resume"
    for name, opt in a["learner"]["optimizers"].items():
        for index, param_state in opt["state"].items():
            for key, tensor in param_state.items():
                assert torch.equal(tensor, b["learner"]["optimizers"][name]["state"][index][key]), \
                    f"optimizer {name}[{index}].{key} differs after resume"
    assert a["learner"]["schedulers"] == b["learner"]["schedulers"]
    assert torch.equal(a["behavior_rng"], b["behavior_rng"]) and torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert full["history"] == resumed["history"]       # same evaluations, including the one before the stop


@SAME_RUN
def test_two_processes_resume_bit_for_bit(store, uninterrupted, tmp_path, monkeypatch):
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    part = train(two(tmp_path, stop_after_steps=20), resume=False)
    assert part["stopped"] and part["step"] == 20
    stopped = learner_state(part)
    assert stopped["learner"]["actor_steps"] == 20 and "behavior_rng" in stopped
    resumed = train(two(tmp_path), resume=True)
    assert resumed["step"] == 40 and not resumed["stopped"]
    assert_same_run(uninterrupted, resumed)
    assert children() == set()


@SAME_RUN
def test_a_signal_stops_at_the_next_sync_point_and_the_worker_ignores_signals(store, uninterrupted, tmp_path,
                                                                                monkeypatch):
    # Ctrl-C reaches the whole process group: the worker must go on (the main process decides where to
    # stop), and the main loop stops at its next sync point (log_interval 10: step 20), not at step 13
    import signal

    from learner import agent
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    calls = []

    def signalled_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 13:
            (worker,) = children()
            os.kill(worker, signal.SIGINT)
            os.kill(worker, signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    original = agent.Learner.value_and_critic_step
    monkeypatch.setattr(agent.Learner, "value_and_critic_step", signalled_step)
    part = train(two(tmp_path), resume=False)
    assert part["stopped"] and part["interrupted"] and part["step"] == 20
    monkeypatch.setattr(agent.Learner, "value_and_critic_step", original)
    resumed = train(two(tmp_path), resume=True)
    assert_same_run(uninterrupted, resumed)
    assert children() == set()


def test_two_processes_train_mu_and_critic(store, tmp_path, monkeypatch):
    from launch.pretrain import train
    from learner.agent import Learner
    from learner.config_check import check_config

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    cfg = two(tmp_path, num_critic_steps=60, num_actor_steps=100, log_interval=20, checkpoint_interval=100,
              **{"eval.interval": 100})
    done = train(cfg, resume=False)
    state = learner_state(done)["learner"]
    assert state["actor_steps"] == 100 and state["critic_steps"] == 60
    # both moved from their initial weights (the same seed builds the same initial networks)
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    initial = Learner(cfg, 11, 3, torch.device("cpu")).state_dict()["modules"]
    for name in ("behavior", "behavior_ema", "critic", "value"):
        moved = [not torch.equal(t, initial[name][k]) for k, t in state["modules"][name].items()
                 if t.is_floating_point()]
        assert any(moved), f"{name} did not train"
    # μ's denoising loss over the whole dataset, with fixed timesteps and noise, fell from its initial value
    from data import load_dataset
    data = load_dataset(DATASET_ID)
    obs, act = (torch.as_tensor(x, dtype=torch.float32) for x in (data.observations, data.actions))
    generator = torch.Generator().manual_seed(1)
    t = torch.randint(0, cfg.diffusion.num_steps, (obs.shape[0],), generator=generator)
    noise = torch.randn(act.shape, generator=generator)
    learner = Learner(cfg, 11, 3, torch.device("cpu"))
    learner.train(False)
    with torch.no_grad():
        before = float(learner.behavior.loss(obs, act, t, noise))
        learner.load_state_dict(state)
        after = float(learner.behavior.loss(obs, act, t, noise))
    assert after < 0.9 * before, (before, after)
    # and its loss reached the log at each sync point, from the worker's snapshots
    import json
    rows = [json.loads(line) for line in (Path(done["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if "train/loss/behavior" in r]) == 5
    assert len([r for r in rows if "train/loss/critic" in r]) == 3


def test_worker_is_gone_after_an_error_in_the_main_loop(store, tmp_path, monkeypatch):
    from learner import agent
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    seen = []

    def failing_step(self, *args, **kwargs):    # the main process's critic step fails at its 5th call
        seen.append(children())
        if len(seen) == 5:
            raise RuntimeError("injected failure")
        return original(self, *args, **kwargs)

    original = agent.Learner.value_and_critic_step
    monkeypatch.setattr(agent.Learner, "value_and_critic_step", failing_step)
    with pytest.raises(RuntimeError, match="injected failure"):
        train(two(tmp_path), resume=False)
    assert len(seen[-1]) == 1                 # the worker ran while the main loop did
    assert children() == set()
    pid = next(iter(seen[-1]))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_worker_that_dies_ends_pretraining_with_a_clear_error(store, tmp_path, monkeypatch):
    from learner import behavior_worker
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    original = behavior_worker.BehaviorWorker.snapshot

    def snapshot_after_a_crash(self, step):
        os.kill(self.process.pid, 9)          # the worker dies (killed outright) before the first sync point
        self.process.join()
        return original(self, step)

    monkeypatch.setattr(behavior_worker.BehaviorWorker, "snapshot", snapshot_after_a_crash)
    with pytest.raises(behavior_worker.BehaviorWorkerFailed, match=r"behaviour-model process .*exited before delivering μ at step .*pretraining stopped"):
        train(two(tmp_path), resume=False)
    assert children() == set()


def test_a_worker_that_fails_reports_its_error(store, tmp_path, monkeypatch):
    from learner import behavior_worker
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    original = behavior_worker.BehaviorWorker.__init__

    def start_with_wrong_observations(self, cfg, learner, obs, act, rng):   # μ's state will not fit its network
        original(self, cfg, learner, obs[:, :5], act, rng)

    monkeypatch.setattr(behavior_worker.BehaviorWorker, "__init__", start_with_wrong_observations)
    with pytest.raises(behavior_worker.BehaviorWorkerFailed, match=r"failed: RuntimeError: Error\(s\) in loading"):
        train(two(tmp_path), resume=False)
    assert children() == set()


def test_auto_keeps_one_process_where_two_cannot_help(monkeypatch, tmp_path):
    from learner.behavior_worker import resolve_processes

    cpu = torch.device("cpu")
    cfg_steps = {"num_critic_steps": 3000, "num_actor_steps": 3000}
    cfg = small_config(tmp_path, **cfg_steps)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    assert resolve_processes(cfg, cpu) == "two"
    for changed in ({"algorithm": "iql"}, {"learner_step": "compile"}, {"num_critic_steps": 0},
                    {"num_actor_steps": 40}, {"pretrain_processes": "one"}):
        assert resolve_processes(small_config(tmp_path, **{**cfg_steps, **changed}), cpu) == "one", changed
    assert resolve_processes(cfg, torch.device("meta")) == "one"      # not a CPU device
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert resolve_processes(cfg, cpu) == "one"
    assert resolve_processes(small_config(tmp_path, pretrain_processes="two"), cpu) == "two"


@pytest.mark.parametrize("overrides, match", [
    ({"pretrain_processes": "three"}, "choose auto, one, two"),
    ({"pretrain_processes": "two", "algorithm": "iql"}, "no diffusion μ"),
])
def test_invalid_settings_are_rejected(tmp_path, overrides, match):
    from errors import ConfigError
    from learner.config_check import check_config

    with pytest.raises(ConfigError, match=match):
        check_config(small_config(tmp_path, **overrides))
