"""What launch.finetune needs to keep a run's processes going: one child process per role, the
role logs forwarded to wandb, and the bookkeeping of a learner restart.

A learner that dies is restarted from its last checkpoint (`online.replay_checkpoint_interval_s`
is the loss window): the updates since that checkpoint are lost, and with the replay hosted in the
learner also the transitions inserted since the replay's last checkpoint. `LostWork` counts both
and `set_aside` moves the log rows of the lost stretch to logs/lost/, so that the learner's step
and the curve's x axis never go backwards in logs/ and the summary holds no point twice.
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from learner.log_rows import complete_rows

ROOT = Path(__file__).resolve().parents[1]
GLOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|\[reverb/)")


def _die_with_parent():
    """Children get SIGTERM if the supervisor dies, even by SIGKILL: nothing is left behind."""
    os.setsid()   # own process group: a terminal's Ctrl-C reaches only the supervisor, which stops them in order
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    """One role's process on this machine; its output goes to logs/<name>.out. launch/ray_roles.py
    has the same interface for a role that Ray places on any node of a cluster."""

    def __init__(self, name: str, args: list[str], run_dir: Path, env: dict | None = None):
        self.name, self.args, self.run_dir = name, args, run_dir
        self.extra_env = env or {}
        self.restarts = 0
        self.restarts_itself = False   # True where the runtime restarts the role (Ray's actors), not the supervisor
        self.proc: subprocess.Popen | None = None
        self.out_path = run_dir / "logs" / f"{name}.out"
        self.out_offset = 0            # where this start's output begins in out_path

    def start(self, extra_args: list[str] | None = None) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
               **self.extra_env}
        self.out_offset = self.out_path.stat().st_size if self.out_path.exists() else 0
        out = open(self.out_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", *self.args, *(extra_args or [])], cwd=ROOT, env=env,
                                     stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        out.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def lives_restarted(self) -> list[str]:
        """Why each life the runtime restarted since the last call ended; a local process has none."""
        return []

    @property
    def returncode(self) -> int | None:
        """The exit status of this start (negative: killed by that signal); None while it runs."""
        return self.proc.returncode if self.proc is not None else None

    def signal_stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float) -> None:
        if not self.alive():
            return
        self.signal_stop()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  {self.name} did not stop within {timeout:.0f}s; killing it", flush=True)
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        """What this start of the process has printed so far."""
        if not self.out_path.exists():
            return ""
        with open(self.out_path, errors="replace") as f:
            f.seek(self.out_offset)
            return f.read()

    def tail(self, lines: int = 15) -> str:
        """The last lines this start printed, without the C++ libraries' log lines (glog's `I1202 ...`)."""
        said = [ln for ln in self.output().splitlines(True) if not GLOG_LINE.match(ln)]
        return "".join(said[-lines:])

    def exit_reason(self) -> str:
        """One line: how the process ended and, if it said, why (its last `error:` line)."""
        code = self.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited (code {code})"
        said = [ln.strip() for ln in self.output().splitlines() if re.match(r"^\s*(\w+ ?\d*: )?error: ", ln)
                or re.match(r"^\w+(Error|Exception): ", ln)]
        return f"{self.name} {how}" + (f": {said[-1].rstrip('.')}" if said else "")


class LogForwarder:
    """Tails every role's JSONL file and sends new rows to the run logger, keyed by env steps."""

    def __init__(self, logs_dir: Path, logger):
        self.logs_dir, self.logger = logs_dir, logger
        self.offsets: dict[Path, int] = {}
        self.evaluations: list[dict] = []
        self.last: dict[str, dict] = {}

    def skip_existing(self) -> None:
        """On resume: rows already sent to wandb count for the curve and summary but are not sent again."""
        logger, self.logger = self.logger, None
        self.poll(0)
        self.logger = logger

    def poll(self, env_steps: int) -> None:
        for path in sorted(self.logs_dir.glob("*.jsonl")):
            with open(path) as f:
                f.seek(self.offsets.get(path, 0))
                chunk = f.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete.encode())
            for line in complete.splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self._forward(row, env_steps)

    def _forward(self, row: dict, env_steps: int) -> None:
        role = row.get("role", "unknown")
        self.last[role] = row
        step = int(row.get("env_steps", env_steps))
        if role == "evaluator":
            self.evaluations.append(row)
        prefix = {"evaluator": "eval", "learner": "learner", "actor": "actor"}.get(role, role)
        if role == "evaluator" and row.get("tag"):     # eval/<weighting>/<mode>_N<n>/...: launch/run_names.py
            prefix = f"eval/{row['tag']}"
        metrics = {f"{prefix}/{k}": v for k, v in row.items()
                   if isinstance(v, (int, float)) and k not in ("time", "env_steps", "actor_id")}
        if metrics and self.logger is not None:
            self.logger.log(metrics, step)

    def rewound(self, name: str, moved: list[dict]) -> None:
        """After rows of logs/<name>.jsonl were set aside: forget them, go on from the shortened file's end
        (what the supervisor had not read yet of it is skipped: it was all past the restored point)."""
        gone = {json.dumps(r, sort_keys=True) for r in moved}
        self.evaluations = [r for r in self.evaluations if json.dumps(r, sort_keys=True) not in gone]
        path = self.logs_dir / f"{name}.jsonl"
        self.offsets[path] = path.stat().st_size if path.exists() else 0
        if name == "learner":
            self.last.pop("learner", None)


