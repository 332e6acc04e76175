"""Local PointMaze datasets by D4RL's maze2d recipe, in the layout of Minari's D4RL/pointmaze.

Why: the official ``D4RL/pointmaze/*-v2`` data cannot be downloaded here, and
maze navigation is where offline-to-online finetuning matters, so the platform
makes its own. The recipe (Fu et al. 2020, section 5; D4RL
scripts/generation/generate_maze2d_datasets.py; Minari's re-creation in
minari-dataset-generation-scripts scripts/pointmaze/create_pointmaze_dataset.py):

* **One continuing run.** ``PointMaze_*-v3`` with ``continuing_task=True,
  reset_target=True``: reaching the goal (within 0.45, ``info["success"]``)
  draws a new goal and the ball carries on from where it is; the environment is
  reset only once, at the start.
* **Behaviour.** The planner-controller of ``data/behavior/waypoints.py`` plus
  Gaussian action noise σ = 0.5, clipped to [−1, 1].
* **Episodes.** The run is cut into episodes at each success and, as D4RL does,
  after the maze's time limit without one (300 UMaze, 600 Medium, 800 Large
  steps), where a new goal is drawn without resetting the ball. Each cut is a
  truncation: ``terminations`` are all False (nothing ends the task), as in the
  official data. An episode's last observation is the one its last step
  returned (old goal); the next episode starts from the same state with the new
  goal.
* **Layout.** Dict observations ``{achieved_goal (2), desired_goal (2),
  observation (4: x, y, vx, vy)}``; ``env_spec`` is the collection env;
  ``eval_env_spec`` is the same maze with one fixed goal cell (the cells of
  Minari's evaluation maps: UMaze (1, 1), Medium (6, 6), Large (7, 9)),
  ``continuing_task=True, reset_target=False`` and the maze's time limit; the
  platform evaluates and finetunes in that one.
* **Rewards.** ``PointMaze_<Maze>-v3`` sparse (1 within 0.45 of the goal),
  ``PointMaze_<Maze>Dense-v3`` dense (exp(−distance)).
* **References.** Measured here on the evaluation env, as Minari does:
  ``ref_min_score`` = mean return of uniform random actions,
  ``ref_max_score`` = mean return of the planner-controller without noise,
  ``ref_episodes`` episodes each (Minari: 100). Scores are then D4RL maze2d's:
  100·(R − min)/(max − min), R the return over the evaluation episode (steps
  spent at the goal for sparse rewards).

Everything random comes from ``numpy.random.SeedSequence(seed)``: the same seed
gives identical arrays. Only complete episodes are stored; the run stops after
the episode that reaches ``num_transitions``.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

MAZES = {"UMaze": "umaze", "Medium": "medium", "Large": "large"}
POINTMAZE_ENVS = tuple(f"PointMaze_{maze}{dense}-v3" for maze in MAZES for dense in ("", "Dense"))
# The goal cell of each evaluation map (Minari's D4RL/pointmaze evaluation maps, after D4RL's maze2d targets).
EVAL_GOAL_CELL = {"umaze": (1, 1), "medium": (6, 6), "large": (7, 9)}
NOISE_STD = 0.5               # D4RL generate_maze2d_datasets.py --noisy, Minari's scripts
OBS_KEYS = ("achieved_goal", "desired_goal", "observation")

Log = Callable[[str], None]


def _parse(env_id: str) -> tuple[str, bool]:
    """'PointMaze_MediumDense-v3' -> ('medium', True)."""
    from errors import ConfigError

    if env_id not in POINTMAZE_ENVS:
        raise ConfigError(f"PointMaze datasets can be made for {', '.join(POINTMAZE_ENVS)}, not '{env_id}'.")
    name = env_id[len("PointMaze_"):-len("-v3")]
    dense = name.endswith("Dense")
    return MAZES[name[:-len("Dense")] if dense else name], dense


def default_dataset_id(env_id: str) -> str:
    """'PointMaze_UMaze-v3' -> 'local/pointmaze/umaze-v0'; dense rewards -> 'umaze-dense-v0'."""
    maze, dense = _parse(env_id)
    return f"local/pointmaze/{maze}{'-dense' if dense else ''}-v0"


@dataclass(frozen=True)
class PointMazeRecipe:
    """Everything that determines a made PointMaze dataset (recorded in its description)."""

    env_id: str
    num_transitions: int = 1_000_000       # the official datasets' size
    seed: int = 0
    noise_std: float = NOISE_STD
    ref_episodes: int = 100                # Minari's num_episodes_average_score


DEFAULT_POINTMAZE_DATASETS: dict[str, PointMazeRecipe] = {
    default_dataset_id(env): PointMazeRecipe(env) for env in POINTMAZE_ENVS}


def _make(env_id: str, **kwargs):
    from data.dataset import make_raw_env

    return make_raw_env(env_id, None, **kwargs)


def time_limit(env_id: str) -> int:
    import gymnasium as gym

    from data.dataset import register_robotics_envs

    register_robotics_envs(env_id)
    return int(gym.spec(env_id).max_episode_steps)


def eval_env_spec(env_id: str):
    """The registered maze with its fixed evaluation goal cell; the task continues at the goal."""
    import gymnasium as gym

    from data.dataset import register_robotics_envs

    register_robotics_envs(env_id)
    maze, _ = _parse(env_id)
    spec = copy.deepcopy(gym.spec(env_id))
    maze_map = [list(row) for row in spec.kwargs["maze_map"]]
    i, j = EVAL_GOAL_CELL[maze]
    maze_map[i][j] = "g"
    spec.kwargs.update(maze_map=maze_map, continuing_task=True, reset_target=False)
    return spec


def _redraw_goal(maze_env, position) -> None:
    """A new goal without moving the ball (D4RL's set_target at a time-limit cut)."""
    goal = maze_env.add_xy_position_noise(maze_env.generate_target_goal())
    while np.linalg.norm(position - goal) <= 0.45:
        goal = maze_env.add_xy_position_noise(maze_env.generate_target_goal())
    maze_env.goal = goal
    maze_env.update_target_site_pos()


def collect(recipe: PointMazeRecipe, seed_seq: np.random.SeedSequence, log: Log | None = None):
    """Episodes of one continuing run (module docstring); returns (episodes, collection spec)."""
    from data.behavior.waypoints import WaypointController

    rng = np.random.default_rng(seed_seq)
    horizon = time_limit(recipe.env_id)
    env = _make(recipe.env_id, continuing_task=True, reset_target=True,
                max_episode_steps=recipe.num_transitions + horizon)
    maze_env = env.unwrapped
    controller = WaypointController(maze_env.maze, rng)
    episodes: list[dict[str, Any]] = []
    collected = 0
    t0 = last_log = time.perf_counter()
    try:
        obs, _ = env.reset(seed=int(rng.integers(0, 2**31 - 1)))
        while collected < recipe.num_transitions:
            ep_obs, acts, rews = [obs], [], []
            while True:
                action = controller.act(obs) + recipe.noise_std * rng.standard_normal(2)
                action = np.clip(action, -1.0, 1.0).astype(np.float32)
                obs, reward, _, _, info = env.step(action)
                ep_obs.append(obs)
                acts.append(action)
                rews.append(float(reward))
                if info["success"] or len(acts) >= horizon:
                    break
            if not info["success"]:
                _redraw_goal(maze_env, obs["achieved_goal"])
            # The next episode starts in the same state, now with the new goal.
            obs = {**obs, "desired_goal": maze_env.goal.copy()}
            t = len(acts)
            episodes.append({
                "observations": {k: np.stack([o[k] for o in ep_obs]) for k in OBS_KEYS},
                "actions": np.stack(acts),
                "rewards": np.asarray(rews, dtype=np.float64),
                "terminations": np.zeros(t, dtype=bool),
                "truncations": np.arange(t) == t - 1,
                "success": bool(info["success"]),
            })
            collected += t
            now = time.perf_counter()
            if log is not None and (now - last_log > 5.0 or collected >= recipe.num_transitions):
                last_log = now
                log(f"[{recipe.env_id}] {collected}/{recipe.num_transitions} transitions in {len(episodes)} "
                    f"episodes, {collected / max(now - t0, 1e-9):.0f} steps/s")
        spec = env.spec
    finally:
        env.close()
    return episodes, spec


def reference_return(spec, seed_seq: np.random.SeedSequence, episodes: int, expert: bool) -> float:
    """Mean return over ``episodes`` evaluation episodes: planner-controller (``expert``) or uniform random."""
    import gymnasium as gym

    from data.behavior.waypoints import WaypointController

    rng = np.random.default_rng(seed_seq)
    env = gym.make(spec)
    returns = []
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=int(rng.integers(0, 2**31 - 1)))
            controller = WaypointController(env.unwrapped.maze, rng) if expert else None
            total, done = 0.0, False
            while not done:
                action = controller.act(obs) if expert else rng.uniform(-1.0, 1.0, size=2)
                obs, r, term, trunc, _ = env.step(np.asarray(action, dtype=np.float32))
                total += float(r)
                done = term or trunc
            returns.append(total)
    finally:
        env.close()
    return float(np.mean(returns))


