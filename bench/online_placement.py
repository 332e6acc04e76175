"""The learner's update rate online under each CPU placement of the roles beside it, side by side.

    python -m bench.online_placement                       # evaluator niceness 0 vs 10, 2 repeats, alternating
    python -m bench.online_placement --settings="0:0,0:10,5:10" --repeats=3 --total_env_steps=5000

Why: on a 2-core machine an online run has more busy processes than cores (the learner with the replay
inside it, two actors, the evaluator). The learner is the bottleneck (every environment step waits for its
update: the rate limiter), so what matters is how much of a core it keeps while the evaluator plays its
episodes. Each setting `actor_nice:evaluator_nice` runs `launch.finetune` from one pretrained checkpoint
(configs/finetune.py: μ frozen, argmax N = 16), with the evaluator working as in the default job (20
episodes every 2,500 env steps), in turn with the others, so that a change in the machine's load falls on
all of them. Figures per setting (median over repeats): the learner's steady-state updates/s (the slope of
its log rows) and the online phase's wall time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.learner_throughput import machine_line
from bench.scaling import make_checkpoint, run_finetune


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="0:0,0:10", help="actor_nice:evaluator_nice pairs, comma-separated")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--total_env_steps", type=int, default=5000)
    ap.add_argument("--min_replay_size", type=int, default=1000)
    ap.add_argument("--eval_interval", type=int, default=2500, help="as the default job")
    ap.add_argument("--eval_episodes", type=int, default=20, help="as the default job")
    ap.add_argument("--pretrained", default=None, help="a checkpoint of configs/finetune.py's networks "
                    "(default: a quick 300-step pretraining)")
    args = ap.parse_args(argv)
    settings = [tuple(int(x) for x in s.split(":")) for s in args.settings.split(",")]
    print(machine_line(), flush=True)
    results: dict[tuple, list[dict]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory(prefix="bench_placement_") as tmp:
        ckpt = Path(args.pretrained) if args.pretrained else make_checkpoint(Path(tmp) / "pretrain")
        for rep in range(args.repeats):
            for actor_nice, eval_nice in settings:
                r = run_finetune(ckpt, Path(tmp) / f"r{rep}-a{actor_nice}-e{eval_nice}", 2, args.total_env_steps,
                                 args.min_replay_size, log_interval=250,
                                 extra=[f"--config.online.actor_nice={actor_nice}",
                                        f"--config.online.evaluator_nice={eval_nice}",
                                        f"--config.online.eval_interval={args.eval_interval}",
                                        f"--config.online.eval_episodes={args.eval_episodes}"])
                results[(actor_nice, eval_nice)].append(r)
                print(f"# repeat {rep}, actor_nice {actor_nice}, evaluator_nice {eval_nice}: "
                      f"{r['steady'].get('updates_per_s', float('nan')):.1f} updates/s, online wall "
                      f"{r['summary']['wall_time_s']:.0f} s, load {r['load_before']:.1f} -> {r['load_after']:.1f}",
                      flush=True)
    base = settings[0]
    med = {s: (statistics.median(r["steady"].get("updates_per_s", float("nan")) for r in rs),
               statistics.median(r["summary"]["wall_time_s"] for r in rs)) for s, rs in results.items()}
    print(f"\n{args.total_env_steps} env steps ({args.min_replay_size} warm-up), 2 actors x 4 envs, evaluator "
          f"{args.eval_episodes} episodes every {args.eval_interval} env steps; median of {args.repeats}; "
          f"{os.cpu_count()} cores")
    for s in settings:
        ups, wall = med[s]
        print(f"learner updates/s, actor_nice {s[0]} evaluator_nice {s[1]}: {ups:.1f} "
              f"(x{ups / med[base][0]:.2f} of {base[0]}:{base[1]})")
        print(f"online wall time s, actor_nice {s[0]} evaluator_nice {s[1]}: {wall:.0f}")


if __name__ == "__main__":
    main()
