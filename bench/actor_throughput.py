"""Environment steps per second of ONE actor process: raw env, argmax and implicit selection.

    python -m bench.actor_throughput              # N in {16, 64, 256} x envs per actor in {1, 8, 32}
    python -m bench.actor_throughput --short      # a quick look (shorter measurement per row)
    python -m bench.actor_throughput --env=HalfCheetah-v5 --seconds=5
    python -m bench.actor_throughput --bf16       # also the policy pass in bfloat16, and the bf16 quality check
    python -m bench.actor_throughput --bf16 --checkpoint=runs/<run>/checkpoint.pt   # check on trained networks

Times the actor's own step (`actor.actor_loop.VectorActor.step`: one batched
policy call for all environments, the vector env step, the transition batch)
without a replay server, so the rows show what acting itself costs; the
"random" rows step the same vector env with uniform random actions, the
ceiling any policy can reach. Networks are random-initialised at the size of
configs/finetune.py (quickstart), or loaded from --checkpoint: throughput does
not depend on their values, though episode lengths (and so reset costs) do a little.

bfloat16 (`--bf16`): the actor's policy pass (μ's reverse diffusion and the
critic over the N candidates) runs under torch.autocast("cpu", bfloat16); the
actor code is unchanged (the wrapper below replaces `VectorActor.policy`).
`bf16_check_rows` measures whether that keeps the chosen actions' quality, on
the same states and the same generator state:
  * critic alone, same candidates (sampled in float32): the fraction of states
    where argmax picks the same candidate, and the mean |Q(chosen by bf16) −
    Q(chosen by fp32)| (both evaluated in float32) divided by the mean spread
    max − min of Q over the N candidates;
  * the whole pass in bf16 (sampler and critic): the mean |a_bf16 − a_fp32| of
    the chosen actions, the same index fraction, and the float32 Q of the
    chosen action relative to the spread;
  * the speed ratio fp32 time / bf16 time of the policy pass alone.
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from bench.learner_throughput import row


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


class AutocastPolicy:
    """A policy whose whole `act` (sampler + critic + weights) runs under autocast in `dtype`."""

    def __init__(self, policy, dtype=torch.bfloat16, device_type: str = "cpu"):
        self.policy, self.dtype, self.device_type = policy, dtype, device_type
        self.spec = getattr(policy, "spec", None)

    def act(self, obs, generator=None):
        with torch.autocast(self.device_type, dtype=self.dtype):
            actions, stats = self.policy.act(obs, generator)
        return actions.float(), {k: v.float() for k, v in stats.items()}


def actor_setup(env_id: str = "Hopper-v5", checkpoint: str | None = None):
    """(cfg, meta, weighting, acting params or None): the finetune config, or the checkpoint's networks."""
    import gymnasium as gym

    from networks.factory import natural_weighting, upgrade_config
    from configs import finetune

    cfg = finetune.get_config()
    params = None
    if checkpoint:
        import ml_collections

        from learner.checkpoint import load_checkpoint
        state = load_checkpoint(Path(checkpoint), map_location="cpu")
        saved = ml_collections.ConfigDict(upgrade_config(json.loads(state["config"])))
        online = cfg.online
        cfg = saved
        cfg.online = online
        params = state["learner"]["modules"]
    probe = gym.make(env_id)
    meta = {"obs_dim": int(np.prod(probe.observation_space.shape)), "act_dim": int(np.prod(probe.action_space.shape)),
            "env_id": env_id, "env_spec_json": None, "reward_transform": {"scale": 1.0, "shift": 0.0}}
    probe.close()
    return cfg, meta, natural_weighting(cfg, cfg.online.exploration_weighting), params


def load_modules(modules: dict, params) -> None:
    if params is not None:
        for name, m in modules.items():
            m.load_state_dict(params[name])


def network_text(cfg) -> str:
    d = cfg.diffusion
    return (f"μ {d.width}x{d.inner}x{d.num_blocks} T={d.num_steps}, Q,V {'x'.join(map(str, cfg.critic_hidden))}")


