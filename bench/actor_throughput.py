"""Environment steps per second of ONE actor process: raw env, argmax and implicit selection.

    python -m bench.actor_throughput              # N in {16, 64, 256} x envs per actor in {1, 8, 32}
    python -m bench.actor_throughput --short      # a quick look (shorter measurement per row)
    python -m bench.actor_throughput --env=HalfCheetah-v5 --seconds=5

Times the actor's own step (`actor.actor_loop.VectorActor.step`: one batched
policy call for all environments, the vector env step, the transition batch)
without a replay server, so the rows show what acting itself costs; the
"random" rows step the same vector env with uniform random actions, the
ceiling any policy can reach. Networks are random-initialised at the size of
configs/finetune.py (quickstart): throughput does not depend on their values,
though episode lengths (and so reset costs) do a little.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from absl import app, flags

_ENV = flags.DEFINE_string("env", "Hopper-v5", "Gymnasium environment id.")
_SECONDS = flags.DEFINE_float("seconds", 2.5, "Minimum wall time per row.")
_SHORT = flags.DEFINE_bool("short", False, "0.4 s per row (a quick look; noisier).")
_THREADS = flags.DEFINE_integer("threads", 1, "torch CPU threads (an actor process uses 1).")
_NS = flags.DEFINE_list("num_candidates", ["16", "64", "256"], "N values.")
_ENVS = flags.DEFINE_list("envs_per_actor", ["1", "8", "32"], "Vector environment sizes.")


def measure(step, num_envs: int, seconds: float) -> tuple[float, float]:
    """(environment steps/s, vector steps/s) over at least `seconds` after warm-up."""
    for _ in range(2):
        step()
    n, start = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 3:
            return n * num_envs / elapsed, n / elapsed


def main(argv):
    del argv
    torch.set_num_threads(_THREADS.value)
    import gymnasium as gym

    from actor.actor_loop import VectorActor, acting_weighting
    from configs import finetune
    from networks.factory import make_policy

    seconds = 0.4 if _SHORT.value else _SECONDS.value
    cfg = finetune.get_config()
    probe = gym.make(_ENV.value)
    meta = {"obs_dim": int(np.prod(probe.observation_space.shape)), "act_dim": int(np.prod(probe.action_space.shape)),
            "env_id": _ENV.value, "env_spec_json": None, "reward_transform": {"scale": 1.0, "shift": 0.0}}
    probe.close()
    weighting = acting_weighting(cfg, cfg.online.exploration_weighting)
    d = cfg.diffusion
    print(f"# One actor process: {_ENV.value}, torch threads {_THREADS.value}, {cfg.algorithm} "
          f"(weighting {weighting}), μ LN-ResNet width {d.width} / inner {d.inner} / {d.num_blocks} blocks, "
          f"T = {d.num_steps}, critic {tuple(cfg.critic_hidden)}; {seconds:g} s per row\n", flush=True)
    print("| selection | N | envs/actor | env steps/s | ms per vector step | vs random actions |")
    print("|---|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for num_envs in (int(e) for e in _ENVS.value):
        actor = VectorActor(cfg, meta, seed=0, actor_id=0, num_envs=num_envs)
        try:
            low, high = actor.venv.action_space.low, actor.venv.action_space.high
            raw, raw_calls = measure(lambda: actor.step(rng.uniform(low, high).astype(np.float32)),
                                     num_envs, seconds)
            print(f"| random actions | - | {num_envs} | {raw:,.0f} | {1000 / raw_calls:.2f} | 1.00 |", flush=True)
            for mode in ("argmax", "implicit"):
                for n in (int(x) for x in _NS.value):
                    actor.policy = make_policy(cfg, actor.modules, weighting, mode, n)
                    rate, calls = measure(actor.step, num_envs, seconds)
                    print(f"| {mode} | {n} | {num_envs} | {rate:,.0f} | {1000 / calls:.2f} | {rate / raw:.3f} |",
                          flush=True)
        finally:
            actor.close()


if __name__ == "__main__":
    app.run(main)
