"""Does this GPU run the learner right, and how fast?  `python -m bench.gpu_check` (under 5 minutes).

Prints PASS / FAIL / SKIP per check, then a table of learner steps/s per path (eager, compiled,
CUDA graph, graph + compiled) at the papers' sizes, launches per step, and the projected minutes for
the papers' full pretraining (1.5M critic + 3M μ steps: 1.5M steps of both, then 1.5M μ-only steps).
Exit status 1 when a check fails. Without CUDA the checks that need it say SKIP and the table is the
CPU's (what `tests/test_fast_path.py` can check on a CPU it checks there).

Checks:
  cpu_vs_cuda      the same seed and the same random draws (batches, diffusion timesteps and noise
                   drawn on the CPU and given to both) give the same losses and parameters, 5 steps;
                   TF32 off for this check
  checkpoint       a checkpoint written on CUDA resumes on CUDA (RNG states included) and loads on a CPU
  cuda_to_actor    the acting weights a CUDA learner publishes rebuild a CPU policy whose Q and V
                   agree with the learner's, and which acts
  graph_vs_eager   20 CUDA-graph steps equal 20 eager steps from the same seed (same random stream)

    python -m bench.gpu_check                    # everything
    python -m bench.gpu_check --sizes=aligniql --paths=eager,graph --seconds=3
    python -m bench.gpu_check --quick            # tiny networks, a few steps: the script itself works
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.learner_throughput import machine_line
from configs import base, idql_locomotion
from learner.agent import Learner
from learner.fast_path import LEARNER_STEPS, PretrainStep
from learner.nonfinite import NonFiniteWatch
from learner.offline_buffer import OfflineBuffer

OBS, ACT = 11, 3                     # Hopper's shapes
PAPER_CRITIC_STEPS, PAPER_ACTOR_STEPS = 1_500_000, 3_000_000


def sizes(quick: bool) -> dict[str, object]:
    """label -> config: the papers' networks and batches (or tiny ones with --quick)."""
    aligniql = base.get_config()                      # AlignIQL: batch 512 / 512, LN-ResNet 256/1024 x3
    hard = base.get_config()
    hard.algorithm = "aligniql_hard"
    idql = idql_locomotion.get_config()               # IDQL: critic 256, actor 1024
    out = {"aligniql": aligniql, "idql": idql, "aligniql_hard": hard}
    for cfg in out.values():
        cfg.num_critic_steps, cfg.num_actor_steps = PAPER_CRITIC_STEPS, PAPER_ACTOR_STEPS
        if quick:
            cfg.critic_hidden, cfg.multipliers.hidden = (32, 32), (32, 32)
            cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks = 32, 32, 1
            cfg.critic_batch_size = cfg.actor_batch_size = 64
    return out


def random_buffer(n: int, device, seed: int = 0) -> OfflineBuffer:
    g = np.random.default_rng(seed)
    obs = g.standard_normal((n, OBS)).astype(np.float32)
    return OfflineBuffer(obs, g.uniform(-1, 1, (n, ACT)), g.standard_normal(n), obs + 0.01,
                         (g.random(n) < 0.01).astype(np.float32), device)


def max_param_diff(a: Learner, b: Learner) -> float:
    worst = 0.0
    for name, m in a.modules.items():
        for (k, x), y in zip(m.state_dict().items(), b.modules[name].state_dict().values()):
            if x.is_floating_point():
                worst = max(worst, float((x.cpu() - y.cpu()).abs().max() / (x.cpu().abs().max() + 1e-6)))
    return worst


# ---------------------------------------------------------------------------------------------- checks
def check_cpu_vs_cuda(cfg) -> tuple[bool, str]:
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        torch.manual_seed(0)
        cpu = Learner(cfg, OBS, ACT, torch.device("cpu"))
        gpu = Learner(cfg, OBS, ACT, torch.device("cuda"))
        gpu.load_state_dict(cpu.state_dict())
        for m in (*cpu.modules.values(), *gpu.modules.values()):
            m.eval()                                   # dropout off: its masks are device draws
        g = torch.Generator().manual_seed(1)
        worst_loss = 0.0
        for _ in range(5):
            b = {"obs": torch.randn(cfg.actor_batch_size, OBS, generator=g),
                 "act": torch.rand(cfg.actor_batch_size, ACT, generator=g) * 2 - 1,
                 "reward": torch.randn(cfg.actor_batch_size, generator=g),
                 "next_obs": torch.randn(cfg.actor_batch_size, OBS, generator=g),
                 "mask": torch.ones(cfg.actor_batch_size)}
            t = torch.randint(0, cfg.diffusion.num_steps, (cfg.actor_batch_size,), generator=g)
            noise = torch.randn(cfg.actor_batch_size, ACT, generator=g)
            losses = []
            for learner in (cpu, gpu):
                d = {k: v.to(learner.device) for k, v in b.items()}
                m = learner.behavior_step(d["obs"], d["act"], t.to(learner.device), noise.to(learner.device))
                cb = cfg.critic_batch_size
                m |= learner.value_and_critic_step(*(d[k][:cb] for k in ("obs", "act", "reward", "next_obs", "mask")))
                losses.append({k: float(v) for k, v in m.items()})
            worst_loss = max(worst_loss, max(abs(losses[0][k] - losses[1][k]) / (abs(losses[0][k]) + 1e-6)
                                             for k in losses[0]))
        worst = max_param_diff(cpu, gpu)
        return worst_loss < 1e-3 and worst < 1e-3, f"max relative difference: losses {worst_loss:.2e}, parameters {worst:.2e}"
    finally:
        torch.set_float32_matmul_precision(precision)


