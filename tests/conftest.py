"""Shared pytest fixtures.

Tests must never read or write the user's real Minari store (~/.minari), and
must not depend on trained behaviour-policy weights being present, so both
are replaced here.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

# Tests share 2 cores with subprocesses they start; torch's one-thread-per-core default
# oversubscribes them and spin-waits (measured ~50x slower under load).
torch.set_num_threads(1)


class StandInPolicy:
    """Deterministic linear-tanh policy standing in for data/behavior weights
    (for the "mean-noise" recipe, which adds the noise itself).

    Each (env, level) gets different weights, so medium-replay levels differ.
    """

    def __init__(self, obs_dim: int, act_dim: int, key: int):
        rng = np.random.default_rng(key)
        self.w = (0.3 * rng.standard_normal((obs_dim, act_dim))).astype(np.float32)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.tanh(np.asarray(obs, dtype=np.float32) @ self.w).astype(np.float32)


_DIMS = {"Hopper-v5": (11, 3), "HalfCheetah-v5": (17, 6)}
_LEVELS = ("medium", "replay0", "replay1", "replay2", "replay3")


def stand_in_loader(env_id: str, level: str) -> StandInPolicy:
    """Same signature as data.behavior.policy.load_behavior_policy."""
    obs_dim, act_dim = _DIMS[env_id]
    return StandInPolicy(obs_dim, act_dim, key=1000 * len(env_id) + _LEVELS.index(level))


@contextmanager
def _env_var(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@pytest.fixture
def minari_datasets_path(tmp_path, monkeypatch):
    """A fresh, empty Minari store for one test (MINARI_DATASETS_PATH)."""
    path = tmp_path / "minari_store"
    path.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_hopper_dataset(tmp_path_factory):
    """A small made Hopper-v5 'medium' OfflineDataset (stand-in policy), built once.

    For learner/actor tests that need real-shaped data without the cost of
    the 100k-transition default dataset.
    """
    from data import load_dataset
    from data.make import make_dataset

    store = tmp_path_factory.mktemp("minari_session_store")
    with _env_var("MINARI_DATASETS_PATH", str(store)):
        make_dataset("Hopper-v5", "medium", num_transitions=2000, seed=0,
                     dataset_id="local/hopper/tiny-medium-v0", ref_episodes=2, num_envs=4,
                     policy_loader=stand_in_loader, log=None, actions="mean-noise")
        return load_dataset("local/hopper/tiny-medium-v0")


def make_store(tmp_path_factory, dataset_id: str, num_transitions: int):
    """A Minari store in a temp dir holding one small made Hopper dataset (stand-in policy).

    For end-to-end tests whose subprocesses find the dataset by id through
    MINARI_DATASETS_PATH; the variable is restored afterwards.
    """
    from data.make import make_dataset

    path = tmp_path_factory.mktemp("store")
    with _env_var("MINARI_DATASETS_PATH", str(path)):
        make_dataset("Hopper-v5", "medium", num_transitions=num_transitions, seed=0, dataset_id=dataset_id,
                     ref_episodes=2, num_envs=4, policy_loader=stand_in_loader, log=None,
                     actions="mean-noise")
    return path


# ------------------------------------------------------------------ shared by the end-to-end finetuning tests

FT_DATASET_ID = "local/hopper/ft-medium-v0"


@pytest.fixture(scope="session")
def ft_store(tmp_path_factory):
    """The Minari store of the finetuning end-to-end tests (tests/test_finetune.py, tests/test_ray_launcher.py):
    one small made Hopper dataset, made once per session (per xdist worker)."""
    return make_store(tmp_path_factory, FT_DATASET_ID, 2000)


@pytest.fixture(scope="session")
def ft_pretrained(ft_store, tmp_path_factory):
    """A tiny pretrained checkpoint on FT_DATASET_ID (launch.pretrain in-process), made once per session for the
    tests that only need *a* checkpoint to pass as --pretrained. Tests copy it before writing beside it."""
    from launch.pretrain import train
    from tests.test_pretrain import small_config

    with _env_var("MINARI_DATASETS_PATH", str(ft_store)):
        cfg = small_config(tmp_path_factory.mktemp("ft_pretrained"), dataset=FT_DATASET_ID,
                           num_critic_steps=30, num_actor_steps=30)
        cfg.critic_hidden, cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks = (64, 64), 32, 64, 1
        pre = train(cfg, resume=False)
    return Path(pre["run_dir"]) / "checkpoint.pt"


# ------------------------------------------------------------------ pytest-xdist: scopes and order (pyproject: -n 2)
#
# pytest-xdist 3.8's own --dist loadgroup does nothing under pytest 9.2 (it renames item._nodeid, which pytest 9
# no longer reads), so the scopes are named here, by test id, and the controller schedules by them (--dist
# loadscope with the scheduler below). A scope runs whole on one worker, in one go.

def xdist_scope(nodeid: str) -> str:
    """The unit of work a test belongs to."""
    path, _, name = nodeid.partition("::")
    # every Ray cluster in one worker, one at a time: test_ray_launcher waits for Ray's processes newer than its
    # start to be gone, and would see another worker's
    if path == "tests/test_ray_launcher.py" or (path == "tests/test_finetune.py" and "[ray-" in name):
        return "ray"
    if path == "tests/test_finetune.py":     # each end-to-end run on its own (they share only session fixtures)
        return nodeid
    return path                              # otherwise a module: its module fixtures are made once (the tiny study)


# Started first (longest first), so that neither worker is left with a long test at the end; the rest follow in
# collection order.
SLOW_FIRST = ("ray", "tests/test_finetune.py", "tests/test_results_smoke.py", "tests/test_own_environment.py",
              "tests/test_pretrain.py", "tests/test_pretrain_processes.py", "tests/test_action_bounds.py")


def _slow_rank(nodeid: str) -> int:
    scope = xdist_scope(nodeid)
    for rank, prefix in enumerate(SLOW_FIRST):
        if scope == prefix or scope.startswith(prefix + "::"):
            return rank
    return len(SLOW_FIRST)


def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):       # an xdist worker: every worker collects the same order
        items.sort(key=lambda item: _slow_rank(item.nodeid))     # stable: collection order within a rank


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    config.option.loadscopereorder = False   # keep the order above, not "most tests first"
    return ScopeScheduling(config, log)
