"""Goal-reaching tasks with real gymnasium-robotics environments and real Minari datasets.

PointMaze datasets are made by the platform's own maker (data/pointmaze.py);
AntMaze and Adroit datasets are written here under their real Minari ids by
stepping the real environments, with the specs the official datasets store, since
those cannot be downloaded. Every dataset lives in a temp store.
"""
from __future__ import annotations

import copy
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium_robotics")

from actor.envs import make_env  # noqa: E402
from actor.evaluator import evaluate  # noqa: E402
from data import load_dataset  # noqa: E402
from data.behavior.waypoints import GridPlanner  # noqa: E402
from data.dataset import register_robotics_envs  # noqa: E402
from data.goals import flat_layout  # noqa: E402
from data.minari_io import write_minari  # noqa: E402
from data.pointmaze import EVAL_GOAL_CELL, eval_env_spec, make_pointmaze_dataset  # noqa: E402
from data.rewards import reward_transform_for  # noqa: E402
from launch.run_names import eval_tag  # noqa: E402

UMAZE = "local/pointmaze/umaze-v0"          # configs/pointmaze.py's dataset id
MAZE_LAYOUT = [("achieved_goal", 0, 2), ("desired_goal", 2, 4), ("observation", 4, 8)]


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)      # MuJoCo may write MUJOCO_LOG.TXT into the working directory


@pytest.fixture(scope="module")
def maze_store(tmp_path_factory):
    """A temp Minari store with tiny sparse and dense UMaze datasets made by the maker (seed 0)."""
    store = tmp_path_factory.mktemp("maze_store")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(store))
    summaries = {
        "sparse": make_pointmaze_dataset("PointMaze_UMaze-v3", num_transitions=1500, seed=0, ref_episodes=2, log=None),
        "dense": make_pointmaze_dataset("PointMaze_UMazeDense-v3", num_transitions=400, seed=0, ref_episodes=1,
                                        log=None),
    }
    yield store, summaries
    mp.undo()


@pytest.fixture
def in_store(maze_store, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_store[0]))
    return maze_store[1]


def raw_episodes(dataset_id):
    """The stored episodes as Minari keeps them (dict observations), read past the platform's loader."""
    from minari.dataset.minari_storage import MinariStorage

    from data.minari_io import _dataset_dir

    storage = MinariStorage.read(_dataset_dir(dataset_id) / "data")
    return storage, list(storage.get_episodes(range(storage.total_episodes)))


class PlannerPolicy:
    """Drives the ball to the goal reading only the *flat* observation, by the documented layout."""

    def __init__(self, maze, move: bool = True, act_dim: int = 2):
        self.maze, self.planner, self.move, self.act_dim = maze, GridPlanner(maze.maze_map), move, act_dim

    def _cell(self, xy):
        return tuple(int(v) for v in self.maze.cell_xy_to_rowcol(xy))

    def act(self, obs, generator):
        out = []
        for o in obs.numpy().astype(np.float64):
            position, goal, velocity = o[0:2], o[2:4], o[6:8]
            route = self.planner.route(self._cell(position), self._cell(goal))
            target = self.maze.cell_rowcol_to_xy(np.array(route[0])) if len(route) > 1 else goal
            out.append(np.clip(10 * (target - position) - velocity, -1, 1) if self.move else np.zeros(self.act_dim))
        zeros = torch.zeros(len(out))
        return torch.as_tensor(np.stack(out), dtype=torch.float32), {"q": zeros, "v": zeros, "gap": zeros,
                                                                     "q_chosen": zeros}


# ---------------------------------------------------------------- one flattening everywhere

def test_flat_order_matches_the_stored_dict_and_the_env(in_store):
    storage, episodes = raw_episodes(UMAZE)
    ds = load_dataset(UMAZE)
    assert flat_layout(storage.observation_space) == MAZE_LAYOUT
    first = episodes[0]["observations"]
    t = len(episodes[0]["rewards"])
    for key, start, stop in MAZE_LAYOUT:          # the loader's columns are the stored groups, in that order
        np.testing.assert_allclose(ds.observations[:t, start:stop], first[key][:-1], rtol=1e-6)
    assert ds.domain == "pointmaze" and reward_transform_for(ds).shift == -1.0

    # The env built from the dataset flattens identically (same seed -> same first observation).
    env = make_env(ds, seed=3)
    assert flat_layout(env.unwrapped.observation_space) == MAZE_LAYOUT
    flat, _ = env.reset()
    raw = gym.make(eval_env_spec("PointMaze_UMaze-v3"))
    obs, _ = raw.reset(seed=3)
    np.testing.assert_array_equal(flat, np.concatenate([obs[k] for k, _, _ in MAZE_LAYOUT]).astype(np.float32))


