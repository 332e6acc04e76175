r"""One online actor process (started by launch/finetune.py, K of them).

    python -m launch.actor --config_json=runs/<run>/config.json --replay_address=localhost:PORT \
        --actor_id=0 --seed=0 --run_dir=runs/<run> [--max_env_steps=N] [--key_file=runs/<run>/run_key]

Reads the run config (JSON) and `dataset_meta.json` beside it, waits for the
learner's first weights, then steps `online.envs_per_actor` environments and
writes every transition to the replay server until stopped (SIGTERM / Ctrl-C
flush and exit cleanly) or until --max_env_steps. Episode returns go to
<run_dir>/logs/actor_<id>.jsonl. The run's key (`run_key` beside the config
unless --key_file says otherwise) authenticates the weights it takes and the
transitions it writes (replay/auth.py): copy it, owner-only, with the config.
"""
from __future__ import annotations

import sys

from absl import flags

from launch import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Called only when run as a program, so importing this module defines no flags."""
    flags.DEFINE_string("config_json", None, "Run config written by the supervisor (cfg.to_json()).")
    flags.DEFINE_string("dataset_meta", None, "dataset_meta.json; default: beside --config_json.")
    flags.DEFINE_string("key_file", None, "The run's secret (owner-only); default: run_key beside --config_json.")
    flags.DEFINE_string("replay_address", None, "Replay server HOST:PORT.")
    flags.DEFINE_integer("actor_id", 0, "This actor's index K (environment seeds seed + 1000 K + i).")
    flags.DEFINE_integer("seed", None, "Run seed; default: the config's seed.")
    flags.DEFINE_string("run_dir", None, "Run directory (logs/ goes there); default: the config's folder.")
    flags.DEFINE_integer("max_env_steps", 0, "Stop after this many environment steps (0 = until stopped).")
    flags.DEFINE_float("connect_timeout_s", 60.0, "Give up if the replay server does not answer for this long.")
    flags.mark_flags_as_required(["config_json", "replay_address"])


def main(argv):
    del argv
    import torch

    # Actors share the cores with the learner and other actors; torch's
    # one-thread-per-core default spin-waits and runs ~50x slower then.
    torch.set_num_threads(1)
    from actor.actor_loop import load_run_inputs, run_actor
    from errors import UserFacingError
    from launch.priority import lower_priority
    from replay.auth import key_path_beside, load_key

    try:
        cfg, meta, run_dir, seed = load_run_inputs(FLAGS.config_json, FLAGS.dataset_meta, FLAGS.run_dir, FLAGS.seed)
        key = load_key(FLAGS.key_file or key_path_beside(FLAGS.config_json))
        lower_priority(int(cfg.online.get("actor_nice", 0)), f"actor {FLAGS.actor_id}")   # yields the cores to the learner (launch/priority.py)
        run_actor(cfg, meta, FLAGS.replay_address, FLAGS.actor_id, seed, run_dir, key=key,
                  max_env_steps=FLAGS.max_env_steps or None, connect_timeout_s=FLAGS.connect_timeout_s)
    except UserFacingError as e:
        print(f"actor {FLAGS.actor_id}: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
