"""The finetuning learner as its own program (on the GPU box in a multi-machine run).

    python -m launch.learner --config_json=runs/<run>/config.json --run_dir=runs/<run> \
        --pretrained=runs/<run>/pretrain/checkpoint.pt [--resume] [--key_file=runs/<run>/run_key] \
        (--host_replay [--port=8000 --checkpoint_dir=runs/<run>/replay --allow_remote] | --replay_address=HOST:PORT)

Loads the offline dataset onto its device, restores the pretrained networks
(or, with --resume, its own last checkpoint), publishes the acting weights and
trains from mixed offline + online batches until SIGTERM / Ctrl-C, when it
writes a checkpoint and exits.

With --host_replay the replay server runs inside this process (the default
layout of launch.finetune): sampling then reads the table directly instead of
over gRPC, about 2x the batches per second (bench/learner_feed.py). On stop the learner writes
its checkpoint and the replay's, then, with --serve_after_stop_s, keeps the
server up until a second SIGTERM so the evaluator can fetch the final weights.

The run's key (--key_file, by default `run_key` beside --config_json, written by
launch.finetune) tags every publication and checks every online transition
(replay/auth.py): actors and evaluator need the same file.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path

from absl import flags

from errors import UserFacingError
from launch import cli

_CONFIG_JSON = flags.DEFINE_string("config_json", None, "Run config written by launch.finetune.", required=True)
_REPLAY_ADDRESS = flags.DEFINE_string("replay_address", None, "HOST:PORT of the replay server (without --host_replay).")
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory (checkpoints, logs).", required=True)
_KEY_FILE = flags.DEFINE_string("key_file", None, "The run's secret (owner-only file written by launch.finetune); "
                                "default: run_key beside --config_json.")
_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pretraining checkpoint to start from.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue from this run's own learner checkpoint.")
_HOST_REPLAY = flags.DEFINE_bool("host_replay", False, "Run the replay server inside this process.")
_PORT = flags.DEFINE_integer("port", 0, "With --host_replay: the server's port; 0 picks a free one.")
_CHECKPOINT_DIR = flags.DEFINE_string("checkpoint_dir", None, "With --host_replay: where the replay is "
                                      "checkpointed and restored from.")
_ALLOW_REMOTE = flags.DEFINE_bool("allow_remote", False, "With --host_replay: hand out this machine's name so "
                                  "actors on other machines can connect. There is NO authentication.")
_ADDRESS_FILE = flags.DEFINE_string("address_file", None, "With --host_replay: write the address here once up.")
_INCARNATION = flags.DEFINE_integer("incarnation", 0, "How many times the supervisor restarted this learner "
                                    "in this run: its weights' versions rank above the dead learner's.")
_STOPPED_FILE = flags.DEFINE_string("stopped_file", None, "Written once learner and replay are checkpointed on stop.")
_SERVE_AFTER_STOP_S = flags.DEFINE_float("serve_after_stop_s", 0.0, "With --host_replay: after the stop "
                                         "checkpoints, keep serving until a second SIGTERM or this many seconds.")


@dataclasses.dataclass
class HostOptions:
    """How this learner hosts the replay server (launch.finetune's default layout)."""
    port: int = 0
    checkpoint_dir: str | None = None
    allow_remote: bool = False
    address_file: str | None = None
    serve_after_stop_s: float = 0.0
    # taken when the options are made, while the process that started us is surely alive
    parent_pid: int = dataclasses.field(default_factory=os.getppid)


def run(cfg, replay_address: str | None, run_dir: Path, pretrained: str | None, resume: bool,
        stop_event: threading.Event | None = None, max_steps: int | None = None,
        host: HostOptions | None = None, release_event: threading.Event | None = None,
        stopped_file: str | None = None, *, key: bytes, incarnation: int = 0) -> int:
    import torch

    from data import load_dataset
    from data.rewards import apply_config
    from launch.pretrain import pick_device
    from learner.fast_path import set_matmul_precision
    from networks.linear import set_cpu_matmul
    from learner.agent import Learner
    from learner.calibration import DatasetCalibration
    from learner.online import set_online_rates
    from learner.offline_buffer import OfflineBuffer
    from learner.online import CHECKPOINT_NAME, OnlineLearner, load_pretrained

    torch.set_num_threads(cfg.num_threads or 1)
    device = pick_device(cfg.device)
    set_matmul_precision(cfg.matmul_precision, device)
    set_cpu_matmul(cfg.cpu_matmul)
    dataset = load_dataset(cfg.dataset, env_id=cfg.env_id or None, check_env=False,
                           action_bounds=cfg.get("action_bounds", ""))   # the actors' [-1, 1] (data/bounds.py)
    replay_host = None
    if host is not None:
        from replay.host import ReplayHost, replay_spec

        replay_host = ReplayHost(replay_spec(cfg.online, dataset.obs_dim, dataset.act_dim, host.checkpoint_dir),
                                 port=host.port or None, allow_remote=host.allow_remote,
                                 checkpoint_interval_s=float(cfg.online.replay_checkpoint_interval_s),
                                 address_file=host.address_file, say=lambda m: print(m, flush=True))
        replay_address = replay_host.local_address
    elif not replay_address:
        raise UserFacingError("The learner needs --replay_address=HOST:PORT of a running replay server, "
                              "or --host_replay to run one itself.")
    finished = False
    try:
        transform = apply_config(dataset, cfg.get("domain", ""), cfg.get("reference_scores", ""), cfg.reward_scale,
                                 say=None)     # as launch.finetune applied it (which said so)
        torch.manual_seed(cfg.seed + 1)
        buffer = OfflineBuffer.from_dataset(dataset, transform, device)
        learner = Learner(cfg, dataset.obs_dim, dataset.act_dim, device)
        calibration = DatasetCalibration(dataset, transform, cfg.discount, device, seed=cfg.seed)
        loop = OnlineLearner(cfg, learner, buffer, replay_address, run_dir, stop_event, calibration=calibration,
                             key=key, incarnation=incarnation)
        if resume and (Path(run_dir) / CHECKPOINT_NAME).exists():
            loop.restore()
            print(f"learner resumed at online step {loop.step}", flush=True)
        elif pretrained:
            steps = load_pretrained(learner, Path(pretrained), dataset.obs_dim, dataset.act_dim, device)
            set_online_rates(learner, cfg)     # after loading: pretraining's schedules end at 0
            if resume:                         # restarted before its first checkpoint: online step 0 again
                loop.forget_logged_steps_after(0)
            print(f"learner starts from {pretrained} ({steps} pretraining steps) on {device}", flush=True)
        else:
            raise UserFacingError("The learner needs --pretrained=<checkpoint> (or --resume with a learner "
                                  "checkpoint in --run_dir): online finetuning starts from a pretrained model.")
        steps = loop.run(max_steps=max_steps)
        finished = True
        return steps
    finally:
        if replay_host is not None:
            path = replay_host.stop_checkpointing()
            if path:
                print(f"replay checkpoint written to {path}", flush=True)
        if stopped_file:
            Path(stopped_file).write_text("stopped\n")
        if replay_host is not None:
            if finished and host.serve_after_stop_s > 0 and release_event is not None:
                _serve_until_released(release_event, host.serve_after_stop_s, host.parent_pid)
            replay_host.stop(final_checkpoint=False)


def _serve_until_released(release: threading.Event, timeout_s: float, parent_pid: int) -> None:
    """Keep the hosted server up for the evaluator's last fetch of the weights, until the second
    SIGTERM, `timeout_s`, or the death of the process that started us (a supervisor killed with
    SIGKILL sends its PDEATHSIG, the first SIGTERM, and then can send no second one)."""
    deadline = time.monotonic() + timeout_s
    while not release.wait(0.5):
        if time.monotonic() > deadline or os.getppid() != parent_pid:
            return


def main(argv):
    del argv
    from actor.actor_loop import load_config_json

    from launch.orphan_stop import StopOrder

    stop, release = threading.Event(), threading.Event()
    # supervisor killed outright: train on (sampling lets the actors' last inserts through) until they are in
    order = StopOrder(stop, _REPLAY_ADDRESS.value or (f"localhost:{_PORT.value}" if _PORT.value else None),
                      say=lambda m: print(f"learner: {m}", flush=True), run_dir=_RUN_DIR.value)

    def on_signal(*_):   # the first signal stops training, a second one (if serving after stop) the server
        if stop.is_set():
            release.set()
        else:
            order.request()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    host = HostOptions(_PORT.value, _CHECKPOINT_DIR.value, _ALLOW_REMOTE.value, _ADDRESS_FILE.value,
                       _SERVE_AFTER_STOP_S.value) if _HOST_REPLAY.value else None
    try:
        from replay.auth import key_path_beside, load_key

        cfg = load_config_json(_CONFIG_JSON.value)          # a one-line error if missing or not JSON
        key = load_key(_KEY_FILE.value or key_path_beside(_CONFIG_JSON.value))
        steps = run(cfg, _REPLAY_ADDRESS.value, Path(_RUN_DIR.value), _PRETRAINED.value, _RESUME.value, stop,
                    host=host, release_event=release, stopped_file=_STOPPED_FILE.value, key=key,
                    incarnation=_INCARNATION.value)
        print(f"learner stopped after {steps} online steps; checkpoint written", flush=True)
    except UserFacingError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli.run(main)