# ---------------------------------------------------------------- the PointMaze maker

def test_pointmaze_dataset_has_the_official_layout(in_store):
    ds = load_dataset(UMAZE)
    storage, episodes = raw_episodes(UMAZE)
    meta = storage.metadata
    collect_spec, eval_spec = json.loads(meta["env_spec"]), json.loads(meta["eval_env_spec"])
    assert collect_spec["kwargs"]["continuing_task"] and collect_spec["kwargs"]["reset_target"]
    assert eval_spec["kwargs"]["continuing_task"] and not eval_spec["kwargs"]["reset_target"]
    i, j = EVAL_GOAL_CELL["umaze"]
    assert eval_spec["kwargs"]["maze_map"][i][j] == "g" and eval_spec["max_episode_steps"] == 300
    assert json.loads(ds.env_spec_json)["kwargs"]["maze_map"][i][j] == "g"    # the loader picks the eval env
    assert ds.ref_max_score > ds.ref_min_score >= 0.0

    assert ds.terminals.sum() == 0 and ds.timeouts.sum() == len(episodes) >= 10
    for prev, ep in zip(episodes, episodes[1:]):
        o, n = prev["observations"], ep["observations"]
        # one continuing run: each episode starts where the previous one ended, with a new goal
        np.testing.assert_array_equal(n["observation"][0], o["observation"][-1])
        assert not np.allclose(n["desired_goal"][0], o["desired_goal"][-1])
    for ep in episodes:
        o = ep["observations"]
        dist = np.linalg.norm(o["achieved_goal"][1:] - o["desired_goal"][1:], axis=1)
        np.testing.assert_array_equal(ep["rewards"], (dist <= 0.45).astype(np.float64))   # sparse reward
        assert ep["truncations"][-1] and not ep["truncations"][:-1].any()
        assert dist[-1] <= 0.45 or len(dist) == 300        # cut at success or at the time limit
        assert (dist[:-1] > 0.45).all()

    _, dense = raw_episodes("local/pointmaze/umaze-dense-v0")
    o = dense[0]["observations"]
    dist = np.linalg.norm(o["achieved_goal"][1:] - o["desired_goal"][1:], axis=1)
    np.testing.assert_allclose(dense[0]["rewards"], np.exp(-dist))


def test_pointmaze_maker_is_reproducible_from_its_seed(minari_datasets_path):
    def arrays(seed, dataset_id):
        make_pointmaze_dataset("PointMaze_UMaze-v3", num_transitions=300, seed=seed, dataset_id=dataset_id,
                               ref_episodes=1, log=None)
        ds = load_dataset(dataset_id)
        return ds.observations, ds.actions, ds.ref_min_score, ds.ref_max_score

    a, b, c = arrays(7, "local/pointmaze/a-v0"), arrays(7, "local/pointmaze/b-v0"), arrays(8, "local/pointmaze/c-v0")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2:] == b[2:]
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


# ---------------------------------------------------------------- success rate

def test_evaluator_reports_success_rate_and_scores_antmaze_by_it(in_store):
    ds = load_dataset(UMAZE)
    maze = make_env(ds, 0).unwrapped.maze

    def env_fn(seed):
        return make_env(ds, seed)

    cpu = torch.device("cpu")
    good = evaluate(PlannerPolicy(maze), env_fn, 2, seed=5, device=cpu, normalize=ds.normalized_score)
    still = evaluate(PlannerPolicy(maze, move=False), env_fn, 2, seed=5, device=cpu, normalize=ds.normalized_score)
    assert good.summary()["success_rate"] == 1.0 and still.summary()["success_rate"] == 0.0
    assert good.summary()["score_mean"] > 50 > still.summary()["score_mean"]       # maze2d: normalised return
    by_success = evaluate(PlannerPolicy(maze), env_fn, 2, seed=5, device=cpu, score_by_success=True)
    assert by_success.summary()["score_mean"] == 100.0                              # AntMaze: success in %
    hopper = evaluate(PlannerPolicy(maze, move=False, act_dim=3), lambda s: make_env("Hopper-v5", s), 1, seed=0, device=cpu,
                      max_episode_steps=3)
    assert "success_rate" not in hopper.summary()                                   # no success signal, no rate