def throughput_rows(env_id: str = "Hopper-v5", seconds: float = 2.5, ns=(16, 64, 256), envs=(1, 8, 32),
                    modes=("argmax", "implicit"), bf16: bool = False, bf16_ns=None, checkpoint: str | None = None,
                    progress=None) -> list[dict]:
    """Env steps/s of one actor process; with bf16, a bf16 row beside each fp32 row (N in bf16_ns)."""
    from actor.actor_loop import VectorActor
    from networks.factory import make_policy

    cfg, meta, weighting, params = actor_setup(env_id, checkpoint)
    bf16_ns = tuple(ns) if bf16_ns is None else tuple(bf16_ns)
    rng = np.random.default_rng(0)
    out: list[dict] = []

    def emit(r):
        out.append(r)
        if progress:
            progress([r])

    for num_envs in envs:
        actor = VectorActor(cfg, meta, seed=0, actor_id=0, num_envs=num_envs)
        load_modules(actor.modules, params)
        try:
            conf = (f"cpu, {env_id}, 1 actor process, {num_envs} envs/actor, {cfg.algorithm} ({weighting}), "
                    f"{network_text(cfg)}, 1 torch thread")
            low, high = actor.venv.action_space.low, actor.venv.action_space.high
            raw, raw_calls = measure(lambda: actor.step(rng.uniform(low, high).astype(np.float32)),
                                     num_envs, seconds)
            emit(row("actor", conf, "random actions (raw env)", raw, "env steps/s",
                     f"{1000 / raw_calls:.2f} ms per vector step"))
            for mode in modes:
                for n in ns:
                    base = make_policy(cfg, actor.modules, weighting, mode, n)
                    actor.policy = base
                    rate, calls = measure(actor.step, num_envs, seconds)
                    emit(row("actor", conf, f"{mode}, N={n}", rate, "env steps/s",
                             f"{1000 / calls:.2f} ms per vector step; {rate / raw:.3f} of raw"))
                    if bf16 and n in bf16_ns:
                        actor.policy = AutocastPolicy(base)
                        r16, c16 = measure(actor.step, num_envs, seconds)
                        emit(row("actor", conf, f"{mode}, N={n}, bf16 policy pass", r16, "env steps/s",
                                 f"{1000 / c16:.2f} ms per vector step; x{r16 / rate:.2f} vs fp32"))
        finally:
            actor.close()
    return out


def collect_states(cfg, meta, weighting, params, num_states: int, num_envs: int = 8) -> torch.Tensor:
    """States an actor visits: the fp32 argmax policy (N = 16) rolled out in `num_envs` environments."""
    from actor.actor_loop import VectorActor
    from networks.factory import make_policy

    actor = VectorActor(cfg, meta, seed=7, actor_id=0, num_envs=num_envs)
    load_modules(actor.modules, params)
    actor.policy = make_policy(cfg, actor.modules, weighting, "argmax", 16)
    states = []
    try:
        while sum(len(s) for s in states) < num_states:
            states.append(np.asarray(actor.obs, dtype=np.float32).copy())
            actor.step()
    finally:
        actor.close()
    return torch.as_tensor(np.concatenate(states)[:num_states])


BF16_VARIANTS = {
    "critic": "critic in bf16, same fp32 candidates",
    "mu": "μ sampler in bf16, critic fp32",
    "all": "μ sampler + critic in bf16 (whole pass)",
}


def bf16_check(cfg, modules, weighting, obs: torch.Tensor, n: int, seed: int = 0, timing_batch: int = 8,
               seconds: float = 1.0) -> dict:
    """fp32 vs bf16 on the same states and generator state (see the module docstring).

    Returns {variant: {"agree", "dq_rel", "q_loss_rel", "da", "speed", "t32", "t16"}, plus "spread", "q_mean"}.
    """
    from networks import extraction
    from networks.factory import make_policy
    from networks.policy import AutocastSampler, CandidatePolicy

    policy = make_policy(cfg, modules, weighting, "argmax", n)
    s = policy.spec
    b = obs.shape[0]
    ar = torch.arange(b)

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    def gen():
        return torch.Generator().manual_seed(seed)

    def choose(cand, critic_bf16: bool):
        rows = obs.repeat_interleave(n, dim=0)
        with (bf16() if critic_bf16 else nullcontext()), torch.no_grad():
            q = modules["critic_target"](rows, cand.reshape(b * n, -1)).view(b, n)
            v = modules["value"](obs)
            extra = {}
            if "alpha" in modules:
                extra = {"alpha_s": modules["alpha"](obs), "beta_s": modules["beta"](obs)}
            logw = extraction.log_weights(s.weighting, q, v, **extra, **dict(s.settings))
            return extraction.select(logw, q, "argmax")

    with torch.no_grad():
        cand32 = modules["behavior_ema"].sample(obs, n, gen())
        with bf16():
            cand16 = modules["behavior_ema"].sample(obs, n, gen()).float()
        rows = obs.repeat_interleave(n, dim=0)
        q32 = modules["critic_target"](rows, cand32.reshape(b * n, -1)).view(b, n)
    idx32 = choose(cand32, False)
    a32 = cand32[ar, idx32]
    spread = (q32.max(1).values - q32.min(1).values).mean()
    q_best = q32[ar, idx32]
    x = obs[:timing_batch]
    t32 = _best(lambda: policy.act(x, gen()), seconds)
    fast = {"mu": CandidatePolicy(AutocastSampler(modules["behavior_ema"]), modules["critic_target"],
                                  modules["value"], s, modules.get("alpha"), modules.get("beta")),
            "all": AutocastPolicy(policy)}
    out = {"spread": float(spread), "q_mean": float(q32.mean()), "t32": t32}
    for variant, (cand, critic_bf16) in {"critic": (cand32, True), "mu": (cand16, False),
                                         "all": (cand16, True)}.items():
        idx = choose(cand, critic_bf16)
        a = cand[ar, idx]
        with torch.no_grad():
            q_a = modules["critic_target"](obs, a)          # judged by the fp32 critic
        r = {"agree": float((idx == idx32).float().mean()),
             "dq_rel": float((q_a - q_best).abs().mean() / spread),
             "q_loss_rel": float((q_best - q_a).mean() / spread),
             "da": float((a - a32).abs().mean()),
             "dcand": float((cand - cand32).abs().mean())}
        if variant in fast:
            r["t16"] = _best(lambda: fast[variant].act(x, gen()), seconds)
            r["speed"] = t32 / r["t16"]
        out[variant] = r
    return out


