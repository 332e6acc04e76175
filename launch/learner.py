"""The finetuning learner as its own program (on the GPU box in a multi-machine run).

    python -m launch.learner --config_json=runs/<run>/config.json --replay_address=HOST:PORT \
        --run_dir=runs/<run> --pretrained=runs/<run>/pretrain/.../checkpoint.pt [--resume]

Loads the offline dataset onto its device, restores the pretrained networks
(or, with --resume, its own last checkpoint), publishes the acting weights and
trains from mixed offline + online batches until SIGTERM / Ctrl-C, when it
writes a checkpoint and exits.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from absl import app, flags

from errors import UserFacingError

_CONFIG_JSON = flags.DEFINE_string("config_json", None, "Run config written by launch.finetune.", required=True)
_REPLAY_ADDRESS = flags.DEFINE_string("replay_address", None, "HOST:PORT of the replay server.", required=True)
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory (checkpoints, logs).", required=True)
_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pretraining checkpoint to start from.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue from this run's own learner checkpoint.")


def run(cfg, replay_address: str, run_dir: Path, pretrained: str | None, resume: bool,
        stop_event: threading.Event | None = None, max_steps: int | None = None) -> int:
    import torch

    from data import load_dataset
    from data.rewards import RewardTransform, reward_transform_for
    from launch.pretrain import pick_device
    from learner.agent import Learner
    from learner.offline_buffer import OfflineBuffer
    from learner.online import CHECKPOINT_NAME, OnlineLearner, load_pretrained

    torch.set_num_threads(cfg.num_threads or 1)
    device = pick_device(cfg.device)
    dataset = load_dataset(cfg.dataset, env_id=cfg.env_id or None, check_env=False)
    transform = reward_transform_for(dataset) if cfg.reward_scale == "auto" else RewardTransform(1.0, 0.0)
    torch.manual_seed(cfg.seed + 1)
    buffer = OfflineBuffer.from_dataset(dataset, transform, device)
    learner = Learner(cfg, dataset.obs_dim, dataset.act_dim, device)
    loop = OnlineLearner(cfg, learner, buffer, replay_address, run_dir, stop_event)
    if resume and (Path(run_dir) / CHECKPOINT_NAME).exists():
        loop.restore()
        print(f"learner resumed at online step {loop.step}", flush=True)
    elif pretrained:
        steps = load_pretrained(learner, Path(pretrained), dataset.obs_dim, dataset.act_dim, device)
        loop._after_pretraining_lr()
        print(f"learner starts from {pretrained} ({steps} pretraining steps) on {device}", flush=True)
    else:
        raise UserFacingError("The learner needs --pretrained=<checkpoint> (or --resume with a learner "
                              "checkpoint in --run_dir): online finetuning starts from a pretrained model.")
    return loop.run(max_steps=max_steps)


def main(argv):
    del argv
    import ml_collections

    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    try:
        cfg = ml_collections.ConfigDict(json.loads(Path(_CONFIG_JSON.value).read_text()))
        steps = run(cfg, _REPLAY_ADDRESS.value, Path(_RUN_DIR.value), _PRETRAINED.value, _RESUME.value, stop)
        print(f"learner stopped after {steps} online steps; checkpoint written", flush=True)
    except UserFacingError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