def test_online_rewards_get_the_datasets_transform(in_store):
    pytest.importorskip("reverb")
    from actor.actor_loop import VectorActor
    from configs import pointmaze

    ds = load_dataset(UMAZE)
    cfg = pointmaze.get_config()
    cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks = 16, 32, 1
    cfg.online.envs_per_actor, cfg.online.num_candidates = 2, 2
    meta = {"obs_dim": ds.obs_dim, "act_dim": ds.act_dim, "env_id": ds.env_id, "env_spec_json": ds.env_spec_json,
            "reward_transform": reward_transform_for(ds).to_dict()}
    actor = VectorActor(cfg, meta, seed=0)
    try:
        out = actor.step(np.zeros((2, 2), np.float32))
    finally:
        actor.close()
    assert out["observation"].shape == (2, 8)
    np.testing.assert_array_equal(out["reward"], out["raw_reward"] - 1.0)      # r - 1, as the offline data


def test_pointmaze_config_pretrains_and_reports_success(in_store, tmp_path):
    from configs import pointmaze
    from launch.pretrain import train

    c = pointmaze.get_config()
    assert c.dataset == UMAZE
    c.workdir = str(tmp_path)
    c.num_critic_steps = c.num_actor_steps = 20
    c.critic_batch_size = c.actor_batch_size = 32
    c.diffusion.width, c.diffusion.inner, c.diffusion.num_blocks = 16, 32, 1
    c.critic_hidden = (32, 32)
    c.log_interval, c.checkpoint_interval, c.eval.interval = 10, 20, 20
    c.eval.episodes, c.eval.num_candidates, c.eval.modes = 2, (2,), ("argmax",)
    c.eval.max_episode_steps = 20
    c.wandb.mode = "disabled"
    final = train(c, resume=False)["final_eval"]
    tag = f"eval/{eval_tag(c, 'argmax', 2)}"     # names the weighting (launch/run_names.py)
    assert 0.0 <= final[f"{tag}/success_rate"] <= 1.0
    assert f"{tag}/score_mean" in final


# ---------------------------------------------------------------- AntMaze and Adroit from their stored specs

def _antmaze_maps(scaled_map):
    """Minari's AntMaze umaze maps: data collected with the goal at (1, 1), evaluated with R (1, 3), G (3, 3)."""
    collect, evaluation = copy.deepcopy(scaled_map), copy.deepcopy(scaled_map)
    collect[1][1], collect[3][1] = "g", "r"
    evaluation[1][3], evaluation[3][3] = "r", "g"
    return collect, evaluation


def write_robotics_dataset(dataset_id, collect_spec, eval_spec, steps=8, episodes=2):
    """A few random-action episodes of the real env, stored as Minari does (dict groups for dict spaces)."""
    env = gym.make(collect_spec, max_episode_steps=steps)
    eps = []
    for k in range(episodes):
        obs, _ = env.reset(seed=k)
        obs_list, acts, rews, terms, truncs = [obs], [], [], [], []
        while not (terms and (terms[-1] or truncs[-1])):
            a = env.action_space.sample()
            obs, r, te, tr, _ = env.step(a)
            obs_list.append(obs), acts.append(a), rews.append(r), terms.append(te), truncs.append(tr)
        stacked = ({key: np.stack([o[key] for o in obs_list]) for key in obs_list[0]}
                   if isinstance(obs_list[0], dict) else np.stack(obs_list))
        eps.append({"observations": stacked, "actions": np.stack(acts), "rewards": np.asarray(rews),
                    "terminations": np.asarray(terms), "truncations": np.asarray(truncs)})
    env.close()
    write_minari(dataset_id, eps, env_spec_json=collect_spec.to_json(),
                 eval_env_spec_json=eval_spec.to_json() if eval_spec else None, ref_min=0.0, ref_max=1.0)
    return eps


