r"""Make a D4RL-style Minari dataset locally (the real ones cannot be downloaded here).

Examples:
    python -m launch.make_dataset --env=Hopper-v5 --kind=medium        # local/hopper/medium-v1
    python -m launch.make_dataset --env=Hopper-v5 --kind=medium --actions=mean-noise   # ...-v0
    python -m launch.make_dataset --env=HalfCheetah-v5 --kind=medium-replay \
        --num_transitions=200000 --seed=1 --dataset_id=local/halfcheetah/medium-replay-v9
    python -m launch.make_dataset --env=PointMaze_UMaze-v3          # local/pointmaze/umaze-v0, 1M steps
    python -m launch.make_dataset --env=PointMaze_LargeDense-v3 --num_transitions=200000

PointMaze (--env=PointMaze_{UMaze,Medium,Large}[Dense]-v3; sparse or dense
rewards) follows D4RL's maze2d recipe: Q-iteration waypoints and a PD
controller with Gaussian action noise (--noise_std, default 0.5) in one
continuing run, episodes cut at success or the maze's time limit, a fixed-goal
evaluation spec and reference scores measured on it (random policy and the
noise-free planner-controller over --ref_episodes, default 100); see
data/pointmaze.py. --kind and --actions do not apply to it.

--actions chooses the recipe: "stochastic" (default, as D4RL: each action is a
sample of the SAC actor's tanh-Gaussian; ids local/<env>/<kind>-v1) or
"mean-noise" (the earlier variant: the actor's deterministic mean plus
Gaussian noise of std --noise_std, default 0.1; ids local/<env>/<kind>-v0).
The recipes, noise level and reference scores are documented in data/make.py,
their measured action spread in docs/datasets.md.
Datasets go to the Minari store (MINARI_DATASETS_PATH, default ~/.minari/datasets).
"""

from __future__ import annotations

import sys

from absl import flags

from data.make import ACTION_RECIPES, DEFAULT_NOISE_STD, KINDS, SUPPORTED_ENVS, make_dataset
from data.pointmaze import NOISE_STD as POINTMAZE_NOISE_STD
from data.pointmaze import POINTMAZE_ENVS, make_pointmaze_dataset
from errors import UserFacingError
from launch import cli

FLAGS = flags.FLAGS
flags.DEFINE_enum("env", "Hopper-v5", list(SUPPORTED_ENVS) + list(POINTMAZE_ENVS), "Gymnasium environment id.")
flags.DEFINE_enum("kind", "medium", list(KINDS), "D4RL dataset kind to imitate.")
flags.DEFINE_enum("actions", ACTION_RECIPES[0], list(ACTION_RECIPES),
                  "Action recipe: 'stochastic' samples the SAC actor (D4RL's recipe, ids -v1); "
                  "'mean-noise' is its deterministic mean plus Gaussian noise (ids -v0).")
flags.DEFINE_integer("num_transitions", None,
                     "Target size; complete episodes are kept, so the result is slightly larger. "
                     "Default 100000 (locomotion), 1000000 (PointMaze, the official datasets' size).")
flags.DEFINE_integer("seed", 0, "Seed for environments, action sampling/noise and the random reference.")
flags.DEFINE_string("dataset_id", None,
                    "Minari id to write; default local/<env>/<kind>-v1 (stochastic) or -v0 "
                    "(mean-noise), e.g. local/hopper/medium-v1; PointMaze: local/pointmaze/<maze>[-dense]-v0.")
flags.DEFINE_float("noise_std", None,
                   "Std of extra Gaussian action noise; default per recipe "
                   + ", ".join(f"{k}: {v}" for k, v in DEFAULT_NOISE_STD.items())
                   + f"; PointMaze: {POINTMAZE_NOISE_STD}.")
flags.DEFINE_integer("ref_episodes", None, "Episodes per reference policy: default 10 (locomotion: the random "
                     "policy), 100 (PointMaze: random and planner-controller, as Minari).")
flags.DEFINE_integer("num_envs", 8, "Environments stepped together (one batched policy call).")
flags.DEFINE_bool("overwrite", False, "Replace an existing dataset with the same id.")
flags.DEFINE_integer("threads", 1, "torch threads for the behaviour policy (a tiny MLP: more threads only "
                     "spin-wait on a busy machine).")


def _default(value, default):
    """Flags whose default depends on the environment are None until given."""
    return default if value is None else value


def main(argv):
    del argv
    import torch

    torch.set_num_threads(FLAGS.threads)
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        if FLAGS.env in POINTMAZE_ENVS:
            make_pointmaze_dataset(
                env_id=FLAGS.env,
                num_transitions=_default(FLAGS.num_transitions, 1_000_000),
                seed=FLAGS.seed,
                dataset_id=FLAGS.dataset_id,
                noise_std=_default(FLAGS.noise_std, POINTMAZE_NOISE_STD),
                ref_episodes=_default(FLAGS.ref_episodes, 100),
                overwrite=FLAGS.overwrite,
                log=say,
            )
            return 0
        make_dataset(
            env_id=FLAGS.env,
            kind=FLAGS.kind,
            num_transitions=_default(FLAGS.num_transitions, 100_000),
            seed=FLAGS.seed,
            dataset_id=FLAGS.dataset_id,
            noise_std=FLAGS.noise_std,
            ref_episodes=_default(FLAGS.ref_episodes, 10),
            num_envs=FLAGS.num_envs,
            overwrite=FLAGS.overwrite,
            actions=FLAGS.actions,
            log=say,
        )
    except UserFacingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run(main)