def _best(fn, seconds: float, windows: int = 3) -> float:
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(windows):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            el = time.perf_counter() - t0
            if el >= seconds / windows and n >= 2:
                break
        best = min(best, el / n)
    return best


def bf16_check_rows(env_id: str = "Hopper-v5", ns=(16, 64, 256), num_states: int = 256, timing_batch: int = 8,
                    checkpoint: str | None = None, seconds: float = 1.0, progress=None) -> list[dict]:
    from networks.factory import build_acting_modules

    cfg, meta, weighting, params = actor_setup(env_id, checkpoint)
    modules = build_acting_modules(cfg, meta["obs_dim"], meta["act_dim"])
    load_modules(modules, params)
    obs = collect_states(cfg, meta, weighting, params, num_states)
    nets = "random-init networks"
    if checkpoint:
        from learner.checkpoint import load_checkpoint
        nets = f"networks pretrained {int(load_checkpoint(Path(checkpoint), map_location='cpu')['step'])} steps"
    out = []
    for n in ns:
        r = bf16_check(cfg, modules, weighting, obs, n, timing_batch=timing_batch, seconds=seconds)
        conf = (f"cpu, {env_id}, {num_states} visited states, argmax ({weighting}), N={n}, {network_text(cfg)}, "
                f"{nets} (mean Q {r['q_mean']:.3g}, Q spread over the N {r['spread']:.3g})")
        new = []
        for variant, text in BF16_VARIANTS.items():
            v = r[variant]
            new.append(row("bf16", conf, f"{text}: same candidate index as fp32", v["agree"], "fraction of states",
                           f"mean |a − a_fp32| {v['da']:.3g} (chosen), {v['dcand']:.2g} (all candidates)"))
            new.append(row("bf16", conf, f"{text}: mean |Q(chosen) − Q(fp32 choice)| / Q spread", v["dq_rel"],
                           "ratio", f"Q by the fp32 critic; signed loss {v['q_loss_rel']:+.3f} spreads"))
            if "speed" in v:
                new.append(row("bf16", conf, f"{text}: policy pass speed on {timing_batch} states, fp32 time / "
                               "bf16 time", v["speed"], "x",
                               f"fp32 {r['t32'] * 1e3:.2f} ms, bf16 {v['t16'] * 1e3:.2f} ms"))
        out += new
        if progress:
            progress(new)
    return out


def main(argv):
    del argv
    from absl import flags
    from bench.learner_throughput import TABLE_HEAD, format_rows, machine_line

    f = flags.FLAGS
    torch.set_num_threads(f.threads)
    seconds = 0.4 if f.short else f.seconds
    show = lambda rs: print(format_rows(rs), flush=True)   # noqa: E731
    print(machine_line())
    print(f"{seconds:g} s per row; other processes share the cores, so figures are noisy.\n")
    print(TABLE_HEAD)
    throughput_rows(f.env, seconds, [int(x) for x in f.num_candidates], [int(x) for x in f.envs_per_actor],
                    bf16=f.bf16, checkpoint=f.checkpoint, progress=show)
    if f.bf16:
        bf16_check_rows(f.env, [int(x) for x in f.num_candidates], checkpoint=f.checkpoint,
                        seconds=0.5 if f.short else 1.5, progress=show)
    print("\n" + machine_line())


def define_flags():
    from absl import flags
    flags.DEFINE_string("env", "Hopper-v5", "Gymnasium environment id.")
    flags.DEFINE_float("seconds", 2.5, "Minimum wall time per row.")
    flags.DEFINE_bool("short", False, "0.4 s per row (a quick look; noisier).")
    flags.DEFINE_integer("threads", 1, "torch CPU threads (an actor process uses 1).")
    flags.DEFINE_list("num_candidates", ["16", "64", "256"], "N values.")
    flags.DEFINE_list("envs_per_actor", ["1", "8", "32"], "Vector environment sizes.")
    flags.DEFINE_bool("bf16", False, "Also run the policy pass in bfloat16 (autocast) and check its quality.")
    flags.DEFINE_string("checkpoint", None, "Pretraining / learner checkpoint whose acting networks to use "
                        "(its config's sizes); default: random-init networks of configs/finetune.py.")


if __name__ == "__main__":
    from absl import app
    define_flags()
    app.run(main)