def make_pointmaze_dataset(env_id: str, num_transitions: int = 1_000_000, seed: int = 0,
                           dataset_id: str | None = None, noise_std: float = NOISE_STD,
                           ref_episodes: int = 100, overwrite: bool = False,
                           log: Log | None = print) -> dict[str, Any]:
    """Collect, measure the references, write a Minari dataset; returns a summary dict."""
    from data.minari_io import check_writable, write_minari
    from errors import ConfigError

    _parse(env_id)
    recipe = PointMazeRecipe(env_id, int(num_transitions), int(seed), float(noise_std), int(ref_episodes))
    if recipe.num_transitions < 1 or recipe.ref_episodes < 1 or recipe.noise_std < 0:
        raise ConfigError("num_transitions and ref_episodes must be at least 1 and noise_std >= 0.")
    dataset_id = dataset_id or default_dataset_id(env_id)
    check_writable(dataset_id, overwrite)
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    run_seq, random_seq, expert_seq = np.random.SeedSequence(recipe.seed).spawn(3)

    episodes, spec = collect(recipe, run_seq, log)
    t_collect = time.perf_counter() - t0
    evaluation = eval_env_spec(env_id)
    say(f"[{dataset_id}] measuring the references over {recipe.ref_episodes} evaluation episodes each")
    ref_min = reference_return(evaluation, random_seq, recipe.ref_episodes, expert=False)
    ref_max = reference_return(evaluation, expert_seq, recipe.ref_episodes, expert=True)
    successes = np.asarray([e.pop("success") for e in episodes])

    maze, dense = _parse(env_id)
    description = (
        f"PointMaze {maze} ({'dense' if dense else 'sparse'} reward) made locally by data/pointmaze.py with "
        f"D4RL's maze2d recipe: one continuing run (goal redrawn on success), Q-iteration waypoints and a PD "
        f"controller with Gaussian action noise std {recipe.noise_std}; episodes cut at success or after "
        f"{time_limit(env_id)} steps (truncations). Evaluation: goal cell {EVAL_GOAL_CELL[maze]}. "
        f"ref_min_score = random policy, ref_max_score = noise-free planner-controller, "
        f"{recipe.ref_episodes} evaluation episodes each. Recipe: {json.dumps(asdict(recipe))}")
    path = write_minari(dataset_id, episodes, env_spec_json=spec.to_json(), eval_env_spec_json=evaluation.to_json(),
                        ref_min=ref_min, ref_max=ref_max, description=description,
                        algorithm_name=f"QIteration waypoints + PD controller, noise std {recipe.noise_std}",
                        code_permalink="data/pointmaze.py", overwrite=overwrite)
    lengths = np.asarray([len(e["rewards"]) for e in episodes])
    summary = {
        "dataset_id": dataset_id, "path": str(path), "env_id": env_id, "seed": recipe.seed,
        "noise_std": recipe.noise_std, "episodes": int(len(episodes)), "transitions": int(lengths.sum()),
        "episode_success_fraction": float(successes.mean()), "episode_length_mean": float(lengths.mean()),
        "ref_min_score": ref_min, "ref_max_score": ref_max,
        "collect_seconds": t_collect, "seconds": time.perf_counter() - t0,
    }
    say(f"[{dataset_id}] wrote {summary['transitions']} transitions in {summary['episodes']} episodes "
        f"({100 * summary['episode_success_fraction']:.1f} % end at the goal, mean length "
        f"{summary['episode_length_mean']:.0f}) to {path} in {summary['seconds']:.1f}s (collection "
        f"{t_collect:.1f}s); references on the evaluation env: random {ref_min:.2f}, planner-controller {ref_max:.2f}")
    return summary


__all__ = ["DEFAULT_POINTMAZE_DATASETS", "EVAL_GOAL_CELL", "POINTMAZE_ENVS", "PointMazeRecipe", "collect",
           "default_dataset_id", "eval_env_spec", "make_pointmaze_dataset", "reference_return"]
