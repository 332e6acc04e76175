"""Learner updates per second: critic+value step, μ step, multiplier step, whole step.

    python -m bench.learner_throughput                 # paper sizes and quickstart sizes, CPU and CUDA if present
    python -m bench.learner_throughput --seconds=2     # shorter measurement per row

Each row times one kind of update on random data of the right shapes (the
throughput does not depend on the values), after warm-up, for at least
--seconds of wall time. Paper sizes: AlignIQL (batch 512 for both) and IDQL
(critic 256, actor 1024), LN-ResNet width 256 / inner 1024 / 3 blocks, T = 5.
"""
from __future__ import annotations

import time

import torch
from absl import app, flags

from configs import base, quickstart
from learner.agent import Learner

_THREADS = flags.DEFINE_integer("threads", 1, "torch CPU threads (0 = torch default, one per core).")
_SECONDS = flags.DEFINE_float("seconds", 4.0, "Minimum wall time per measurement.")
_OBS, _ACT = flags.DEFINE_integer("obs_dim", 17, "Observation size (HalfCheetah: 17)."), \
    flags.DEFINE_integer("act_dim", 6, "Action size (HalfCheetah: 6).")


def make_batch(n, obs_dim, act_dim, device):
    return {"obs": torch.randn(n, obs_dim, device=device), "act": torch.rand(n, act_dim, device=device) * 2 - 1,
            "reward": torch.randn(n, device=device), "next_obs": torch.randn(n, obs_dim, device=device),
            "mask": torch.ones(n, device=device)}


def rate(fn, device, seconds: float) -> float:
    for _ in range(3):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n % 5 == 0:
            if device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return n / elapsed


def bench_config(label, cfg, device, seconds, obs_dim, act_dim):
    learner = Learner(cfg, obs_dim, act_dim, device)
    learner.train(True)
    batch = make_batch(max(cfg.critic_batch_size, cfg.actor_batch_size), obs_dim, act_dim, device)
    cb, ab = cfg.critic_batch_size, cfg.actor_batch_size
    c = {k: v[:cb] for k, v in batch.items()}
    rows = [("critic+value", rate(lambda: learner.update_value_and_critic(
        c["obs"], c["act"], c["reward"], c["next_obs"], c["mask"]), device, seconds))]
    if cfg.algorithm == "aligniql_hard":
        rows.append(("multipliers", rate(lambda: learner.update_multipliers(c["obs"], c["act"]), device, seconds)))
    rows.append(("mu (diffusion)", rate(lambda: learner.update_behavior(batch["obs"][:ab], batch["act"][:ab]),
                                        device, seconds)))
    rows.append(("whole step", rate(lambda: learner.update(batch), device, seconds)))
    d = cfg.diffusion
    for what, r in rows:
        print(f"| {device.type:4} | {label:28} | critic {cb:4} / actor {ab:4} | mu {d.width}x{d.inner}x{d.num_blocks} "
              f"T={d.num_steps} | {what:14} | {r:9.1f} updates/s |", flush=True)


def main(argv):
    del argv
    if _THREADS.value:
        torch.set_num_threads(_THREADS.value)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print("| dev  | configuration                | batch                      | network             "
          "| update         | throughput          |")
    for device in devices:
        paper = base.get_config()                      # AlignIQL: 512 / 512
        paper.algorithm = "aligniql_hard"
        bench_config("AlignIQL-hard, paper size", paper, device, _SECONDS.value, _OBS.value, _ACT.value)
        idql = base.get_config()
        idql.algorithm, idql.critic_batch_size, idql.actor_batch_size = "idql", 256, 1024
        bench_config("IDQL, paper size", idql, device, _SECONDS.value, _OBS.value, _ACT.value)
        bench_config("AlignIQL, quickstart size", quickstart.get_config(), device, _SECONDS.value,
                     _OBS.value, _ACT.value)


if __name__ == "__main__":
    app.run(main)
