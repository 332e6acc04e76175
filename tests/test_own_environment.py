"""An environment of one's own: datasets made with any policy, the config's overrides, the walk-through.

The walk-through test runs the commands of README.md's "## Your own environment" section as a user would,
each with `TEST_BUDGET`'s small-budget flags appended (absl and ml_collections take the last value
of a repeated flag), run directories moved under the test's tmp dir, and the Minari store in a tmp
dir. The others check the pieces in-process on a few hundred transitions.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from errors import ConfigError, DatasetError

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Your own environment"

TINY_LEARNER = ["--config.critic_hidden=(64,64)", "--config.diffusion.width=32", "--config.diffusion.inner=64",
                "--config.diffusion.num_blocks=1", "--config.critic_batch_size=64", "--config.actor_batch_size=64",
                "--config.num_critic_steps=200", "--config.num_actor_steps=200", "--config.log_interval=100",
                "--config.checkpoint_interval=200", "--config.eval.interval=200", "--config.eval.episodes=1",
                "--config.eval.num_candidates=(4,)", "--config.eval.modes=('argmax',)",
                "--config.eval.max_episode_steps=50", "--config.eval.background=off", "--config.wandb.mode=disabled"]
# Flags appended to each documented command: the same programs, on budgets of seconds.
TEST_BUDGET = {
    "launch.make_dataset": ["--ref_episodes=3", "--num_envs=2"],     # + the budget of its own kind, below
    "launch.pretrain": TINY_LEARNER,
    "launch.finetune": TINY_LEARNER + [
        "--config.online.num_actors=1", "--config.online.envs_per_actor=2", "--config.online.num_candidates=4",
        "--config.online.min_replay_size=200", "--config.online.total_env_steps=500",
        "--config.online.online_batch_size=32", "--config.online.offline_batch_size=32",
        "--config.online.publish_interval=50", "--config.online.weight_sync_interval=50",
        "--config.online.eval_interval=500", "--config.online.eval_episodes=1", "--config.online.log_interval=50",
        "--config.online.replay_checkpoint_interval_s=5"],
    "study.evaluate": ["--episodes=1", "--num_candidates=4"],
}


def walkthrough() -> tuple[str, list[str], str]:
    """(where it was read, the bash block's commands, the python block) of the walk-through."""
    def section_of(text: str) -> str:
        if SECTION not in text:
            return ""
        return re.split(r"\n## ", text[text.index(SECTION) + len(SECTION):], maxsplit=1)[0]

    where, section = "README.md", section_of((ROOT / "README.md").read_text())
    bash = re.search(r"```bash\n(.*?)```", section, re.S)
    python = re.search(r"```python\n(.*?)```", section, re.S)
    assert bash, f"{where}: the section '{SECTION}' has no ```bash block of commands"
    commands = [c.strip() for c in bash.group(1).replace("\\\n", " ").splitlines()]
    commands = [c for c in commands if c and not c.startswith("#")]
    return where, commands, textwrap.dedent(python.group(1)) if python else ""


def moved(value: str, tmp: Path) -> str:
    """Run directories of the walk-through (runs/...) go under the test's tmp dir."""
    return str(tmp / value) if value.startswith("runs/") else value


def flag(args: list[str], name: str) -> str | None:
    found = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return found[-1] if found else None


def run_documented(cmd: str, tmp: Path, env: dict, log: Path) -> tuple[str, list[str], str]:
    words = shlex.split(cmd, comments=True)
    assert words[:2] == ["python", "-m"], f"walk-through command does not start with 'python -m': {cmd}"
    module = words[2]
    args = [re.sub(r"^(--[\w.]+=)(runs/.*)$", lambda m: m.group(1) + moved(m.group(2), tmp), a) for a in words[3:]]
    extra = list(TEST_BUDGET.get(module, []))
    if module == "launch.make_dataset":
        extra += ["--episodes=2", "--num_candidates=4"] if flag(args, "episodes") else ["--transitions=1500"]
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", module, *args, *extra], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    with open(log, "a") as fh:
        fh.write(f"$ {cmd}  [{time.time() - t0:.1f}s]\n{out}\n")
    assert proc.returncode == 0, f"{cmd}\n{out[-4000:]}"
    return module, args, out


def test_walkthrough_runs_as_documented(tmp_path):
    """Data with a random policy, pretraining, finetuning, evaluation and data of the finetuned policy,
    as the walk-through says; what each step leaves is checked."""
    where, commands, python_block = walkthrough()
    modules = [shlex.split(c)[2] for c in commands]
    assert {"launch.make_dataset", "launch.pretrain", "launch.finetune"} <= set(modules), (where, modules)
    store = tmp_path / "minari"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(MINARI_DATASETS_PATH=str(store), HOME=str(tmp_path), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    log = tmp_path / "walkthrough.log"
    made = []
    for cmd in commands:
        module, args, out = run_documented(cmd, tmp_path, env, log)
        if module == "launch.make_dataset":
            dataset_id = re.search(r"Train on it with --config\.dataset=(\S+)\.", out).group(1)
            assert (store / dataset_id / "data").is_dir(), out
            made.append((dataset_id, flag(args, "env")))
        elif module == "launch.pretrain":
            assert (Path(flag(args, "run_dir")) / "checkpoint.pt").is_file(), out
            # the console says which of domain / reference scores were guessed and which given
            assert re.search(r"domain \w+ \((guessed|given)", out) and "reference scores" in out, out
        elif module == "launch.finetune":
            assert (Path(flag(args, "run_dir")) / "learner_checkpoint.pt").is_file(), out
        elif module == "study.evaluate":
            results = json.loads(Path(flag(args, "out")).read_text())["results"]
            summary = next(iter(next(iter(results.values())).values()))
            assert np.isfinite(summary["return_mean"]), results
            assert "score_mean" in summary, "the dataset's reference scores reach the evaluation"

    # Actions are stored as the environment takes them: uniform random InvertedPendulum actions
    # fill [-3, 3], far beyond the learner's [-1, 1].
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(store))
        from minari.dataset.minari_storage import MinariStorage

        storage = MinariStorage.read(store / made[0][0] / "data")
        actions = np.concatenate([ep["actions"] for ep in storage.get_episodes(range(storage.total_episodes))])
        high = float(np.asarray(storage.action_space.high).max())
        assert np.abs(actions).max() <= high and np.abs(actions).max() > 1.5, (actions.min(), actions.max())

        if python_block:       # the Python snippet acts with the trained policy, in the env's units
            code = re.sub(r"([\"'])(runs/[^\"']*)\1", lambda m: repr(moved(m.group(2), tmp_path)), python_block)
            scope: dict = {}
            cwd = os.getcwd()
            os.chdir(ROOT)
            try:
                exec(compile(code, f"{where} python block", "exec"), scope)
            finally:
                os.chdir(cwd)
            assert scope["policy"].act(scope["obs"]).shape == scope["env"].action_space.shape


# ------------------------------------------------------------------ datasets of any environment

MY_ENV = textwrap.dedent('''
    """A 1-D point pushed towards 0: observation [x, v], force in [-2, 2]."""
    import gymnasium as gym
    import numpy as np


    class Reach1D(gym.Env):
        def __init__(self):
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
            self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.s = self.np_random.uniform(-1, 1, size=2)
            return self.s.copy(), {}

        def step(self, action):
            x, v = self.s
            v = 0.9 * v + 0.05 * float(action[0])
            self.s = np.array([x + v, v])
            return self.s.copy(), -abs(x + v), bool(abs(x + v) > 3), False, {}


    gym.register("Reach1D-v0", entry_point="own_env_for_test:Reach1D", max_episode_steps=40)
''')


def test_an_environment_of_ones_own_is_recorded_and_rebuilt(minari_datasets_path, tmp_path, monkeypatch):
    """`module:Id` imports the module that registers the env; the dataset records the entry point, so
    a later process rebuilds the env from the dataset alone; actions stay in the env's units."""
    from actor.envs import make_env
    from data import load_dataset
    from data.make import make_policy_dataset

    (tmp_path / "own_env_for_test.py").write_text(MY_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))
    constant = lambda obs: np.full((len(obs), 1), 1.5, dtype=np.float32)  # noqa: E731
    summary = make_policy_dataset("own_env_for_test:Reach1D-v0", constant, episodes=6, noise=0.0, seed=3,
                                  num_envs=2, ref_episodes=2, ref_max_score=0.0, policy_label="push", log=None)
    assert summary["dataset_id"] == "local/own_env_for_test-reach1d/policy-v0" and summary["episodes"] == 6
    ds = load_dataset(summary["dataset_id"])
    assert ds.env_id == "Reach1D-v0" and json.loads(ds.env_spec_json)["entry_point"] == "own_env_for_test:Reach1D"
    assert ds.action_bounds.low == (-2.0,) and ds.action_bounds.high == (2.0,)
    np.testing.assert_allclose(ds.actions, 0.75, atol=1e-6)   # 1.5 in [-2, 2] is 0.75 in the learner's [-1, 1]
    assert ds.ref_max_score == 0.0 and ds.ref_min_score < 0.0
    env = make_env(ds, seed=0)
    assert env.observation_space.shape == (2,)
    env.close()