def check_checkpoint(cfg) -> tuple[bool, str]:
    from learner.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint

    torch.manual_seed(0)
    cuda = torch.device("cuda")
    learner = Learner(cfg, OBS, ACT, cuda)
    step = PretrainStep(learner, random_buffer(4096, cuda), cfg.actor_batch_size, NonFiniteWatch(cuda))
    for _ in range(3):
        step(True, True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pt"
        save_checkpoint(path, {"learner": learner.state_dict(), "rng": rng_state()})
        expected = step(True, True)                    # the step after the checkpoint ...
        expected = {k: float(v) for k, v in expected.items()}
        state = load_checkpoint(path, map_location=cuda)
        resumed = Learner(cfg, OBS, ACT, cuda)
        resumed.load_state_dict(state["learner"])
        restore_rng_state(state["rng"])
        again = PretrainStep(resumed, random_buffer(4096, cuda), cfg.actor_batch_size, NonFiniteWatch(cuda))(True, True)
        same = all(math.isclose(float(again[k]), expected[k], rel_tol=1e-5, abs_tol=1e-6) for k in expected)
        on_cpu = Learner(cfg, OBS, ACT, torch.device("cpu"))
        on_cpu.load_state_dict(load_checkpoint(path, map_location="cpu")["learner"])
        cpu_metrics = PretrainStep(on_cpu, random_buffer(4096, torch.device("cpu")), cfg.actor_batch_size,
                                   NonFiniteWatch(torch.device("cpu")))(True, True)
        finite = all(math.isfinite(float(v)) for v in cpu_metrics.values())
    return same and finite, (f"resumed step {'equals' if same else 'differs from'} the uninterrupted one; "
                             f"loaded and stepped on the CPU: {'finite' if finite else 'NOT finite'}")


def check_cuda_to_actor(cfg) -> tuple[bool, str]:
    from networks.factory import build_acting_modules, load_acting_params, make_policy, natural_weighting

    torch.manual_seed(0)
    learner = Learner(cfg, OBS, ACT, torch.device("cuda"))
    modules = build_acting_modules(cfg, OBS, ACT)
    load_acting_params(modules, learner.acting_params())
    obs, act = torch.randn(64, OBS), torch.rand(64, ACT) * 2 - 1
    with torch.no_grad():
        q_gpu = learner.critic_target(obs.cuda(), act.cuda()).cpu()
        q_cpu = modules["critic_target"](obs, act)
        v_gpu, v_cpu = learner.value(obs.cuda()).cpu(), modules["value"](obs)
    policy = make_policy(cfg, modules, natural_weighting(cfg, ""), "implicit", 16)
    action = policy.act(obs[:4], generator=torch.Generator().manual_seed(0))
    action = action[0] if isinstance(action, tuple) else action
    ok = torch.allclose(q_gpu, q_cpu, rtol=1e-3, atol=1e-3) and torch.allclose(v_gpu, v_cpu, rtol=1e-3, atol=1e-3)
    ok = ok and bool(torch.isfinite(torch.as_tensor(action)).all())
    return ok, f"max |ΔQ| {float((q_gpu - q_cpu).abs().max()):.2e}, |ΔV| {float((v_gpu - v_cpu).abs().max()):.2e}"


def check_graph_vs_eager(cfg) -> tuple[bool, str]:
    cuda = torch.device("cuda")
    results = []
    for how in ("eager", "graph"):
        torch.manual_seed(0)
        learner = Learner(cfg, OBS, ACT, cuda)
        step = PretrainStep(learner, random_buffer(4096, cuda), cfg.actor_batch_size, NonFiniteWatch(cuda), how)
        losses = [{k: float(v) for k, v in step(True, True).items()} for _ in range(20)]
        results.append((learner, losses))
    (eager, l_eager), (graph, l_graph) = results
    worst_loss = max(abs(a[k] - b[k]) / (abs(a[k]) + 1e-6) for a, b in zip(l_eager, l_graph) for k in a)
    worst = max_param_diff(eager, graph)
    return worst_loss < 1e-4 and worst < 1e-4, f"max relative difference: losses {worst_loss:.2e}, parameters {worst:.2e}"


# ---------------------------------------------------------------------------------------------- speed
def launches_per_step(step, device) -> str:
    """Kernels launched by one step on CUDA (torch.profiler), or aten operators run on a CPU."""
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step(True, True)
            torch.cuda.synchronize()
        return f"{sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)} kernels"
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))
    with Count():
        step(True, True)
    return f"{Count.n} aten ops"


