"""Every benchmark of the platform, one markdown table.

    python -m bench.all              # full run (9 minutes on 2 quiet cores, 15–25 shared)
    python -m bench.all --short      # a quick look (about 3–5 minutes; noisier, shorter scaling runs)
    python -m bench.all --only=learner,actor --out=bench.md
    python -m bench.all --checkpoint=runs/<run>/checkpoint.pt   # trained networks for the bf16 check and scaling

Rows come from the benchmark modules' row functions:
  learner   bench.learner_throughput.rows   updates/s of each update at paper and quickstart sizes, beside
            the same update's GEMMs alone (bench.matmul_bound) with torch's default Adam and with fused Adam (as applied)
  actor     bench.actor_throughput.throughput_rows / bf16_check_rows   env steps/s of one
            actor process (raw env, argmax, implicit; N x envs per actor), bf16 policy pass and its
            quality check
  replay    bench.replay_throughput's writer and sampler processes: inserts/s and batches/s over loopback
  feed      bench.learner_feed.rows   online batches/s the learner can get and its time waiting for them,
            replay server in another process (before / now) and hosted by the learner (the default)
  scaling   bench.scaling.rows   env steps/s of the whole finetuning system with 1, 2, 4 actors

Progress goes to stderr as rows are measured; the table is printed at the end (and
written to --out). Each process uses one torch thread; other work on the machine
shows in the load averages printed above and below the table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

BENCHES = ("learner", "actor", "replay", "feed", "scaling")


def replay_rows(inserts: int = 10_000, writers: int = 3, batch_size: int = 256, sample_seconds: float = 4.0,
                obs_dim: int = 17, act_dim: int = 6, progress=None) -> list[dict]:
    """bench.replay_throughput's measurement (writer and sampler processes over loopback) as rows."""
    import multiprocessing as mp

    from bench import replay_throughput as rt
    from bench.learner_throughput import row
    from replay.server import ReplaySpec, start_server

    args = argparse.Namespace(obs_dim=obs_dim, act_dim=act_dim, env_batch=1, flush_every=16)
    spec = ReplaySpec(obs_dim, act_dim, max_size=inserts * (1 + writers), samples_per_insert=1.0,
                      min_size_to_sample=1, error_buffer=1e12)   # the limiter never binds: raw capacity
    server, address = start_server(spec)
    ctx = mp.get_context("spawn")
    try:
        r1, _ = rt._run_writers(ctx, address, 1, inserts, args)
        rk, _ = rt._run_writers(ctx, address, writers, inserts, args)
        out_q = ctx.Queue()
        p = ctx.Process(target=rt._sampler_proc, args=(address, batch_size, sample_seconds, out_q))
        p.start()
        s_remote = out_q.get(timeout=300)
        p.join()
        s_local = rt._time_sampler(address, batch_size, sample_seconds)
    finally:
        server.stop()
    conf = f"cpu, Reverb over loopback, obs {obs_dim}/act {act_dim}, one item per transition"
    out = [row("replay", f"{conf}, 1 writer process", "inserts", r1, "transitions/s", f"{inserts} transitions"),
           row("replay", f"{conf}, {writers} writer process(es) together", "inserts", rk, "transitions/s",
               f"{inserts} transitions each"),
           row("replay", f"{conf}, batch {batch_size}, sampler in another process (as the learner)", "sampling",
               s_remote, "batches/s", f"{s_remote * batch_size:,.0f} transitions/s"),
           row("replay", f"{conf}, batch {batch_size}, sampler in the server's process", "sampling", s_local,
               "batches/s", f"{s_local * batch_size:,.0f} transitions/s")]
    if progress:
        progress(out)
    return out


def quick_checkpoint(workdir: Path, steps: int) -> Path:
    from bench.scaling import make_checkpoint
    return make_checkpoint(workdir, steps, log=lambda m: print(m, file=sys.stderr, flush=True))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--short", action="store_true", help="a ~3-minute run: shorter windows, fewer scaling steps")
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {BENCHES}")
    ap.add_argument("--checkpoint", default=None,
                    help="pretraining checkpoint (configs/finetune.py sizes) for the bf16 check and the scaling "
                         "runs; default: a quick pretraining run made here")
    ap.add_argument("--compile", action="store_true", help="also torch.compile'd learner updates (slow to compile)")
    ap.add_argument("--out", default=None, help="also write the table to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    bad = [b for b in only if b not in BENCHES]
    if bad:
        ap.error(f"unknown benchmark(s) {bad}; choose from {BENCHES}")

    from bench import actor_throughput, learner_feed, learner_throughput, scaling
    from bench.learner_throughput import TABLE_HEAD, format_rows, machine_line

    short = args.short
    t_start = time.time()
    head = machine_line()
    print(f"# bench.all{' --short' if short else ''}: {head}", file=sys.stderr, flush=True)

    def progress(rs):
        print(format_rows(rs), file=sys.stderr, flush=True)

    table: list[dict] = []
    took: dict[str, float] = {}

    def timed(name, fn):
        t0 = time.time()
        out = fn()
        took[name] = took.get(name, 0.0) + time.time() - t0
        return out

    with tempfile.TemporaryDirectory(prefix="bench_all_") as tmp:
        ckpt = args.checkpoint
        if ckpt is None and ("actor" in only or "scaling" in only):
            ckpt = str(timed("pretrain", lambda: quick_checkpoint(Path(tmp) / "pretrain", 200 if short else 1000)))
        if "learner" in only:
            table += timed("learner", lambda: learner_throughput.rows(
                seconds=1.2 if short else 4.0, compile=args.compile, reps=3, progress=progress))
        if "actor" in only:
            table += timed("actor", lambda: actor_throughput.throughput_rows(
                seconds=0.4 if short else 2.5, bf16=True, bf16_ns=(16, 256) if short else (16, 64, 256),
                modes=("argmax", "implicit"), checkpoint=ckpt, progress=progress))
            table += timed("actor", lambda: actor_throughput.bf16_check_rows(
                ns=(16, 256) if short else (16, 64, 256), checkpoint=ckpt, seconds=0.5 if short else 2.0,
                progress=progress))
        if "replay" in only:
            table += timed("replay", lambda: replay_rows(
                inserts=3000 if short else 10_000, sample_seconds=1.5 if short else 4.0, progress=progress))
        if "feed" in only:
            table += timed("feed", lambda: learner_feed.rows(seconds=1.5 if short else 4.0, progress=progress))
        if "scaling" in only:
            steps, warm, every = (1000, 400, 50) if short else (3000, 1000, 100)
            table += timed("scaling", lambda: scaling.rows(
                (1, 2, 4), total_env_steps=steps, min_replay_size=warm, pretrained=ckpt, log_interval=every,
                progress=progress))
    text = "\n".join([
        f"bench.all{' --short' if short else ''}, {time.strftime('%Y-%m-%d %H:%M')}, {time.time() - t_start:.0f} s",
        f"at start: {head}", f"at end:   {machine_line()}",
        "time per part: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()),
        "Figures are best-of-windows on a machine shared with other work: orders of magnitude, not targets.",
        "Learner rows use random data of HalfCheetah's shapes (obs 17 / act 6); actor and scaling rows Hopper-v5.",
        "", TABLE_HEAD, format_rows(table)])
    print(text, flush=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
