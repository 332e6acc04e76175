"""Learner updates per second: critic+value step, μ step, multiplier step, whole step.

    python -m bench.learner_throughput                 # paper sizes and quickstart sizes, CPU and CUDA if present
    python -m bench.learner_throughput --seconds=2     # shorter measurement per row
    python -m bench.learner_throughput --nofused       # only the optimisers as learner/agent.py builds them
    python -m bench.learner_throughput --compile       # also torch.compile'd updates (about a minute of compile each)

Each row times one kind of update on random data of the right shapes (the
throughput does not depend on the values), after warm-up. Paper sizes: AlignIQL
(batch 512 for both) and IDQL (critic 256, actor 1024), LN-ResNet width 256 /
inner 1024 / 3 blocks, T = 5; quickstart sizes from configs/quickstart.py.

Beside each update: the same update's matrix products alone (bench.matmul_bound:
every forward and backward GEMM of that update, same shapes, back to back), the
ratio GEMM time / step time, and the same update with fused Adam (as applied) against torch's default Adam
(fused Adam / AdamW, docs/performance.md), measured in the same run and
interleaved with the default so that both see the same machine load. Figures
are the best of a few windows (the machine is shared with other work).
"""
from __future__ import annotations

import inspect
import os
import time

import torch

from configs import base, quickstart
from learner.agent import Learner


def cpu_model() -> str:
    """The CPU's model name (the fastest CPU GEMM route depends on the vendor: bench.cpu_gemm)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    except OSError:
        return "unknown CPU"


def machine_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPU cores "
            f"({cpu_model()}), "
            f"CUDA: {cuda}, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)")


def row(bench: str, config: str, measure: str, value: float, unit: str, note: str = "") -> dict:
    """One line of bench.all's table."""
    return {"bench": bench, "config": config, "measure": measure, "value": float(value), "unit": unit,
            "note": note}


def make_batch(n, obs_dim, act_dim, device):
    return {"obs": torch.randn(n, obs_dim, device=device), "act": torch.rand(n, act_dim, device=device) * 2 - 1,
            "reward": torch.randn(n, device=device), "next_obs": torch.randn(n, obs_dim, device=device),
            "mask": torch.ones(n, device=device)}


def rate(fn, device, seconds: float) -> float:
    """Calls per second: the best of 3 windows after warm-up (kept for older callers)."""
    from bench.matmul_bound import seconds_per_call
    return 1.0 / seconds_per_call(fn, device, seconds)


def bench_configs(device=None) -> list[tuple[str, object]]:
    """(label, config) of the three sizes the README reports."""
    paper = base.get_config()                      # AlignIQL: 512 / 512
    paper.algorithm = "aligniql_hard"
    idql = base.get_config()
    idql.algorithm, idql.critic_batch_size, idql.actor_batch_size = "idql", 256, 1024
    return [("AlignIQL-hard, paper size", paper), ("IDQL, paper size", idql),
            ("AlignIQL, quickstart size", quickstart.get_config())]


CONFIG_KEYS = {"aligniql_hard_paper": 0, "idql_paper": 1, "quickstart": 2}


def describe(cfg, device, obs_dim: int, act_dim: int) -> str:
    d = cfg.diffusion
    h = "x".join(str(x) for x in cfg.critic_hidden)
    return (f"{torch.device(device).type}, {cfg.algorithm}, batch {cfg.critic_batch_size}/{cfg.actor_batch_size} "
            f"(critic/actor), Q,V {h}, μ {d.width}x{d.inner}x{d.num_blocks} T={d.num_steps}, "
            f"obs {obs_dim}/act {act_dim}")


