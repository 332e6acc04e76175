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

Any other registered gymnasium environment (your own, once registered with
gymnasium.register and importable) takes --policy, which the recipes above do
not need:

    python -m launch.make_dataset --env=InvertedPendulum-v5 --policy=random --transitions=20000 \
        --ref_max_score=1000                          # local/invertedpendulum/random-v0
    python -m launch.make_dataset --env=InvertedPendulum-v5 --policy=runs/own/checkpoint.pt \
        --noise=0.1 --episodes=50 --dataset_id=local/invertedpendulum/policy-v1

--policy=random draws uniform actions from the action box; --policy=<checkpoint>
acts with a trained run (launch.api.load_policy: a pretraining checkpoint.pt, a
finetuning learner_checkpoint.pt or its run directory; --mode and
--num_candidates choose its extraction), plus Gaussian noise of --noise (alias
of --noise_std) times each action's half-range. Actions are stored in the
environment's own units (clipped to its bounds, as it would execute them).
Budget: --episodes=N complete episodes, or --transitions=N (alias of
--num_transitions; default 100000) transitions in complete episodes. Reference
scores: --ref_min_score (default: a uniform random policy's mean return over
--ref_episodes) and --ref_max_score (default none: then give
--config.reference_scores=min,max when training for normalised scores). The
Python route is data.make.make_policy_dataset, or data.minari_io.write_minari
for episodes collected any other way.

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

from data.make import (ACTION_RECIPES, DEFAULT_NOISE_STD, KINDS, RANDOM_POLICY, SUPPORTED_ENVS, make_dataset,
                       make_policy_dataset)
from data.pointmaze import NOISE_STD as POINTMAZE_NOISE_STD
from data.pointmaze import POINTMAZE_ENVS, make_pointmaze_dataset
from errors import ConfigError, UserFacingError
from launch import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "Hopper-v5", "Gymnasium environment id: "
                    + ", ".join(list(SUPPORTED_ENVS) + list(POINTMAZE_ENVS))
                    + " have recipes of their own; any other registered id needs --policy.")
flags.DEFINE_string("policy", None, "'random' (uniform actions) or a checkpoint (checkpoint.pt, learner_checkpoint.pt "
                    "or a run directory) to collect with, for any environment; without it, the env's own recipe.")
flags.DEFINE_enum("mode", "implicit", ["argmax", "implicit"], "With --policy=<checkpoint>: the extraction it acts by.")
flags.DEFINE_integer("num_candidates", 16, "With --policy=<checkpoint>: N candidates drawn from μ per action.")
flags.DEFINE_integer("episodes", None, "With --policy: collect exactly this many complete episodes "
                     "(instead of --transitions).")
flags.DEFINE_float("ref_min_score", None, "With --policy: the return that scores 0; default: a uniform random "
                   "policy's mean return over --ref_episodes episodes.")
flags.DEFINE_float("ref_max_score", None, "With --policy: the return that scores 100 (e.g. an expert's); default "
                   "none.")
flags.DEFINE_enum("kind", "medium", list(KINDS), "D4RL dataset kind to imitate.")
flags.DEFINE_enum("actions", ACTION_RECIPES[0], list(ACTION_RECIPES),
                  "Action recipe: 'stochastic' samples the SAC actor (D4RL's recipe, ids -v1); "
                  "'mean-noise' is its deterministic mean plus Gaussian noise (ids -v0).")
flags.DEFINE_integer("num_transitions", None,
                     "Target size; complete episodes are kept, so the result is slightly larger. "
                     "Default 100000 (locomotion and --policy), 1000000 (PointMaze, the official datasets' size).")
flags.DEFINE_alias("transitions", "num_transitions")
flags.DEFINE_integer("seed", 0, "Seed for environments, action sampling/noise and the random reference.")
flags.DEFINE_string("dataset_id", None,
                    "Minari id to write; default local/<env>/<kind>-v1 (stochastic) or -v0 "
                    "(mean-noise), e.g. local/hopper/medium-v1; PointMaze: local/pointmaze/<maze>[-dense]-v0.")
flags.DEFINE_float("noise_std", None,
                   "Std of extra Gaussian action noise; default per recipe "
                   + ", ".join(f"{k}: {v}" for k, v in DEFAULT_NOISE_STD.items())
                   + f"; PointMaze: {POINTMAZE_NOISE_STD}; --policy=<checkpoint>: 0, as a share of each action's "
                   "half-range (high - low) / 2.")
flags.DEFINE_alias("noise", "noise_std")
flags.DEFINE_integer("ref_episodes", None, "Episodes per reference policy: default 10 (locomotion: the random "
                     "policy), 100 (PointMaze: random and planner-controller, as Minari).")