def test_policy_datasets_are_seeded_noised_in_range_units_and_budgeted(minari_datasets_path):
    """Same seed, same data; --noise is a share of the half-range; --episodes is exact, --transitions
    keeps whole episodes; actions never leave the env's box."""
    from data.make import make_policy_dataset
    from minari.dataset.minari_storage import MinariStorage

    def actions(dataset_id):
        s = MinariStorage.read(minari_datasets_path / dataset_id / "data")
        eps = list(s.get_episodes(range(s.total_episodes)))
        return np.concatenate([e["actions"] for e in eps]), eps

    zero = lambda obs: np.zeros((len(obs), 1), dtype=np.float32)  # noqa: E731
    kw = dict(noise=0.2, seed=1, num_envs=3, ref_episodes=1, log=None)
    make_policy_dataset("InvertedPendulum-v5", zero, episodes=7, dataset_id="local/ip/a-v0", **kw)
    make_policy_dataset("InvertedPendulum-v5", zero, episodes=7, dataset_id="local/ip/b-v0", **kw)
    a, eps = actions("local/ip/a-v0")
    b, _ = actions("local/ip/b-v0")
    assert len(eps) == 7 and np.array_equal(a, b)
    # InvertedPendulum's half-range is 3: noise 0.2 of it is std 0.6 in the env's units
    assert 0.45 < a.std() < 0.75 and np.abs(a).max() <= 3.0

    summary = make_policy_dataset("Pendulum-v1", "random", transitions=450, seed=0, num_envs=2, ref_episodes=1,
                                  log=None)
    assert summary["transitions"] == 600 and summary["episodes"] == 3     # 200-step episodes, kept whole
    r, _ = actions(summary["dataset_id"])
    assert r.min() < -1.5 and r.max() > 1.5 and np.abs(r).max() <= 2.0  # uniform over Pendulum's [-2, 2]


