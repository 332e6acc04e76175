"""The matrix products of one learner step, timed alone: how close each step is to pure GEMM.

    python -m bench.matmul_bound                      # paper and quickstart sizes, CPU (and CUDA if present)
    python -m bench.matmul_bound --seconds=1 --check  # also count the GEMMs the profiler sees in a real step

For every update of `learner.agent.Learner` this module enumerates the forward
and backward matrix products that update performs, from the config alone:

    forward   y  = x W            one per linear layer (nn.Linear: addmm; twin critic: one baddbmm for both heads)
    backward  dW = xᵀ dY          every layer with trainable weights
              dX = dY Wᵀ          only where the layer's input needs a gradient (not the first layer of Q, or
                                  of V without an input LayerNorm, whose input is data; yes for μ's input
                                  layer, which sees the time embedding)

over the target-critic forward (no grad), V and V(s'), both critic heads, the
multiplier networks α(s), β(s), and μ's noise network (Fourier time features,
time MLP, input layer, residual blocks, output layer). It then times exactly
those products back to back with torch.mm / torch.bmm on preallocated operands
of the same shapes, and `ratio = GEMM time / step time` says how much of a step
is matrix products (1.0 = the step is all GEMM; the rest is element-wise work,
the optimiser, autograd bookkeeping and per-op dispatch).

`--check` runs one real step under torch.profiler and compares the number of
GEMM calls and their FLOPs with the enumeration (they should agree exactly
except for the bias-only rows the profiler does not count as FLOPs).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


@dataclass(frozen=True)
class Gemm:
    """One matrix product [batch ×] (m × k) @ (k × n); batch 0 = a plain mm."""
    what: str
    m: int
    k: int
    n: int
    batch: int = 0

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n * max(1, self.batch)


def linear_gemms(name: str, rows: int, dims: Sequence[int], *, grad: bool, first_dx: bool = False,
                 members: int = 0) -> list[Gemm]:
    """GEMMs of a stack of linear layers dims[0] -> dims[1] -> ... on `rows` inputs.

    members > 0: an ensemble (twin critic) evaluated with one bmm per layer.
    grad: the stack is trained in this update (backward products are added).
    first_dx: the first layer's input needs a gradient too.
    """
    out: list[Gemm] = []
    for i, (fin, fout) in enumerate(zip(dims[:-1], dims[1:])):
        out.append(Gemm(f"{name}.{i} fwd", rows, fin, fout, members))
        if grad:
            out.append(Gemm(f"{name}.{i} dW", fin, rows, fout, members))
            if i > 0 or first_dx:
                out.append(Gemm(f"{name}.{i} dX", rows, fout, fin, members))
    return out


def critic_value_gemms(cfg, batch: int, obs_dim: int, act_dim: int) -> list[Gemm]:
    """Learner.value_and_critic_step: target-Q fwd, V fwd+bwd, V(s') fwd, both Q heads fwd+bwd.
    V's first layer needs dX where a trained LayerNorm sits before it (value_layer_norm="input")."""
    from networks.mlp import value_layer_norm_placement

    heads = 2
    q_dims = [obs_dim + act_dim, *cfg.critic_hidden, 1]
    v_dims = [obs_dim, *cfg.critic_hidden, 1]
    v_input_norm = value_layer_norm_placement(cfg.get("value_layer_norm", False)) == "input"
    return (linear_gemms("target_Q", batch, q_dims, grad=False, members=heads)
            + linear_gemms("V", batch, v_dims, grad=True, first_dx=v_input_norm)
            + linear_gemms("V(s')", batch, v_dims, grad=False)
            + linear_gemms("Q", batch, q_dims, grad=True, members=heads))


def multiplier_gemms(cfg, batch: int, obs_dim: int, act_dim: int) -> list[Gemm]:
    """Learner.multiplier_step: target-Q and V fwd, α and β fwd+bwd (their input LayerNorm is trained,
    so the first layer's dX is needed)."""
    m_dims = [obs_dim, *cfg.multipliers.hidden, 1]
    return (linear_gemms("target_Q", batch, [obs_dim + act_dim, *cfg.critic_hidden, 1], grad=False, members=2)
            + linear_gemms("V", batch, [obs_dim, *cfg.critic_hidden, 1], grad=False)
            + linear_gemms("alpha", batch, m_dims, grad=True, first_dx=True)
            + linear_gemms("beta", batch, m_dims, grad=True, first_dx=True))


def behavior_gemms(cfg, batch: int, obs_dim: int, act_dim: int) -> list[Gemm]:
    """Learner.behavior_step: one denoising loss of μ's LN-ResNet noise network, fwd + bwd."""
    d = cfg.diffusion
    td = d.time_dim
    out = [Gemm("mu.fourier fwd", batch, 1, td // 2), Gemm("mu.fourier dW", 1, batch, td // 2)]
    out += linear_gemms("mu.time_mlp", batch, [td, 2 * td, td], grad=True, first_dx=True)
    out += linear_gemms("mu.inp", batch, [act_dim + obs_dim + td, d.width], grad=True, first_dx=True)
    for b in range(d.num_blocks):
        out += linear_gemms(f"mu.block{b}", batch, [d.width, d.inner, d.width], grad=True, first_dx=True)
    out += linear_gemms("mu.out", batch, [d.width, act_dim], grad=True, first_dx=True)
    return out


def step_gemms(cfg, obs_dim: int, act_dim: int) -> dict[str, list[Gemm]]:
    """{update name: its GEMMs} for the updates bench.learner_throughput times, at the config's batch sizes."""
    cb, ab = cfg.critic_batch_size, cfg.actor_batch_size
    out = {"critic+value": critic_value_gemms(cfg, cb, obs_dim, act_dim)}
    whole = list(out["critic+value"])
    if cfg.algorithm != "iql":
        out["mu (diffusion)"] = behavior_gemms(cfg, ab, obs_dim, act_dim)
        whole += out["mu (diffusion)"]
    if cfg.algorithm == "aligniql_hard":
        out["multipliers"] = multiplier_gemms(cfg, cb, obs_dim, act_dim)
        whole += out["multipliers"]
    out["whole step"] = whole
    return out


def gemm_runner(gemms: Sequence[Gemm], device: torch.device, dtype=torch.float32) -> Callable[[], None]:
    """A function that runs every product once, back to back, on preallocated operands, by the
    route the learner's layers use (on a CPU: networks.linear's, oneDNN by default)."""
    from networks.linear import cpu_matmul_in_force

    if device.type == "cpu" and dtype == torch.float32 and cpu_matmul_in_force() == "onednn":
        return onednn_gemm_runner(gemms)
    ops = []
    for g in gemms:
        if g.batch:
            a = torch.randn(g.batch, g.m, g.k, device=device, dtype=dtype)
            b = torch.randn(g.batch, g.k, g.n, device=device, dtype=dtype)
            c = torch.empty(g.batch, g.m, g.n, device=device, dtype=dtype)
            ops.append((torch.bmm, a, b, c))
        else:
            a = torch.randn(g.m, g.k, device=device, dtype=dtype)
            b = torch.randn(g.k, g.n, device=device, dtype=dtype)
            c = torch.empty(g.m, g.n, device=device, dtype=dtype)
            ops.append((torch.mm, a, b, c))

    def run() -> None:
        for f, a, b, c in ops:
            f(a, b, out=c)
    return run


def onednn_gemm_runner(gemms: Sequence[Gemm]) -> Callable[[], None]:
    """`gemm_runner` through oneDNN: a @ b as linear(a, bᵀ) over a transposed view (no copy), per member."""
    ops = []
    for g in gemms:
        for _ in range(max(1, g.batch)):
            ops.append((torch.randn(g.m, g.k), torch.randn(g.k, g.n).t()))

    def run() -> None:
        for a, w in ops:
            torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")
    return run


def seconds_per_call(fn: Callable[[], object], device: torch.device, seconds: float, windows: int = 3,
                     warmup: int = 3, min_calls: int = 3) -> float:
    """Best (smallest) seconds per call over `windows` windows of seconds/windows each, each window
    at least `min_calls` calls long (slow updates are not judged on one or two calls).

    The machine is shared with other work: the best window is the least disturbed one,
    so it is the figure that compares across variants measured in the same run.
    """
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    for _ in range(warmup):
        fn()
    sync()
    best = float("inf")
    per_window = max(seconds / windows, 1e-3)
    for _ in range(windows):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            if n % 2 == 0 or device.type != "cuda":
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= per_window and n >= min_calls:
                    break
        best = min(best, elapsed / n)
    return best


def profile_gemms(fn: Callable[[], object]) -> tuple[int, int]:
    """(number of GEMM calls, their FLOPs) that torch.profiler sees in one call of `fn`.

    Counted on torch's default route (the profiler gives FLOPs for aten's GEMMs only); which
    products a step runs does not depend on the route.
    """
    from torch.profiler import ProfilerActivity, profile

    from networks.linear import cpu_matmul

    with cpu_matmul("aten"):
        fn()
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            fn()
    calls = flops = 0
    for e in prof.key_averages():
        if e.key in GEMM_OPS:
            calls += e.count
            flops += e.flops
    return calls, flops


def main(argv):
    del argv
    from absl import flags

    from bench import learner_throughput as lt

    f = flags.FLAGS
    torch.set_num_threads(f.threads if f.threads > 0 else 1)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(lt.machine_line())
    print("Best of a few windows per figure; other processes share the cores, so figures are noisy.\n")
    print("| dev | configuration | update | GEMMs | GFLOP | GEMM-only /s | step /s | GEMM time / step time "
          "| profiler: GEMM calls, GFLOP |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for device in devices:
        for label, cfg in lt.bench_configs(device):
            learner, batch = lt.build(cfg, device, f.obs_dim, f.act_dim)
            fns = lt.update_fns(learner, cfg, batch)
            for what, gemms in step_gemms(cfg, f.obs_dim, f.act_dim).items():
                t_gemm = seconds_per_call(gemm_runner(gemms, device), device, f.seconds)
                t_step = seconds_per_call(fns[what], device, f.seconds)
                check = ""
                if f.check and device.type == "cpu":
                    calls, flops = profile_gemms(fns[what])
                    check = f"{calls}, {flops / 1e9:.3f}"
                print(f"| {device.type} | {label} | {what} | {len(gemms)} | {sum(g.flops for g in gemms) / 1e9:.3f} "
                      f"| {1 / t_gemm:,.1f} | {1 / t_step:,.1f} | {t_gemm / t_step:.2f} | {check} |", flush=True)


if __name__ == "__main__":
    from absl import app, flags as _flags

    from bench import learner_throughput as _lt

    _lt.define_flags()
    _flags.DEFINE_bool("check", False, "Compare the enumeration with the GEMMs torch.profiler sees.")
    _flags.FLAGS.set_default("seconds", 1.0)
    app.run(main)
