r"""Make a D4RL-style Minari dataset locally (the real ones cannot be downloaded here).

Examples:
    python -m launch.make_dataset --env=Hopper-v5 --kind=medium
    python -m launch.make_dataset --env=HalfCheetah-v5 --kind=medium-replay \
        --num_transitions=200000 --seed=1 --dataset_id=local/halfcheetah/medium-replay-v1

The recipe, noise level and reference scores are documented in data/make.py.
Datasets go to the Minari store (MINARI_DATASETS_PATH, default ~/.minari/datasets).
"""

from __future__ import annotations

import sys

from absl import app, flags

from data.make import KINDS, MEDIUM_NOISE_STD, SUPPORTED_ENVS, make_dataset
from errors import UserFacingError

FLAGS = flags.FLAGS
flags.DEFINE_enum("env", "Hopper-v5", list(SUPPORTED_ENVS), "Gymnasium environment id.")
flags.DEFINE_enum("kind", "medium", list(KINDS), "D4RL dataset kind to imitate.")
flags.DEFINE_integer("num_transitions", 100_000,
                     "Target size; complete episodes are kept, so the result is slightly larger.")
flags.DEFINE_integer("seed", 0, "Seed for environments, action noise and the random reference.")
flags.DEFINE_string("dataset_id", None,
                    "Minari id to write; default local/<env>/<kind>-v0, e.g. local/hopper/medium-v0.")
flags.DEFINE_float("noise_std", MEDIUM_NOISE_STD, "Std of the Gaussian action noise.")
flags.DEFINE_integer("ref_episodes", 10, "Random-policy episodes for ref_min_score.")
flags.DEFINE_integer("num_envs", 8, "Environments stepped together (one batched policy call).")
flags.DEFINE_bool("overwrite", False, "Replace an existing dataset with the same id.")


def main(argv):
    del argv
    try:
        make_dataset(
            env_id=FLAGS.env,
            kind=FLAGS.kind,
            num_transitions=FLAGS.num_transitions,
            seed=FLAGS.seed,
            dataset_id=FLAGS.dataset_id,
            noise_std=FLAGS.noise_std,
            ref_episodes=FLAGS.ref_episodes,
            num_envs=FLAGS.num_envs,
            overwrite=FLAGS.overwrite,
            log=lambda msg: print(msg, flush=True),
        )
    except UserFacingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
