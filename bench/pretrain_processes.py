"""Pretraining steps/s of the default job with μ in the main process or in a second one (issue 23).

    python -m bench.pretrain_processes                     # 3000 steps each: one, two, one with 2 torch threads
    python -m bench.pretrain_processes --steps=5000 --repeats=3
    python -m bench.before_after --before=HEAD~1 --bench=bench.pretrain_processes -- --steps=2000

Each configuration is a real pretraining run of configs/finetune.py (the README's main job) through
`launch.pretrain.train`, in a fresh process, shortened to `--steps` critic and μ steps and evaluated once at
the end on short episodes (not timed). Figures:
- `steps/s`: the training loop's rate over the whole run, the μ worker's start-up included (the steps
  divided by the time the log lines' intervals took, metrics.jsonl train/steps_per_second); `steady`
  leaves out the first log interval;
- `CPU-bound`: 1000 / the main process's CPU milliseconds per step between the first and the last log
  line, what the loop runs at with a core to itself. On a machine that other sessions keep busy, Linux
  gives each session (autogroup) a fair share, so the two processes of "two" share about the CPU that
  "one" gets and the wall rates show little of the gain; the CPU figures still do (the μ worker's CPU per
  step, start-up included, is printed beside: it stays below the main process's, so μ keeps ahead).
Configurations alternate over the repeats, so that the load of whatever else runs on the machine falls
on each; each figure is the median of the repeats, with its range.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"one process": ("one", 1), "one process, 2 torch threads": ("one", 2), "two processes": ("two", 1)}


def child(label: str, steps: int, log_interval: int, run_dir: str, out: str) -> None:
    """One pretraining run in this (fresh) process; writes its wall and CPU figures to `out` (JSON).

    CPU seconds are read at each log line (RunLogger.log, patched here): the main process's between the
    first and the last log line, and the μ worker's whole life (it is joined before train() returns).
    """
    import resource
    import time

    from configs import finetune
    from launch import pretrain, run_logger

    marks = []
    log = run_logger.RunLogger.log

    def marked(self, scalars, step, *args, **kwargs):
        if "train/steps_per_second" in scalars:
            marks.append((step, time.perf_counter(), time.process_time()))
        return log(self, scalars, step, *args, **kwargs)

    run_logger.RunLogger.log = marked
    c = finetune.get_config()
    c.num_critic_steps = c.num_actor_steps = steps
    c.log_interval, c.checkpoint_interval, c.eval.interval = log_interval, steps, steps
    c.eval.episodes, c.eval.max_episode_steps, c.wandb.mode = 1, 20, "disabled"
    c.pretrain_processes, c.num_threads = CONFIGS[label]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pretrain.train(c, resume=False, run_dir=Path(run_dir))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    (first, wall0, cpu0), (last, wall1, cpu1) = marks[0], marks[-1]
    Path(out).write_text(json.dumps({"steady_steps": last - first, "steady_wall": wall1 - wall0,
                                     "steady_main_cpu": cpu1 - cpu0, "worker_cpu": worker_cpu,
                                     "rates": [m[0] for m in marks]}))


def run(label: str, steps: int, log_interval: int, workdir: Path) -> dict:
    """One configuration's figures: overall and steady wall steps/s, CPU ms per step of each process."""
    run_dir = workdir / label.replace(" ", "_").replace(",", "")
    out = workdir / f"{run_dir.name}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run([sys.executable, "-m", "bench.pretrain_processes", f"--child={label}", f"--steps={steps}",
                           f"--log_interval={log_interval}", f"--run_dir={run_dir}", f"--out={out}"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed (status {proc.returncode}):\n{proc.stderr[-3000:]}")
    rates = [r["train/steps_per_second"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
             if "train/steps_per_second" in r]
    figures = json.loads(out.read_text())
    return {"overall": steps / sum(log_interval / r for r in rates),
            "steady": figures["steady_steps"] / figures["steady_wall"],
            "main_ms": 1000 * figures["steady_main_cpu"] / figures["steady_steps"],
            "worker_ms": 1000 * figures["worker_cpu"] / steps if figures["worker_cpu"] > 0.5 else 0.0}


def cpu_line() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    return f"{model}, {'AVX-512' if ' avx512f' in info else 'no AVX-512'}, {len(os.sched_getaffinity(0))} cores"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--log_interval", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated labels to run (default: all)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--run_dir", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.steps, args.log_interval, args.run_dir, args.out)
    labels = [label for label in CONFIGS if not args.only or label in args.only.split(",")]
    print(f"# {cpu_line()}; configs/finetune.py pretraining, {args.steps} steps, {args.repeats} repeat(s)", flush=True)
    results: dict[str, list[dict]] = {label: [] for label in labels}
    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as tmp:
        for repeat in range(args.repeats):
            for label in labels:
                r = run(label, args.steps, args.log_interval, Path(tmp) / f"r{repeat}")
                results[label].append(r)
                print(f"#   {label} (repeat {repeat + 1}): {r['overall']:.1f} steps/s, steady {r['steady']:.1f}; "
                      f"CPU ms/step main {r['main_ms']:.2f}, μ worker {r['worker_ms']:.2f} (start-up included); load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
    median = {}
    for label, runs in results.items():
        def spread(key):
            values = [r[key] for r in runs]
            return statistics.median(values), min(values), max(values)
        median[label] = spread("overall")[0]
        (o, o_lo, o_hi), (st, st_lo, st_hi), (cpu, c_lo, c_hi) = spread("overall"), spread("steady"), spread("main_ms")
        print(f"{label}: {o:.1f} steps/s (range {o_lo:.1f}-{o_hi:.1f}; steady {st:.1f}, range {st_lo:.1f}-{st_hi:.1f})")
        # what the loop would run at with a core of its own: the main process's CPU per step bounds it (in
        # "two" the μ worker needs less per step, so it keeps ahead); the figure that holds on a busy machine
        print(f"{label} CPU-bound: {1000 / cpu:.1f} steps/s (main process {cpu:.2f} ms CPU/step, range "
              f"{c_lo:.2f}-{c_hi:.2f})")
    base = median.get("one process")
    for label in labels:
        if base and label != "one process":
            print(f"{label} / one process: {median[label] / base:.2f} x")
            cpu_ratio = (statistics.median(r["main_ms"] for r in results["one process"])
                         / statistics.median(r["main_ms"] for r in results[label]))
            print(f"{label} / one process, CPU-bound: {cpu_ratio:.2f} x")

if __name__ == "__main__":
    main()
