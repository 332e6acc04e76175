"""How fast the replay channel is on this machine, and whether it can feed the learner.

Actors and the learner are separate processes in a real run, so writers and
the timed sampler run in spawned processes and talk to the server over
loopback gRPC (a sampler in the server's own process reads the table directly
and is faster; it is printed for comparison). The server's rate limiter is
made non-binding so the figures are raw channel capacity. Writers tag every
transition and samplers check every row's tag, as in a run (replay/auth.py),
so the figures include that cost.

    python -m bench.replay_throughput [--inserts 10000 --writers 3 --batch_size 256
                                       --updates_per_env_step 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_KEY = bytes(range(32))   # a fixed key: only its cost matters here, not its secrecy


def _writer_proc(address, n, obs_dim, act_dim, env_batch, flush_every, barrier, out):
    sys.path.insert(0, ROOT)
    from replay.writer import TransitionWriter

    rng = np.random.default_rng(os.getpid())
    obs = rng.standard_normal((env_batch, obs_dim)).astype(np.float32)
    act = rng.standard_normal((env_batch, act_dim)).astype(np.float32)
    rew = np.ones(env_batch, np.float32)
    w = TransitionWriter(address, flush_every=flush_every, key=BENCH_KEY)
    barrier.wait()
    t0 = time.time()
    for _ in range(n // env_batch):
        if env_batch == 1:
            w.add(obs[0], act[0], rew[0], obs[0], rew[0])
        else:
            w.add_batch(obs, act, rew, obs, rew)
    w.close()  # includes the final flush: every item is in the table
    out.put((t0, time.time(), w.num_added))


def _sampler_proc(address, batch_size, seconds, out):
    sys.path.insert(0, ROOT)
    out.put(_time_sampler(address, batch_size, seconds))


def _time_sampler(address, batch_size, seconds):
    from replay.sampler import OnlineSampler

    it = OnlineSampler(address, batch_size, key=BENCH_KEY)
    for _ in range(10):  # warm-up: stream set-up, prefetch buffer
        next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(it)
        n += 1
    return n / (time.perf_counter() - t0)


def _run_writers(ctx, address, k, n, args):
    barrier, out = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_writer_proc, args=(address, n, args.obs_dim, args.act_dim,
                                                    args.env_batch, args.flush_every, barrier, out))
             for _ in range(k)]
    for p in procs:
        p.start()
    res = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    total = sum(r[2] for r in res)
    return total / (max(r[1] for r in res) - min(r[0] for r in res)), total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--obs_dim", type=int, default=17, help="17 = Hopper/Walker2d/HalfCheetah")
    ap.add_argument("--act_dim", type=int, default=6)
    ap.add_argument("--inserts", type=int, default=10_000, help="transitions per writer process")
    ap.add_argument("--writers", type=int, default=3, help="writer processes in the concurrent run")
    ap.add_argument("--env_batch", type=int, default=1, help="transitions per add_batch call (1 = add)")
    ap.add_argument("--flush_every", type=int, default=16)
    ap.add_argument("--batch_size", type=int, default=256)
    ap.add_argument("--sample_seconds", type=float, default=4.0)
    ap.add_argument("--updates_per_env_step", type=float, default=1.0,
                    help="learner updates per inserted transition (UTD)")
    ap.add_argument("--learner_updates_per_s", type=float, default=None,
                    help="measured learner update rate, to print the env step rate a run can reach")
    args = ap.parse_args(argv)

    sys.path.insert(0, ROOT)
    from replay.server import ReplaySpec, start_server

    total = args.inserts * (1 + args.writers)
    spec = ReplaySpec(args.obs_dim, args.act_dim, max_size=total, samples_per_insert=1.0,
                      min_size_to_sample=1, error_buffer=1e12)  # limiter never binds
    server, address = start_server(spec)
    ctx = mp.get_context("spawn")
    try:
        r1, _ = _run_writers(ctx, address, 1, args.inserts, args)
        rk, _ = _run_writers(ctx, address, args.writers, args.inserts, args)

        out = ctx.Queue()
        p = ctx.Process(target=_sampler_proc, args=(address, args.batch_size, args.sample_seconds, out))
        p.start()
        s_remote = out.get(timeout=300)
        p.join()
        s_local = _time_sampler(address, args.batch_size, args.sample_seconds)
    finally:
        server.stop()

    b, u = args.batch_size, args.updates_per_env_step
    print(f"cpu cores: {os.cpu_count()}  obs_dim={args.obs_dim} act_dim={args.act_dim} "
          f"env_batch={args.env_batch} flush_every={args.flush_every}")
    print(f"insert, 1 writer process:            {r1:9.0f} transitions/s")
    print(f"insert, {args.writers} writer processes together: {rk:9.0f} transitions/s")
    print(f"sample, batch {b}, other process:    {s_remote:9.1f} batches/s = {s_remote * b:9.0f} transitions/s")
    print(f"sample, batch {b}, server's process: {s_local:9.1f} batches/s = {s_local * b:9.0f} transitions/s")
    need = rk * u
    print(f"learner at {u:g} updates/env step: samples_per_insert = {b * u:g}; keeping up with "
          f"{rk:.0f} env steps/s needs {need:.0f} batches/s ({need * b:.0f} transitions/s).")
    print(f"the sampler alone sustains {s_remote / u:.0f} env steps/s (learner in another process "
          f"than the server) / {s_local / u:.0f} (learner hosts the server) at this UTD.")
    if args.learner_updates_per_s:
        ups = min(args.learner_updates_per_s, s_remote)
        bound = "the sampler" if s_remote < args.learner_updates_per_s else "the learner's updates"
        print(f"with a learner doing {args.learner_updates_per_s:g} updates/s in another process: "
              f"about {ups / u:.0f} env steps/s in total, bound by {bound}; "
              f"{min(1.0, ups / u / rk):.1%} of what the writers could insert.")


if __name__ == "__main__":
    main()