class InsertPoll:
    """The replay's insert count as the supervisor reads it each second.

    Why: one poll that a live server did not answer ("Connection reset by peer" as the evaluator was
    killed) ended a whole run with a traceback. A failure while the server's process is alive is now
    retried on the next rounds and said on the console; only `patience` failures in a row end the run,
    naming the last error. While the server is down the learner's restart handles it: not counted.
    """

    def __init__(self, read_inserts, server_alive, patience: int = 10, say=print):
        self.read_inserts, self.server_alive, self.patience, self.say = read_inserts, server_alive, patience, say
        self.failures = 0

    def read(self) -> int | None:
        """The count, or None when this round has none (the caller keeps its last one)."""
        try:
            inserts = int(self.read_inserts())
        except Exception as e:
            if not self.server_alive():
                return None
            self.failures += 1
            if self.failures >= self.patience:
                raise RuntimeError(f"The replay server's process is up but did not answer {self.failures} polls in "
                                   f"a row; last: {type(e).__name__}: {e}") from e
            self.say(f"  the replay server did not answer a poll ({type(e).__name__}: {e}); asking again next "
                     f"round ({self.failures}/{self.patience})")
            return None
        self.failures = 0
        return inserts


@dataclasses.dataclass
class LostWork:
    """What one learner crash cost, from the last figures seen before it and those restored after it.

    `updates` is exact (the learner's step counter, written after every update, against the step it
    came back at); `transitions` counts from the supervisor's last reading of the replay (every
    second), so it may miss up to one second of actor steps; the run's exact total of transitions
    that did not reach the replay is summary.json's lost.actor_transitions_not_in_replay.
    """
    restored_step: int
    updates: int
    restored_inserts: int | None        # None: the replay ran in its own process and lost nothing
    transitions: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def restored_figures(learner_output: str) -> tuple[int, int | None]:
    """(learner step, replay inserts) that a restarted learner says it restored; inserts None if it
    hosts no replay. Raises ValueError if the output does not say (the learner died again first)."""
    step = re.findall(r"learner resumed at online step (\d+)", learner_output)
    start = re.findall(r"learner starts from .* \((\d+) pretraining steps\)", learner_output)
    if not step and not start:
        raise ValueError("the restarted learner has not said where it resumed")
    inserts = re.findall(r"online transitions \((?:restored|empty)\), (\d+) inserted so far", learner_output)
    return (int(step[-1]) if step else 0), (int(inserts[-1]) if inserts else None)


def last_learner_step(logs_dir: Path) -> int:
    """The step a dead learner reached: exact from its step counter (learner/online.py StepCounter),
    else its last log row."""
    from learner.online import STEP_COUNTER_NAME, StepCounter

    logged = max((r.get("learner_step", 0) for r in complete_rows(logs_dir / "learner.jsonl")), default=0)
    counted = StepCounter.read(logs_dir / STEP_COUNTER_NAME)
    return max(logged, counted or 0)


def actor_transitions(logs_dir: Path) -> int:
    """Transitions the run's local actors stepped and handed to their writers, over every life of every
    actor (an actor's count starts at 0 again when it is restarted). Exact for actors that stopped in
    order (their last row is written on stop); one killed outright counts up to its last row."""
    total = 0
    for path in sorted(logs_dir.glob("actor_*.jsonl")):
        life_max, last = 0, -1
        for row in complete_rows(path):
            n = int(row.get("actor_env_steps", 0))
            if n < last:                 # a new life
                total, life_max = total + life_max, 0
            life_max, last = max(life_max, n), n
        total += life_max
    return total


def learner_started(output: str) -> bool:
    """Whether a learner's output says it loaded its starting point (after that, a death is a crash
    to restart from; before it, a start-up failure such as a bad checkpoint, which a restart repeats)."""
    return "learner resumed at online step" in output or "learner starts from" in output


def checkpoints_note(run_dir: Path) -> str:
    """What a --resume of this run would start from, as it is on disk now."""
    import time

    def age(path: Path) -> str:
        return f"{time.time() - path.stat().st_mtime:.0f} s ago"
    learner_ckpt = run_dir / "learner_checkpoint.pt"
    replay_files = [p for p in (run_dir / "replay").rglob("*") if p.is_file()] if (run_dir / "replay").exists() else []
    parts = [f"the learner's checkpoint ({learner_ckpt}, written {age(learner_ckpt)})" if learner_ckpt.exists()
             else "no learner checkpoint yet (a --resume starts the online phase again from the pretrained model)",
             f"the replay's checkpoint ({run_dir / 'replay'}, written {age(max(replay_files, key=lambda p: p.stat().st_mtime))})"
             if replay_files else "no replay checkpoint (a --resume starts with an empty replay)"]
    return "On disk: " + "; ".join(parts) + ". Fix the cause and continue with --resume."