@pytest.mark.parametrize("env_id,obs_dim", [("AntMaze_UMaze-v4", 31), ("AntMaze_UMaze-v5", 109)])
def test_antmaze_builds_its_evaluation_env_from_the_stored_spec(env_id, obs_dim, minari_datasets_path):
    register_robotics_envs(env_id)
    base = gym.spec(env_id)
    collect_map, eval_map = _antmaze_maps(base.kwargs["maze_map"])
    collect = copy.deepcopy(base)
    collect.kwargs.update(maze_map=collect_map, continuing_task=True, reset_target=False)
    evaluation = copy.deepcopy(collect)
    evaluation.kwargs["maze_map"] = eval_map
    eps = write_robotics_dataset("D4RL/antmaze/umaze-v1", collect, evaluation)

    ds = load_dataset("D4RL/antmaze/umaze-v1")
    assert ds.obs_dim == obs_dim and ds.domain == "antmaze" and reward_transform_for(ds).shift == -1.0
    stored = eps[0]["observations"]
    np.testing.assert_allclose(ds.observations[:8], np.concatenate(
        [stored["achieved_goal"], stored["desired_goal"], stored["observation"]], axis=1)[:-1], rtol=1e-6)

    env = make_env(ds, seed=0)
    assert env.spec.max_episode_steps == base.max_episode_steps == 700
    assert env.unwrapped.maze.maze_map == eval_map
    flat, _ = env.reset()
    goal_xy = env.unwrapped.maze.cell_rowcol_to_xy(np.array((3, 3)))
    assert flat.shape == (obs_dim,) and np.abs(flat[2:4] - goal_xy).max() <= 1.0 + 1e-6   # the fixed goal (±noise)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert "success" in info


def test_adroit_builds_from_the_stored_spec(minari_datasets_path):
    register_robotics_envs("AdroitHandPen-v1")
    spec = gym.spec("AdroitHandPen-v1")
    write_robotics_dataset("D4RL/pen/human-v2", spec, None, steps=5)
    ds = load_dataset("D4RL/pen/human-v2")
    assert ds.env_id == "AdroitHandPen-v1" and ds.obs_dim == 45 and ds.domain == "adroit"
    assert reward_transform_for(ds).to_dict() == {"scale": 1.0, "shift": 0.0}
    env = make_env(ds, seed=0)
    assert env.spec.max_episode_steps == spec.max_episode_steps
    assert env.reset()[0].shape == (45,)


@pytest.mark.parametrize("config", ["antmaze", "adroit"])
def test_paper_configs_pretrain_on_their_datasets_envs(config, minari_datasets_path, tmp_path):
    """configs/antmaze.py and configs/adroit.py with a tiny budget: the dataset's env is built and evaluated."""
    import importlib

    from launch.pretrain import train

    c = importlib.import_module(f"configs.{config}").get_config()
    env_id = "AntMaze_UMaze-v4" if config == "antmaze" else "AdroitHandPen-v1"
    register_robotics_envs(env_id)
    spec = copy.deepcopy(gym.spec(env_id))
    if config == "antmaze":
        collect_map, eval_map = _antmaze_maps(spec.kwargs["maze_map"])
        spec.kwargs.update(maze_map=collect_map, continuing_task=True, reset_target=False)
    write_robotics_dataset(c.dataset, spec, None, steps=30, episodes=3)
    c.workdir = str(tmp_path)
    c.num_critic_steps = c.num_actor_steps = 4
    c.critic_batch_size = c.actor_batch_size = 16
    c.diffusion.width, c.diffusion.inner, c.diffusion.num_blocks = 16, 32, 1
    c.critic_hidden = (16, 16)
    c.log_interval = c.checkpoint_interval = c.eval.interval = 4
    c.eval.episodes, c.eval.num_candidates, c.eval.max_episode_steps = 1, (2,), 5
    c.wandb.mode = "disabled"
    c.num_threads = 1
    final = train(c, resume=False)["final_eval"]
    tag = f"eval/{eval_tag(c, 'argmax', 2)}"     # names the weighting (launch/run_names.py)
    assert f"{tag}/success_rate" in final
    if config == "antmaze":
        assert final[f"{tag}/score_mean"] == 100.0 * final[f"{tag}/success_rate"]
