"""Pretraining steps/s of the default job with μ in the main process or in a second one (issue 23).

    python -m bench.pretrain_processes                     # 3000 steps each: one, two, one with 2 torch threads
    python -m bench.pretrain_processes --steps=5000 --repeats=3
    python -m bench.before_after --before=HEAD~1 --bench=bench.pretrain_processes -- --steps=2000

Each configuration is a real `python -m launch.pretrain --config=configs/finetune.py` run (the README's main
job) in a fresh process, shortened to `--steps` critic and μ steps, evaluated once at the end on short
episodes (not timed). The figure is the training loop's rate over the whole run, start-up of the μ worker
included: the steps divided by the time the log lines' intervals took (metrics.jsonl,
train/steps_per_second); `steady` leaves out the first log interval. Configurations alternate over the
repeats, so that the load of whatever else runs on the machine falls on each; each figure is the
median of the repeats, with its range.
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
CONFIGS = {"one process": ["--config.pretrain_processes=one", "--config.num_threads=1"],
           "one process, 2 torch threads": ["--config.pretrain_processes=one", "--config.num_threads=2"],
           "two processes": ["--config.pretrain_processes=two", "--config.num_threads=1"]}


def run(label: str, steps: int, log_interval: int, workdir: Path) -> tuple[float, float]:
    """(overall, steady) steps/s of one pretraining run."""
    run_dir = workdir / label.replace(" ", "_").replace(",", "")
    args = ["--config=configs/finetune.py", f"--config.num_critic_steps={steps}", f"--config.num_actor_steps={steps}",
            f"--config.log_interval={log_interval}", f"--config.checkpoint_interval={steps}",
            f"--config.eval.interval={steps}", "--config.eval.episodes=1", "--config.eval.max_episode_steps=20",
            "--config.wandb.mode=disabled", f"--run_dir={run_dir}", *CONFIGS[label]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run([sys.executable, "-m", "launch.pretrain", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed (status {proc.returncode}):\n{proc.stderr[-3000:]}")
    rates = [r["train/steps_per_second"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
             if "train/steps_per_second" in r]
    seconds = [log_interval / r for r in rates]
    return steps / sum(seconds), log_interval * (len(rates) - 1) / sum(seconds[1:])


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
    args = ap.parse_args(argv)
    labels = [label for label in CONFIGS if not args.only or label in args.only.split(",")]
    print(f"# {cpu_line()}; configs/finetune.py pretraining, {args.steps} steps, {args.repeats} repeat(s)", flush=True)
    results: dict[str, list[tuple[float, float]]] = {label: [] for label in labels}
    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as tmp:
        for repeat in range(args.repeats):
            for label in labels:
                results[label].append(run(label, args.steps, args.log_interval, Path(tmp) / f"r{repeat}"))
                print(f"#   {label} (repeat {repeat + 1}): {results[label][-1][0]:.1f} steps/s, steady "
                      f"{results[label][-1][1]:.1f}", flush=True)
    median = {}
    for label, runs in results.items():
        overall, steady = [r[0] for r in runs], [r[1] for r in runs]
        median[label] = statistics.median(overall)
        print(f"{label}: {median[label]:.1f} steps/s (range {min(overall):.1f}-{max(overall):.1f}; steady "
              f"{statistics.median(steady):.1f}, range {min(steady):.1f}-{max(steady):.1f})")
    base = median.get("one process")
    for label in labels:
        if base and label != "one process":
            print(f"{label} / one process: {median[label] / base:.2f} x")


if __name__ == "__main__":
    main()