def steps_per_second(step, device, train_actor: bool, train_critic: bool, seconds: float) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    for _ in range(5):                                 # warm-up (and capture, for the graph path)
        step(train_actor, train_critic)
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            step(train_actor, train_critic)
        n += 10
        sync()
    return n / (time.perf_counter() - t0)


def speed_table(configs: dict, paths: list[str], device, seconds: float) -> list[str]:
    lines = [f"{'size':<14} {'path':<14} {'both steps/s':>13} {'μ-only steps/s':>15} {'launches/step':>16} "
             f"{'paper pretraining':>18}"]
    for label, cfg in configs.items():
        for how in paths:
            if "graph" in how and device.type != "cuda":
                lines.append(f"{label:<14} {how:<14} {'SKIP (needs CUDA)':>13}")
                continue
            torch._dynamo.reset()
            torch.manual_seed(0)
            learner = Learner(copy.deepcopy(cfg), OBS, ACT, device)
            t0 = time.perf_counter()
            step = PretrainStep(learner, random_buffer(100_000, device), max(cfg.critic_batch_size, cfg.actor_batch_size),
                                NonFiniteWatch(device), how)
            both = steps_per_second(step, device, True, True, seconds)
            actor_only = steps_per_second(step, device, True, False, seconds)
            ready = time.perf_counter() - t0
            # on a CPU only the eager operators are counted (a dispatch mode stops compiled code)
            launches = launches_per_step(step, device) if device.type == "cuda" or how == "eager" else "n/a"
            minutes = (PAPER_CRITIC_STEPS / both + (PAPER_ACTOR_STEPS - PAPER_CRITIC_STEPS) / actor_only) / 60
            lines.append(f"{label:<14} {how:<14} {both:>13.0f} {actor_only:>15.0f} {launches:>16} "
                         f"{minutes:>14.1f} min" + (f"   (compile/capture + timing {ready:.0f} s)" if how != "eager" else ""))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="aligniql,idql,aligniql_hard")
    ap.add_argument("--paths", default=",".join(LEARNER_STEPS), help="of " + ", ".join(LEARNER_STEPS))
    ap.add_argument("--compile_sizes", default="aligniql", help="sizes that also time the compiled paths "
                    "(compiling takes about a minute each)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing window per row and phase")
    ap.add_argument("--quick", action="store_true", help="tiny networks and a short window: the script works")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 0.5)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    all_sizes = sizes(args.quick)
    chosen = {k: all_sizes[k] for k in args.sizes.split(",")}
    print(machine_line(), flush=True)
    if cuda:
        torch.set_float32_matmul_precision("high")     # the GPU default (config matmul_precision=auto)

    failed = False
    check_cfg = sizes(True)["aligniql"] if args.quick else all_sizes["aligniql"]
    for name, fn in (("cpu_vs_cuda", check_cpu_vs_cuda), ("checkpoint", check_checkpoint),
                     ("cuda_to_actor", check_cuda_to_actor), ("graph_vs_eager", check_graph_vs_eager)):
        if not cuda:
            print(f"SKIP  {name:<15} no CUDA device", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            ok, detail = fn(copy.deepcopy(check_cfg))
        except Exception as e:                         # a check that crashes fails, the others still run
            ok, detail = False, f"{type(e).__name__}: {e}"
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name:<15} {detail}  ({time.perf_counter() - t0:.1f} s)", flush=True)

    paths = args.paths.split(",")
    compile_sizes = set(args.compile_sizes.split(","))
    print(f"\nlearner steps/s on {device} (TF32 {'on' if cuda else 'n/a'}); projected: "
          f"{PAPER_CRITIC_STEPS:,} both + {PAPER_ACTOR_STEPS - PAPER_CRITIC_STEPS:,} μ-only steps", flush=True)
    for label, cfg in chosen.items():
        wanted = [p for p in paths if "compile" not in p or label in compile_sizes]
        for line in speed_table({label: cfg}, wanted, device, args.seconds)[(0 if label == next(iter(chosen)) else 1):]:
            print(line, flush=True)
    print("\nRESULT:", "FAIL" if failed else ("PASS" if cuda else "no CUDA: checks skipped"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
