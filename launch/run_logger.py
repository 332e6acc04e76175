"""Progress on the console, every metric in a JSONL file, and the same to wandb.

wandb runs offline unless an API key is configured (WANDB_API_KEY or a
~/.netrc entry), so runs work with no network; `wandb sync <dir>` uploads them
later (`sync_command`: one command for every offline run of a job). The wandb run id is kept
in the checkpoint, so `--resume` continues the same wandb run. The pretraining and the finetuning
of one launch.finetune job share a wandb `group` (the job's name), so they show together. The
JSONL file is appended and flushed at every write, so nothing logged is lost on a crash.
"""
from __future__ import annotations

import json
import netrc
import os
import time
from pathlib import Path


def wandb_mode(requested: str) -> str:
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    return "offline"


class RunLogger:
    def __init__(self, run_dir: Path, config: dict, wandb_cfg, run_name: str, run_id: str | None = None,
                 step_key: str = "learner_step", group: str | None = None, job_type: str | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_file = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self.step_key = step_key
        self.wandb = None
        self.run_id = run_id
        mode = wandb_mode(wandb_cfg.mode)
        self.mode = mode
        if mode != "disabled":
            import wandb
            os.environ.setdefault("WANDB_SILENT", "true")
            self.wandb = wandb.init(project=wandb_cfg.project, entity=wandb_cfg.entity or None, name=run_name,
                                    id=run_id, resume="allow", dir=str(self.run_dir), mode=mode, config=config,
                                    group=group, job_type=job_type)
            self.run_id = self.wandb.id
            self.wandb.define_metric(step_key)
            self.wandb.define_metric("*", step_metric=step_key)

    def log(self, metrics: dict, step: int) -> None:
        row = {self.step_key: step, "time": time.time(), **metrics}
        self.metrics_file.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            self.wandb.log({self.step_key: step, **metrics})

    def close(self) -> None:
        self.metrics_file.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def offline_runs(run_dirs) -> list[Path]:
    """The offline wandb runs written under each run directory (a resumed run adds one per sitting)."""
    return [p for d in run_dirs for p in sorted(Path(d).glob("wandb/offline-run-*")) if p.is_dir()]


def sync_command(run_dirs) -> str | None:
    """One `wandb sync` command for every offline wandb run under `run_dirs`, or None when there is none.

    Why one: a finetuning job writes two wandb runs (its pretraining, in <run>/pretrain/, and the
    online phase); syncing one of them leaves the job's group half uploaded."""
    found = [d for d in run_dirs if offline_runs([d])]
    if not found:
        return None
    return "wandb sync " + " ".join(f"{Path(d) / 'wandb'}/offline-run-*" for d in found)


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