def set_fused_optimizers(learner: Learner, fused: bool) -> Learner:
    """Every Adam / AdamW rebuilt fused (as learner/agent.py builds them) or with torch's default
    unfused implementation (the code before that change), so both are timed in one run.

    Same hyperparameters and state (state_dict round trip); the LR schedulers are pointed
    at the new optimisers.
    """
    def rebuild(opt):
        cls = type(opt)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "params", "foreach", "fused"}
        group = {k: v for k, v in opt.param_groups[0].items() if k in accepted}
        new = cls([p for g in opt.param_groups for p in g["params"]], **group, fused=fused or None)
        new.load_state_dict(opt.state_dict())
        for g in new.param_groups:     # load_state_dict brought back the old group's flags
            g["fused"], g["foreach"] = (fused or None), None
        return new

    for name, opt in list(learner.optimizers.items()):
        new = rebuild(opt)
        learner.optimizers[name] = new
        attr = {"critic": "critic_opt", "value": "value_opt", "behavior": "behavior_opt", "actor": "actor_opt",
                "alpha": "alpha_opt", "beta": "beta_opt"}[name]
        setattr(learner, attr, new)
        if name in learner.schedulers:   # same schedule, now stepping the new optimiser
            old = learner.schedulers[name]
            sched = type(old)(new, old.lr_lambdas[0]) if hasattr(old, "lr_lambdas") else old
            sched.load_state_dict(old.state_dict())
            learner.schedulers[name] = sched
    return learner


def build(cfg, device, obs_dim: int, act_dim: int, fused: bool = False, seed: int = 0):
    """A Learner in training mode and one batch of random data; same seed → same networks."""
    torch.manual_seed(seed)
    learner = Learner(cfg, obs_dim, act_dim, torch.device(device))
    learner.train(True)
    set_fused_optimizers(learner, fused)
    n = max(cfg.critic_batch_size, cfg.actor_batch_size)
    batch = make_batch(n, obs_dim, act_dim, torch.device(device))
    return learner, batch


def update_fns(learner: Learner, cfg, batch, compile_fn=None) -> dict:
    """{update name: zero-argument callable doing that update once on `batch`}."""
    wrap = compile_fn or (lambda f: f)
    cb, ab = cfg.critic_batch_size, cfg.actor_batch_size
    c = {k: v[:cb] for k, v in batch.items()}
    # the device steps (Learner.update = these, then `advance`: schedules and counters on the host)
    vc, beh, mul, whole = (wrap(learner.value_and_critic_step), wrap(learner.behavior_step),
                           wrap(learner.multiplier_step), wrap(learner.update))
    fns = {"critic+value": lambda: vc(c["obs"], c["act"], c["reward"], c["next_obs"], c["mask"])}
    if cfg.algorithm != "iql":
        fns["mu (diffusion)"] = lambda: beh(batch["obs"][:ab], batch["act"][:ab])
    if cfg.algorithm == "aligniql_hard":
        fns["multipliers"] = lambda: mul(c["obs"], c["act"])
    fns["whole step"] = lambda: whole(batch)
    return fns


def fused_numerics(cfg, device, obs_dim: int, act_dim: int, steps: int = 10) -> float:
    """max |θ_fused − θ_default| / max |θ| over every parameter after `steps` whole steps from the same start."""
    a, batch = build(cfg, device, obs_dim, act_dim, fused=False)
    b, _ = build(cfg, device, obs_dim, act_dim, fused=True)
    for _ in range(steps):
        torch.manual_seed(123)     # same dropout masks and diffusion noise in both
        a.update(batch)
        torch.manual_seed(123)
        b.update(batch)
    diff = scale = 0.0
    with torch.no_grad():
        for name, m in a.modules.items():
            for (_, p), (_, q) in zip(m.named_parameters(), b.modules[name].named_parameters()):
                diff = max(diff, float((p - q).abs().max()))
                scale = max(scale, float(p.abs().max()))
    return diff / scale