flags.DEFINE_integer("num_envs", 8, "Environments stepped together (one batched policy call).")
flags.DEFINE_bool("overwrite", False, "Replace an existing dataset with the same id.")
flags.DEFINE_integer("threads", 1, "torch threads for the behaviour policy (a tiny MLP: more threads only "
                     "spin-wait on a busy machine).")


def _default(value, default):
    """Flags whose default depends on the environment are None until given."""
    return default if value is None else value


def make_with_policy(say) -> dict:
    """--policy=random or a checkpoint: data.make.make_policy_dataset, with the checkpoint loaded by launch.api."""
    for name in ("kind", "actions"):
        if FLAGS[name].present:
            raise ConfigError(f"--{name} chooses a behaviour-policy recipe of Hopper/HalfCheetah; with --policy the "
                              f"actions come from the policy given, so leave --{name} out.")
    if FLAGS.episodes is not None and FLAGS.num_transitions is not None:
        raise ConfigError("Give one budget: --episodes=N or --transitions=N, not both.")
    transitions = None if FLAGS.episodes is not None else _default(FLAGS.num_transitions, 100_000)
    policy, label = RANDOM_POLICY, None
    if FLAGS.policy != RANDOM_POLICY:
        policy, label = checkpoint_policy(FLAGS.policy, FLAGS.env, say)
    return make_policy_dataset(
        FLAGS.env, policy, episodes=FLAGS.episodes, transitions=transitions,
        noise=_default(FLAGS.noise_std, 0.0), seed=FLAGS.seed, dataset_id=FLAGS.dataset_id,
        ref_min_score=FLAGS.ref_min_score, ref_max_score=FLAGS.ref_max_score,
        ref_episodes=_default(FLAGS.ref_episodes, 10), num_envs=FLAGS.num_envs, policy_label=label,
        overwrite=FLAGS.overwrite, log=say)


def checkpoint_policy(path: str, env_id: str, say):
    """(act(obs[B, obs_dim]) in env units, label) of a checkpoint, seeded from --seed, checked against the env."""
    from pathlib import Path

    import gymnasium as gym

    from data.dataset import make_raw_env
    from launch.api import load_policy

    if not Path(path).exists():
        raise ConfigError(f"--policy={path}: no such checkpoint or run directory; give 'random' or the path of a "
                          f"checkpoint.pt (pretraining), learner_checkpoint.pt (finetuning) or a run directory.")
    policy = load_policy(path, mode=FLAGS.mode, num_candidates=FLAGS.num_candidates, seed=FLAGS.seed)
    env = make_raw_env(env_id)
    try:
        obs_dim = int(gym.spaces.flatdim(env.observation_space))
        act_dim = int(gym.spaces.flatdim(env.action_space))
    finally:
        env.close()
    if (obs_dim, act_dim) != (policy.obs_dim, policy.act_dim):
        raise ConfigError(f"--policy={path} acts on observations of {policy.obs_dim} numbers with actions of "
                          f"{policy.act_dim}, but {env_id} has {obs_dim} and {act_dim}: the checkpoint was trained "
                          f"for another environment ({policy.meta.get('env_id')}).")
    trained_on = policy.meta.get("env_id")
    if trained_on and trained_on != env_id:
        say(f"note: --policy={path} was trained on {trained_on}, collecting on {env_id} (same sizes).")
    say(f"collecting with {policy.checkpoint} ({FLAGS.mode}, N = {FLAGS.num_candidates}, "
        f"trained on {policy.meta.get('dataset')}; actions in {policy.bounds.describe()})")
    return policy.act, f"{policy.checkpoint} ({FLAGS.mode}, N={FLAGS.num_candidates})"


def main(argv):
    del argv
    import torch

    torch.set_num_threads(FLAGS.threads)
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        if FLAGS.policy is not None:
            make_with_policy(say)
            return 0
        for name in ("episodes", "ref_min_score", "ref_max_score"):
            if FLAGS[name].present:
                raise ConfigError(f"--{name} applies to datasets collected with --policy (random or a checkpoint); "
                                  f"the recipe of {FLAGS.env} sets its own budget and references.")
        if FLAGS.env not in SUPPORTED_ENVS and FLAGS.env not in POINTMAZE_ENVS:
            raise ConfigError(
                f"--env={FLAGS.env} has no recipe of its own (those are {', '.join(SUPPORTED_ENVS)} and the "
                f"PointMaze mazes); collect with --policy=random (uniform actions) or "
                f"--policy=path/to/checkpoint.pt (a trained run), e.g. python -m launch.make_dataset "
                f"--env={FLAGS.env} --policy=random --transitions=100000.")
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
