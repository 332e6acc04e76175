"""Environment steps per second of the WHOLE finetuning system with 1, 2 and 4 actor processes.

    python -m bench.scaling                            # actors 1, 2, 4; 3000 env steps each, 1000 warm-up
    python -m bench.scaling --actors=1,2 --total_env_steps=2000 --min_replay_size=600
    python -m bench.scaling --pretrained=runs/<run>/checkpoint.pt   # skip the quick pretraining
    python -m bench.scaling --launchers=local,ray --actors=1,2     # the Ray launcher beside the local one

Runs `python -m launch.finetune` as a subprocess per actor count (configs/finetune.py:
4 envs per actor, N = 16 implicit exploration, learner on 128 online + 128 offline rows
with 2 μ steps per V+Q update, limiter at 1 update per env step), starting from a
checkpoint made once by a short `launch.pretrain` run of the same config, each in its
own temporary work directory, with the user's MINARI_DATASETS_PATH (the default
dataset local/hopper/medium-v0 is built on first use). The evaluator is kept almost
idle (one episode at start and stop) so that it does not compete for the cores.

Figures per run, from `summary.json` and `logs/learner.jsonl`:
  * steady-state env steps/s: the slope of env steps over the learner's log rows
    (time stamps), after learning has started, so start-up and warm-up are left out;
  * env steps/s over the whole run, start-up included (env steps / wall time);
  * learner V+Q updates/s over the same rows;
  * the time-weighted fraction of the learner's time spent waiting for an online batch
    (the rate limiter holding it to the update-to-data ratio, or sampling);
  * updates per env step after warm-up (summary.json);
  * start-up (launch to every role started) and the peak memory of the run's process tree
    (PSS, Ray's own processes included with --launcher=ray).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.learner_throughput import row

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
            "WANDB_SILENT": "true"}


def make_checkpoint(workdir: Path, steps: int = 300, log=print) -> Path:
    """A quick pretraining run of configs/finetune.py's networks (quickstart sizes): its checkpoint path."""
    args = [sys.executable, "-m", "launch.pretrain", "--config=configs/finetune.py", f"--config.workdir={workdir}",
            f"--config.num_critic_steps={steps}", f"--config.num_actor_steps={steps}",
            f"--config.log_interval={max(1, steps // 2)}", f"--config.checkpoint_interval={steps}",
            f"--config.eval.interval={steps}", "--config.eval.episodes=1", "--config.eval.modes=('argmax',)",
            "--config.eval.num_candidates=(16,)", "--config.eval.max_episode_steps=100", "--config.wandb.mode=disabled"]
    t0 = time.time()
    proc = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pretraining for the scaling bench failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    ckpts = sorted(Path(workdir).glob("*/checkpoint.pt"))
    if not ckpts:
        raise RuntimeError(f"pretraining wrote no checkpoint under {workdir}:\n{proc.stdout[-2000:]}")
    log(f"# scaling: pretrained {steps} steps in {time.time() - t0:.0f} s -> {ckpts[0]}")
    return ckpts[0]


def steady_state(learner_rows: list[dict]) -> dict:
    """Slopes over the learner's periodic log rows (learning has started at the first one).

    The first row's interval still contains the warm-up wait, so slopes start at it and
    the wait fraction is weighted from the second row on.
    """
    rows = [r for r in learner_rows if "env_steps" in r and "learner_step" in r and "event" not in r]
    if len(rows) < 2:
        return {}
    a, b = rows[0], rows[-1]
    dt = b["time"] - a["time"]
    waits = [(r["batch_wait_fraction"], r["time"] - p["time"]) for p, r in zip(rows, rows[1:])]
    return {"env_steps_per_s": (b["env_steps"] - a["env_steps"]) / dt,
            "updates_per_s": (b["learner_step"] - a["learner_step"]) / dt,
            "wait_fraction": sum(w * d for w, d in waits) / max(sum(d for _, d in waits), 1e-9),
            "window_s": dt, "rows": len(rows)}


class PeakMemory:
    """The largest total memory of a process tree seen while it runs, sampled every second in a thread.

    PSS (proportional set size: shared pages split between the processes sharing them), so that the
    libraries every role maps (torch, TensorFlow) count once, not once per process as RSS would; the
    tree holds the supervisor's roles and, with --launcher=ray, the local Ray cluster's own processes
    (GCS, raylet, workers), which ray.init starts below the supervisor.
    """

    def __init__(self, pid: int):
        import threading

        self.pid, self.peak_mib, self.processes = pid, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(1.0):
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            total = 0
            for proc in tree:
                try:
                    total += proc.memory_full_info().pss
                except psutil.Error:
                    pass
            if total / 2**20 > self.peak_mib:
                self.peak_mib, self.processes = total / 2**20, len(tree)

    def stop(self) -> tuple[float, int]:
        self._stop.set()
        self._thread.join()
        return self.peak_mib, self.processes