def rows(configs=None, devices=None, seconds: float = 2.0, obs_dim: int = 17, act_dim: int = 6,
         fused: bool = True, compile: bool = False, numerics: bool = True, reps: int = 2,
         progress=None) -> list[dict]:
    """Learner rows of bench.all's table (see the module docstring)."""
    from bench.matmul_bound import gemm_runner, seconds_per_call, step_gemms

    devices = devices or ([torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else []))
    out: list[dict] = []
    for device in devices:
        device = torch.device(device)
        for label, cfg in (configs or bench_configs(device)):
            conf = describe(cfg, device, obs_dim, act_dim)
            learner, batch = build(cfg, device, obs_dim, act_dim, fused=False)
            variants = {"default Adam": update_fns(learner, cfg, batch)}
            if fused:
                learner, batch = build(cfg, device, obs_dim, act_dim, fused=True)
                variants["fused Adam"] = update_fns(learner, cfg, batch)
            compiled, compile_s = {}, {}
            if compile:
                learner, batch = build(cfg, device, obs_dim, act_dim, fused=fused)
                fns = update_fns(learner, cfg, batch, compile_fn=torch.compile)
                for what, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    fn()
                    compile_s[what] = time.perf_counter() - t0
                compiled = fns
                variants["torch.compile" + (" + fused Adam" if fused else "")] = compiled
            gemms = step_gemms(cfg, obs_dim, act_dim)
            for what in variants["default Adam"]:
                runner = gemm_runner(gemms[what], device)
                best = {k: float("inf") for k in [*variants, "gemm"]}
                for _ in range(reps):   # interleaved: every variant sees the same load
                    best["gemm"] = min(best["gemm"], seconds_per_call(runner, device, seconds / reps))
                    for k, fns in variants.items():
                        best[k] = min(best[k], seconds_per_call(fns[what], device, seconds / reps))
                gflop = sum(g.flops for g in gemms[what]) / 1e9
                t_gemm = best["gemm"]
                out.append(row("learner", conf, f"{what}: its {len(gemms[what])} GEMMs alone "
                               f"({gflop:.3f} GFLOP)", 1 / t_gemm, "passes/s",
                               f"{gflop / t_gemm:.0f} GFLOP/s"))
                for k in variants:
                    note = f"GEMM time / step time {t_gemm / best[k]:.2f}"
                    if t_gemm > 1.05 * best[k]:
                        note += " (above 1: the GEMM windows were disturbed by other load; re-run)"
                    if k != "default Adam":
                        note += f"; x{best['default Adam'] / best[k]:.2f} vs default Adam"
                    if k.startswith("torch.compile"):
                        note += f"; compile {compile_s[what]:.0f} s"
                    out.append(row("learner", conf, f"{what}, {k}", 1 / best[k], "updates/s", note))
                if progress:
                    progress(out[-len(variants) - 1:])
            if fused and numerics:
                r = row("learner", conf, "fused vs default Adam: max |Δθ| / max |θ| after 10 whole steps",
                        fused_numerics(cfg, device, obs_dim, act_dim), "relative",
                        "same maths, float rounding only")
                out.append(r)
                if progress:
                    progress([r])
    return out


def format_rows(rows_: list[dict]) -> str:
    lines = []
    for r in rows_:
        v = r["value"]
        vs = f"{v:.2e}" if (v != 0 and (abs(v) < 0.01 or abs(v) >= 1e6)) else (f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}")
        lines.append(f"| {r['bench']} | {r['config']} | {r['measure']} | {vs} | {r['unit']} | {r['note']} |")
    return "\n".join(lines)


TABLE_HEAD = "| bench | configuration | measure | value | unit | note |\n|---|---|---|---:|---|---|"


def main(argv):
    del argv
    from absl import flags
    f = flags.FLAGS
    torch.set_num_threads(f.threads if f.threads > 0 else (os.cpu_count() or 1))
    print(machine_line())
    print("Best of a few windows per figure; other processes share the cores, so figures are noisy.\n")
    print(TABLE_HEAD, flush=True)
    configs = [bench_configs()[CONFIG_KEYS[k]] for k in f.configs]
    rows(configs=configs, seconds=f.seconds, obs_dim=f.obs_dim, act_dim=f.act_dim, fused=f.fused,
         compile=f.compile, progress=lambda rs: print(format_rows(rs), flush=True))
    print("\n" + machine_line())


def define_flags():
    from absl import flags
    flags.DEFINE_integer("threads", 1, "torch CPU threads (0 = one per core).")
    flags.DEFINE_float("seconds", 4.0, "Measurement time per figure (split over a few windows).")
    flags.DEFINE_integer("obs_dim", 17, "Observation size (HalfCheetah: 17).")
    flags.DEFINE_integer("act_dim", 6, "Action size (HalfCheetah: 6).")
    flags.DEFINE_bool("fused", True, "Also time the updates with fused Adam / AdamW (as learner/agent.py builds them).")
    flags.DEFINE_list("configs", list(CONFIG_KEYS), f"Which sizes: {', '.join(CONFIG_KEYS)}.")
    flags.DEFINE_bool("compile", False, "Also time torch.compile'd updates (compile time reported apart).")


if __name__ == "__main__":
    from absl import app
    define_flags()
    app.run(main)
