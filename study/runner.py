"""Runs the study's runs as subprocesses, at most `parallel` at a time, resuming interrupted ones.

A run that left its checkpoint marker (pretraining: checkpoint.pt, finetuning: finetune_state.json)
is restarted with --resume; a finished one (`Run.done`) is skipped. Every process gets one
thread, its own session and a parent-death signal; SIGINT/SIGTERM stop the runs in flight, which
checkpoint. Each finished process appends one line to <root>/jobs.jsonl.
"""
from __future__ import annotations

import ctypes
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from study.paths import command_line
from study.plan import Run

ROOT = Path(__file__).resolve().parents[1]


def _die_with_parent():
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG: no orphans if we are killed
    except OSError:
        pass


class Runner:
    """Starts runs as subprocesses, at most `parallel` at a time; SIGINT/SIGTERM stop them cleanly."""

    def __init__(self, root: Path):
        self.root = root
        self.stop = False
        self.running: dict[int, tuple[Run, subprocess.Popen, float]] = {}
        self.jobs_file = root / "jobs.jsonl"

    def on_signal(self, signum, _frame):
        if not self.stop:
            print(f"\n{signal.Signals(signum).name}: stopping the runs in flight (they checkpoint); "
                  f"rerun the same command to continue.", flush=True)
        self.stop = True
        for _, proc, _ in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def start(self, run: Run) -> None:
        marker = {"pretrain": "checkpoint.pt", "finetune": "finetune_state.json"}.get(run.kind)
        resume = marker is not None and (run.run_dir / marker).exists()
        args = [sys.executable, "-m", *run.args] + (["--resume"] if resume else [])
        run.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(run.log, "a") as out:
            out.write(f"\n# {datetime.datetime.now().isoformat(timespec='seconds')} "
                      f"{'resume' if resume else 'start'}: {command_line(args)}\n")
            out.flush()
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    preexec_fn=_die_with_parent)
        self.running[proc.pid] = (run, proc, time.time())

    def run_all(self, runs: list[Run], parallel: int, label: str) -> dict:
        todo = [r for r in runs if not r.done()]
        skipped = len(runs) - len(todo)
        print(f"=== {label}: {len(runs)} runs, {skipped} already done, {len(todo)} to run, "
              f"{parallel} at a time ===", flush=True)
        t0, finished, failed, loads = time.time(), 0, [], []
        while (todo or self.running) and not (self.stop and not self.running):
            while todo and len(self.running) < parallel and not self.stop:
                run = todo.pop(0)
                print(f"  start  {run.name}", flush=True)
                self.start(run)
            time.sleep(1.0)
            if int(time.time()) % 30 == 0:
                loads.append(os.getloadavg()[0])
            for pid, (run, proc, started) in list(self.running.items()):
                if proc.poll() is None:
                    continue
                del self.running[pid]
                wall = time.time() - started
                ok = proc.returncode == 0 and run.done()
                finished += 1
                if not ok:
                    failed.append(run.name)
                with open(self.jobs_file, "a") as f:
                    f.write(json.dumps({"kind": run.kind, "run": run.name, "method": run.method,
                                        "dataset": run.dataset, "seed": run.seed, "recipe": run.recipe,
                                        "start": started, "end": time.time(), "wall_s": wall,
                                        "rc": proc.returncode, "done": ok}) + "\n")
                left = len(todo) + len(self.running)
                eta = (time.time() - t0) / finished * left / 1.0 if finished else float("nan")
                status = "done  " if ok else ("stopped" if self.stop else "FAILED")
                print(f"  {status} {run.name} in {wall:5.0f}s (rc {proc.returncode})"
                      f" | {left} left, ~{eta / 60:.0f} min" + ("" if ok or self.stop else f" | log: {run.log}"), flush=True)
        return {"label": label, "wall_s": time.time() - t0, "ran": finished, "failed": failed,
                "load_avg_mean": float(np.mean(loads)) if loads else None}


def machine_info() -> dict:
    import torch
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "host": platform.node()}