def run_finetune(pretrained: Path, workdir: Path, num_actors: int, total_env_steps: int, min_replay_size: int,
                 log_interval: int = 100, timeout_s: float = 900, extra=()) -> dict:
    args = [sys.executable, "-m", "launch.finetune", f"--pretrained={pretrained}", f"--config.workdir={workdir}",
            f"--config.online.num_actors={num_actors}", f"--config.online.total_env_steps={total_env_steps}",
            f"--config.online.min_replay_size={min_replay_size}", f"--config.online.log_interval={log_interval}",
            "--config.online.eval_interval=100000000", "--config.online.eval_episodes=1",
            "--config.wandb.mode=disabled", *extra]
    load0 = os.getloadavg()[0]
    t0 = time.time()
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = PeakMemory(proc.pid)
    lines, online_at = [], None
    for line in proc.stdout:          # the supervisor says when every role is started
        lines.append(line)
        if online_at is None and line.startswith("=== online finetuning"):
            online_at = time.time() - t0
        if time.time() - t0 > timeout_s:
            proc.kill()
    proc.wait()
    wall = time.time() - t0
    peak_mib, processes = memory.stop()
    summaries = sorted(Path(workdir).glob("*/summary.json"))
    if proc.returncode != 0 or not summaries:
        raise RuntimeError(f"launch.finetune with {num_actors} actors failed (code {proc.returncode}):\n"
                           f"{''.join(lines)[-5000:]}")
    run_dir = summaries[0].parent
    summary = json.loads(summaries[0].read_text())
    learner_rows = [json.loads(line) for line in (run_dir / "logs" / "learner.jsonl").read_text().splitlines()
                    if line.strip()]
    return {"summary": summary, "steady": steady_state(learner_rows), "process_wall_s": wall,
            "start_up_s": online_at, "load_before": load0, "load_after": os.getloadavg()[0],
            "peak_memory_mib": peak_mib, "processes": processes}


def rows(actors=(1, 2, 4), total_env_steps: int = 3000, min_replay_size: int = 1000, pretrained: str | None = None,
         pretrain_steps: int = 300, log_interval: int = 100, progress=None, log=print,
         launchers=("local",)) -> list[dict]:
    from configs import finetune

    o = finetune.get_config().online
    out: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
        ckpt = Path(pretrained) if pretrained else make_checkpoint(Path(tmp) / "pretrain", pretrain_steps, log)
        # a count may repeat (A/B runs): one work dir per run; launchers alternate at each count
        for i, (k, launcher) in enumerate((k, la) for k in actors for la in launchers):
            r = run_finetune(ckpt, Path(tmp) / f"run{i}-actors{k}-{launcher}", k, total_env_steps, min_replay_size,
                             log_interval, extra=[f"--launcher={launcher}"])
            s, st = r["summary"], r["steady"]
            conf = (f"cpu ({os.cpu_count()} cores), launch.finetune --launcher={launcher}: {k} actor(s) x "
                    f"{o.envs_per_actor} envs, "
                    f"N={o.num_candidates} {o.exploration}, learner {o.online_batch_size}+{o.offline_batch_size} rows "
                    f"+ {o.mu_steps_per_update} μ steps/update, UTD {o.updates_per_env_step:g}, {total_env_steps} "
                    f"steps ({min_replay_size} warm-up); load {r['load_before']:.1f} → {r['load_after']:.1f}")
            new = [row("scaling", conf, "env steps/s, steady state (learner log slope)",
                       st.get("env_steps_per_s", float("nan")), "env steps/s",
                       f"over {st.get('window_s', 0):.0f} s, {st.get('rows', 0)} log rows"),
                   row("scaling", conf, "env steps/s, whole run incl. start-up", s["env_steps"] / s["wall_time_s"],
                       "env steps/s", f"{s['env_steps']} env steps in {s['wall_time_s']:.0f} s"),
                   row("scaling", conf, "learner V+Q updates/s, steady state", st.get("updates_per_s", float("nan")),
                       "updates/s", f"{s['learner_steps']} learner steps in all"),
                   row("scaling", conf, "learner time waiting for a batch", st.get("wait_fraction", float("nan")),
                       "fraction", ""),
                   row("scaling", conf, "updates per env step after warm-up", s["updates_per_env_step_after_warmup"],
                       "updates/env step", ""),
                   row("scaling", conf, "start-up: launch to every role started", r["start_up_s"] or float("nan"),
                       "s", "dataset load, replay server, (Ray cluster), processes"),
                   row("scaling", conf, "peak memory of the run's processes (PSS sum)", r["peak_memory_mib"],
                       "MiB", f"{r['processes']} processes (supervisor, roles{', Ray cluster' if launcher == 'ray' else ''})")]
            out += new
            if progress:
                progress(new)
    return out


def main(argv):
    del argv
    from absl import flags

    from bench.learner_throughput import TABLE_HEAD, format_rows, machine_line

    import torch

    torch.set_num_threads(1)
    f = flags.FLAGS
    print(machine_line())
    print("Other processes share the cores, so figures are noisy.\n")
    print(TABLE_HEAD, flush=True)
    rows([int(k) for k in f.actors], f.total_env_steps, f.min_replay_size, f.pretrained, f.pretrain_steps,
         progress=lambda rs: print(format_rows(rs), flush=True), launchers=tuple(f.launchers))
    print("\n" + machine_line())


def define_flags():
    from absl import flags
    flags.DEFINE_list("actors", ["1", "2", "4"], "Actor process counts to run.")
    flags.DEFINE_list("launchers", ["local"], "launch.finetune --launcher values, run side by side per count "
                      "(local,ray: the Ray launcher beside the local one).")
    flags.DEFINE_integer("total_env_steps", 3000, "Online env steps per run.")
    flags.DEFINE_integer("min_replay_size", 1000, "Transitions before learning starts.")
    flags.DEFINE_integer("pretrain_steps", 300, "Steps of the quick pretraining run (without --pretrained).")
    flags.DEFINE_string("pretrained", None, "Use this pretraining checkpoint instead of a quick run.")


if __name__ == "__main__":
    from absl import app
    define_flags()
    app.run(main)