@pytest.mark.parametrize("kwargs, match", [
    (dict(env_id="CartPole-v1"), "not a continuous box"),
    (dict(env_id="NoSuchEnv-v0"), "cannot be built"),
    (dict(noise=0.1), "uniform random actions"),
    (dict(episodes=3, transitions=10), "exactly one budget"),
    (dict(episodes=0), "at least 1"),
    (dict(ref_min_score=5.0, ref_max_score=1.0), "must be below"),
    (dict(policy="expert"), "'random' or a callable"),
])
def test_bad_requests_for_policy_datasets_are_refused_plainly(minari_datasets_path, kwargs, match):
    from data.make import make_policy_dataset
    from errors import UserFacingError

    args = dict(env_id="Pendulum-v1", policy="random", episodes=2, log=None) | kwargs
    if "transitions" in kwargs and "episodes" not in kwargs:
        args.pop("episodes")
    with pytest.raises(UserFacingError, match=match):
        make_policy_dataset(args.pop("env_id"), args.pop("policy"), **args)
    assert not any(minari_datasets_path.rglob("data")), "nothing is written for a refused request"


def test_launch_make_dataset_needs_a_policy_for_envs_without_a_recipe(minari_datasets_path):
    proc = subprocess.run([sys.executable, "-m", "launch.make_dataset", "--env=Pendulum-v1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "--policy=random" in proc.stderr and "Traceback" not in proc.stderr


def test_write_minari_docstring_example_runs(minari_datasets_path):
    """The Python route's documented example writes a dataset that loads, actions in the env's units."""
    from data import load_dataset
    from data.minari_io import write_minari

    code = textwrap.dedent(write_minari.__doc__.split("::\n", 1)[1].split("\n\n    Store", 1)[0])
    exec(compile(code, "write_minari docstring", "exec"), {})
    ds = load_dataset("local/invertedpendulum/mine-v0")
    assert ds.ref_min_score == 5.0 and ds.ref_max_score == 1000.0 and ds.action_bounds.high == (3.0,)
    assert len(ds.episode_returns) == 20


# ------------------------------------------------------------------ domain, reference scores, reward scale

@pytest.fixture(scope="module")
def pendulum_store(tmp_path_factory):
    """Two Pendulum-v1 datasets of uniform random actions: 4 episodes, and 1 (no return spread)."""
    from data.make import make_policy_dataset

    store = tmp_path_factory.mktemp("own_env_store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(store))
        make_policy_dataset("Pendulum-v1", "random", episodes=4, seed=0, num_envs=2, ref_episodes=1, log=None)
        make_policy_dataset("Pendulum-v1", "random", episodes=1, seed=0, num_envs=1, ref_episodes=1,
                            dataset_id="local/pendulum/one-v0", log=None)
    return store


def test_domain_and_reference_scores_are_guessed_or_given_and_said(pendulum_store, monkeypatch):
    from data import load_dataset
    from data.rewards import apply_config

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(pendulum_store))
    lines: list[str] = []
    ds = load_dataset("local/pendulum/random-v0")
    tf = apply_config(ds, "", "", "auto", say=lines.append)
    spread = float(ds.episode_returns.max() - ds.episode_returns.min())
    assert ds.domain == "locomotion" and tf.scale == pytest.approx(1000.0 / spread)
    assert "domain locomotion (guessed" in lines[-1] and "no reference scores" in lines[-1]

    ds = load_dataset("local/pendulum/random-v0")
    tf = apply_config(ds, "adroit", "-1200,0", "auto", say=lines.append)
    assert ds.domain == "adroit" and (tf.scale, tf.shift) == (1.0, 0.0)
    assert (ds.ref_min_score, ds.ref_max_score) == (-1200.0, 0.0)
    assert float(ds.normalized_score(-600.0)) == pytest.approx(50.0)
    assert "domain adroit (given: config.domain)" in lines[-1]
    assert "reference scores -1200, 0 (given: config.reference_scores)" in lines[-1]

    ds = load_dataset("local/pendulum/random-v0")
    assert apply_config(ds, "pointmaze", "", "auto", say=None).shift == -1.0
    assert apply_config(ds, "pointmaze", "", "none", say=None).to_dict() == {"scale": 1.0, "shift": 0.0}


@pytest.mark.parametrize("field, value, match", [
    ("domain", "robotics", "config.domain='robotics'"),
    ("reference_scores", "0", "config.reference_scores='0'"),
    ("reference_scores", "10,0", "min < max"),
    ("reference_scores", "0,inf", "finite"),
])
def test_config_check_names_a_bad_domain_or_reference_scores(field, value, match):
    from configs import quickstart
    from learner.config_check import check_config

    cfg = quickstart.get_config()
    cfg[field] = value
    with pytest.raises(ConfigError, match=re.escape(match)):
        check_config(cfg)
    cfg[field] = {"domain": "pointmaze", "reference_scores": "(-5, 1e3)"}[field]
    check_config(cfg)


def test_equal_returns_point_to_reward_scale_none_which_trains(pendulum_store, monkeypatch, tmp_path):
    """One complete episode has no locomotion scale: refused, naming --config.reward_scale=none; with it
    pretraining runs (a few steps) on the raw rewards."""
    from configs import quickstart
    from data import load_dataset
    from data.rewards import reward_transform_for
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(pendulum_store))
    with pytest.raises(DatasetError, match=re.escape("--config.reward_scale=none")):
        reward_transform_for(load_dataset("local/pendulum/one-v0"))
    cfg = quickstart.get_config()
    for field, value in dict(dataset="local/pendulum/one-v0", reward_scale="none", num_critic_steps=4,
                             num_actor_steps=4, critic_batch_size=16, actor_batch_size=16, critic_hidden=(16, 16),
                             log_interval=2, checkpoint_interval=4, workdir=str(tmp_path)).items():
        cfg[field] = value
    cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks = 16, 32, 1
    cfg.eval.interval, cfg.eval.episodes, cfg.eval.num_candidates = 4, 1, (2,)
    cfg.eval.modes, cfg.eval.max_episode_steps, cfg.eval.background, cfg.wandb.mode = ("argmax",), 5, "off", "disabled"
    summary = train(cfg, resume=False, run_dir=tmp_path / "run")
    assert summary["step"] == 4 and (tmp_path / "run" / "checkpoint.pt").is_file()
