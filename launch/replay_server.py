"""The Reverb replay server as its own program, so it can live on the learner's machine.

    python -m launch.replay_server --config_json=runs/<run>/config.json --obs_dim=11 --act_dim=3 \
        --port=8000 --checkpoint_dir=runs/<run>/replay [--allow_remote]

Restores its tables from --checkpoint_dir when a checkpoint is there,
checkpoints every `online.replay_checkpoint_interval_s` seconds and once more
on SIGTERM / Ctrl-C before it exits. Reverb listens on every interface with no
authentication: without --allow_remote the address handed out is localhost and
the port must stay on a private network (see README).
"""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from absl import flags, logging

from errors import UserFacingError
from launch import cli

_CONFIG_JSON = flags.DEFINE_string("config_json", None, "Run config written by launch.finetune.", required=True)
_OBS_DIM = flags.DEFINE_integer("obs_dim", None, "Observation size.", required=True)
_ACT_DIM = flags.DEFINE_integer("act_dim", None, "Action size.", required=True)
_PORT = flags.DEFINE_integer("port", 0, "Port; 0 picks a free one.")
_CHECKPOINT_DIR = flags.DEFINE_string("checkpoint_dir", None, "Where the replay is checkpointed and restored from.")
_ALLOW_REMOTE = flags.DEFINE_bool("allow_remote", False, "Hand out this machine's name instead of localhost, "
                                  "so actors on other machines can connect. There is NO authentication.")
_ADDRESS_FILE = flags.DEFINE_string("address_file", None, "Write the address here once the server is up.")


def serve(cfg, obs_dim, act_dim, port, checkpoint_dir, allow_remote, address_file=None) -> None:
    from replay.host import ReplayHost, replay_spec

    host = ReplayHost(replay_spec(cfg.online, obs_dim, act_dim, checkpoint_dir), port=port or None,
                      allow_remote=allow_remote,
                      checkpoint_interval_s=float(cfg.online.replay_checkpoint_interval_s),
                      address_file=address_file, say=lambda m: print(m, flush=True))
    from launch.orphan_stop import StopOrder

    stop = threading.Event()
    # supervisor killed outright: checkpoint once the actors' last transitions are in (launch/orphan_stop.py)
    order = StopOrder(stop, host.local_address, say=lambda m: print(f"replay server: {m}", flush=True),
                      run_dir=str(Path(checkpoint_dir).parent) if checkpoint_dir else None)   # <run>/replay
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: order.request())
    while not stop.wait(1.0):
        pass
    path = host.stop()
    if path:
        print(f"replay checkpoint written to {path}", flush=True)


def main(argv):
    del argv
    from actor.actor_loop import load_config_json

    try:
        cfg = load_config_json(_CONFIG_JSON.value)          # a one-line error if missing or not JSON
        serve(cfg, _OBS_DIM.value, _ACT_DIM.value, _PORT.value, _CHECKPOINT_DIR.value, _ALLOW_REMOTE.value,
              _ADDRESS_FILE.value)
    except UserFacingError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    cli.run(main)
