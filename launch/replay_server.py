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

import json
import signal
import sys
import threading
import time
from pathlib import Path

from absl import app, flags, logging

from errors import UserFacingError

_CONFIG_JSON = flags.DEFINE_string("config_json", None, "Run config written by launch.finetune.", required=True)
_OBS_DIM = flags.DEFINE_integer("obs_dim", None, "Observation size.", required=True)
_ACT_DIM = flags.DEFINE_integer("act_dim", None, "Action size.", required=True)
_PORT = flags.DEFINE_integer("port", 0, "Port; 0 picks a free one.")
_CHECKPOINT_DIR = flags.DEFINE_string("checkpoint_dir", None, "Where the replay is checkpointed and restored from.")
_ALLOW_REMOTE = flags.DEFINE_bool("allow_remote", False, "Hand out this machine's name instead of localhost, "
                                  "so actors on other machines can connect. There is NO authentication.")
_ADDRESS_FILE = flags.DEFINE_string("address_file", None, "Write the address here once the server is up.")


def replay_spec(online, obs_dim: int, act_dim: int, checkpoint_dir: str | None):
    from replay.server import ReplaySpec, samples_per_insert_for

    return ReplaySpec(obs_dim=obs_dim, act_dim=act_dim, max_size=int(online.replay_max_size),
                      samples_per_insert=samples_per_insert_for(online.online_batch_size,
                                                                online.updates_per_env_step),
                      min_size_to_sample=int(online.min_replay_size), checkpoint_dir=checkpoint_dir)


def serve(cfg, obs_dim, act_dim, port, checkpoint_dir, allow_remote, address_file=None) -> None:
    import reverb
    from replay.server import checkpoint, start_server

    server, address = start_server(replay_spec(cfg.online, obs_dim, act_dim, checkpoint_dir),
                                   port=port or None, allow_remote=allow_remote)
    client = reverb.Client(f"localhost:{address.rsplit(':', 1)[1]}")
    info = client.server_info()["online"]
    print(f"replay server at {address}: {info.current_size} online transitions "
          f"({'restored' if info.current_size else 'empty'}), "
          f"{int(info.rate_limiter_info.insert_stats.completed)} inserted so far", flush=True)
    if address_file:
        Path(address_file).write_text(address)
    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    interval = float(cfg.online.replay_checkpoint_interval_s)
    last = time.monotonic()
    while not stop.wait(1.0):
        if checkpoint_dir and time.monotonic() - last >= interval:
            checkpoint(client)
            last = time.monotonic()
    if checkpoint_dir:
        path = checkpoint(client)
        print(f"replay checkpoint written to {path}", flush=True)
    server.stop()


def main(argv):
    del argv
    import ml_collections

    try:
        cfg = ml_collections.ConfigDict(json.loads(Path(_CONFIG_JSON.value).read_text()))
        serve(cfg, _OBS_DIM.value, _ACT_DIM.value, _PORT.value, _CHECKPOINT_DIR.value, _ALLOW_REMOTE.value,
              _ADDRESS_FILE.value)
    except UserFacingError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
