"""Does the learner wait on sampling? Its update loop's waits for online batches, per replay layout, in one run.

    python -m bench.learner_feed                          # configs/finetune.py sizes, 4 s per figure
    python -m bench.learner_feed --seconds=2 --batch_size=256

A real Reverb server holds `--fill` random transitions, its rate limiter made
non-binding, so every wait measured here is the sampling path and none is the
update-to-data ratio. Three layouts, side by side:

  before   server in another process, Reverb's default sampling streams, batch fetched and
           converted inside the update loop (the learner code before learner/online_feed.py)
  remote   server in another process (online.replay_in_learner=False), `sampler_workers`
           streams, batches fetched ahead by learner/online_feed.py's thread
  hosted   the learner process hosts the server (the default): Reverb reads the table
           directly instead of over gRPC; same streams and feed thread

Per layout:
  * feed capacity: online batches/s handed to a loop that does nothing with them, the update
    rate above which a faster (GPU) learner would start waiting;
  * the real learner: `OnlineLearner.train_step` of the config (V+Q, μ steps, multipliers) on
    mixed online + offline batches for `--seconds`: updates/s and the fraction of the loop's time
    spent waiting for an online batch.

Transitions are tagged and every sampled row's tag checked, as in a run (replay/auth.py).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OBS_DIM, ACT_DIM = 17, 6
LAYOUTS = ("before", "remote", "hosted")
BENCH_KEY = bytes(range(32))   # a fixed key: only its cost matters here, not its secrecy


def _spec(fill: int):
    from replay.server import ReplaySpec
    return ReplaySpec(OBS_DIM, ACT_DIM, max_size=fill, samples_per_insert=1.0, min_size_to_sample=1,
                      error_buffer=1e12)      # the limiter never binds: only sampling is measured


def _serve(fill: int, q, stop) -> None:
    """The replay server in a process of its own."""
    sys.path.insert(0, str(ROOT))
    from replay.server import start_server
    server, address = start_server(_spec(fill))
    q.put(address)
    stop.wait()
    server.stop()


def _fill(address: str, n: int) -> None:
    from replay.writer import TransitionWriter
    rng = np.random.default_rng(0)
    w = TransitionWriter(address, flush_every=16, key=BENCH_KEY)
    k = 16
    for _ in range(n // k):
        o = rng.standard_normal((k, OBS_DIM)).astype(np.float32)
        a = rng.uniform(-1, 1, (k, ACT_DIM)).astype(np.float32)
        w.add_batch(o, a, rng.standard_normal(k).astype(np.float32), o, np.ones(k, np.float32))
    w.close()


class InLoopFeed:
    """The code before learner/online_feed.py: fetch and convert inside the update loop."""

    def __init__(self, make_sampler, device):
        self._sampler, self._device = make_sampler(), device

    def get(self, timeout: float = 1.0):
        b = next(self._sampler)
        return {k: torch.as_tensor(np.array(v), device=self._device) for k, v in b.items()}

    def close(self) -> None:
        pass


def _make_feed(layout: str, address: str, batch: int, workers: int, device):
    from learner.online_feed import OnlineFeed
    from replay.sampler import OnlineSampler

    if layout == "before":
        return InLoopFeed(lambda: OnlineSampler(address, batch, rate_limiter_timeout_ms=1000, key=BENCH_KEY),
                          device)
    return OnlineFeed(lambda: OnlineSampler(address, batch, num_workers_per_iterator=workers,
                                            rate_limiter_timeout_ms=1000, key=BENCH_KEY), device, depth=2)


def _feed_capacity(feed, seconds: float) -> float:
    for _ in range(10):
        feed.get()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if feed.get() is not None:
            n += 1
    return n / (time.perf_counter() - t0)


def _learner_loop(loop, feed, seconds: float, device) -> tuple[float, float]:
    """(updates/s, fraction of the loop's time waiting for an online batch)."""
    for _ in range(5):
        loop.train_step(loop._mixed(feed.get()))
    if device.type == "cuda":
        torch.cuda.synchronize()
    n, waited, t0 = 0, 0.0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        tw = time.perf_counter()
        b = feed.get()
        waited += time.perf_counter() - tw
        if b is None:
            continue
        loop.train_step(loop._mixed(b))
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    return n / total, waited / total


def _build_learner(cfg, address: str, device, workdir: Path):
    from learner.agent import Learner
    from learner.offline_buffer import OfflineBuffer
    from learner.online import OnlineLearner

    rng = np.random.default_rng(1)
    n = 20_000
    obs = rng.standard_normal((n, OBS_DIM)).astype(np.float32)
    buf = OfflineBuffer(obs, rng.uniform(-1, 1, (n, ACT_DIM)), rng.standard_normal(n), obs,
                        np.zeros(n, np.float32), device)
    learner = Learner(cfg, OBS_DIM, ACT_DIM, device)
    return OnlineLearner(cfg, learner, buf, address, workdir, key=BENCH_KEY)


def rows(seconds: float = 4.0, fill: int = 20_000, batch_size: int | None = None, workers: int | None = None,
         layouts=LAYOUTS, device=None, cfg=None, progress=None) -> list[dict]:
    from bench.learner_throughput import row
    from configs import finetune
    from launch.pretrain import pick_device
    from replay.server import start_server

    cfg = cfg or finetune.get_config()
    if batch_size:
        cfg.online.online_batch_size = int(batch_size)
    if workers:
        cfg.online.sampler_workers = int(workers)
    b, w = int(cfg.online.online_batch_size), int(cfg.online.sampler_workers)
    device = torch.device(device) if device else pick_device("auto")
    ctx = mp.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(fill, q, stop), daemon=True)
    proc.start()
    remote = q.get(timeout=300)
    local_server, local = start_server(_spec(fill))
    out: list[dict] = []
    try:
        _fill(remote, fill)
        _fill(local, fill)
        with tempfile.TemporaryDirectory(prefix="bench_feed_") as tmp:
            loop = _build_learner(cfg, local, device, Path(tmp))
            size = (f"{device.type}, {cfg.algorithm}, online batch {b} + offline {cfg.online.offline_batch_size}, "
                    f"Q,V {'x'.join(map(str, cfg.critic_hidden))}, μ steps/update "
                    f"{cfg.online.mu_steps_per_update if cfg.online.finetune_mu else 0}")
            for layout in layouts:
                address = local if layout == "hosted" else remote
                streams = "default streams" if layout == "before" else f"{w} streams + feed thread"
                where = "server in the learner's process" if layout == "hosted" else "server in another process"
                conf = f"{layout}: {where}, {streams}"
                feed = _make_feed(layout, address, b, w, device)
                try:
                    cap = _feed_capacity(feed, seconds)
                finally:
                    feed.close()
                feed = _make_feed(layout, address, b, w, device)
                try:
                    ups, wait = _learner_loop(loop, feed, seconds, device)
                finally:
                    feed.close()
                new = [row("feed", f"{conf}, batch {b}", "feed capacity", cap, "batches/s",
                           f"{cap * b:,.0f} transitions/s"),
                       row("feed", f"{conf}; learner {size}", "learner updates", ups, "updates/s"),
                       row("feed", f"{conf}; learner {size}", "learner time waiting for a batch", wait,
                           "fraction")]
                out += new
                if progress:
                    progress(new)
    finally:
        local_server.stop()
        stop.set()
        proc.join(timeout=30)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="per figure")
    ap.add_argument("--fill", type=int, default=20_000, help="transitions in the table")
    ap.add_argument("--batch_size", type=int, default=None, help="online batch (default: configs/finetune.py)")
    ap.add_argument("--workers", type=int, default=None, help="sampling streams (default: configs/finetune.py)")
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--device", default=None, help="cpu / cuda (default: CUDA when present)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from bench.learner_throughput import TABLE_HEAD, format_rows, machine_line

    print(f"# bench.learner_feed: {machine_line()}", flush=True)
    table = rows(args.seconds, args.fill, args.batch_size, args.workers,
                 tuple(x for x in args.layouts.split(",") if x), args.device,
                 progress=lambda r: print(format_rows(r), file=sys.stderr, flush=True))
    print(TABLE_HEAD)
    print(format_rows(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
