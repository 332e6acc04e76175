"""Routes to a faster CPU matrix product for the learner's shapes, side by side in one run (issue 10).

    python -m bench.cpu_gemm                    # IDQL's μ step (batch 1024), one thread
    python -m bench.cpu_gemm --threads=2 --seconds=2

Why: one thread of this machine's CPU runs the μ step's GEMMs at ~108 GFLOP/s through torch's
default route (MKL), where JAX/XLA reaches ~180-200 on the same shapes (docs/performance.md); the
official JAX IDQL code's μ step is therefore ~1.3x ours. Each route below runs exactly the
forward and backward products of one μ step (bench.matmul_bound.behavior_gemms) back to back on
preallocated operands, and prints GFLOP/s and the ratio to the default, all in the same run:

  aten (MKL)        torch.mm: what nn.Linear runs with config cpu_matmul="aten"
  oneDNN            torch.ops.mkldnn._linear_pointwise on the same dense operands (transposed views,
                    no copies): what networks/linear.py runs with cpu_matmul="onednn" (and "auto",
                    the default, on a CPU with AVX-512)
  inductor          torch.compile(mode="max-autotune") of the same chain with Inductor's C++ GEMM
                    templates allowed (max_autotune_gemm_backends="CPP,ATEN"), chosen per shape by timing

Measured here (2026-12-02, AMD EPYC with AVX-512, one thread, beside another job on the second core): aten 89.7, oneDNN
202.0 (x2.25), inductor 89.7 GFLOP/s (x1.00: autotuning kept ATen's kernels). On an AVX2-only AMD EPYC
(2026-12-03, quiet): aten 33.7, oneDNN 34.2 GFLOP/s (x1.01).
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from bench.learner_throughput import cpu_model
from bench.matmul_bound import behavior_gemms, gemm_runner, onednn_gemm_runner, seconds_per_call
from networks.linear import cpu_matmul
from configs import idql_locomotion


def inductor_runner(gemms):
    import torch._inductor.config as cfg

    cfg.max_autotune = True
    cfg.max_autotune_gemm_backends = "CPP,ATEN"
    operands = [(torch.randn(g.m, g.k), torch.randn(g.k, g.n)) for g in gemms if not g.batch]

    def chain(*flat):
        return [flat[i] @ flat[i + 1] for i in range(0, len(flat), 2)]
    compiled = torch.compile(chain, mode="max-autotune", dynamic=False)
    flat = [t for pair in operands for t in pair]

    def run():
        compiled(*flat)
    return run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0, help="per route, best of 3 windows")
    ap.add_argument("--routes", default="aten,onednn,inductor")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = idql_locomotion.get_config()
    gemms = [g for g in behavior_gemms(cfg, cfg.actor_batch_size, 11, 3) if not g.batch]
    flops = sum(g.flops for g in gemms)
    cpu = torch.device("cpu")
    print(f"torch {torch.__version__}, {cpu_model()}, {args.threads} thread(s), MKL_ENABLE_INSTRUCTIONS="
          f"{os.environ.get('MKL_ENABLE_INSTRUCTIONS', '(unset)')}; IDQL μ step: {len(gemms)} GEMMs, "
          f"{flops / 1e9:.2f} GFLOP", flush=True)
    def aten_runner():
        with cpu_matmul("aten"):
            return gemm_runner(gemms, cpu)
    builders = {"aten": aten_runner, "onednn": lambda: onednn_gemm_runner(gemms),
                "inductor": lambda: inductor_runner(gemms)}
    results = {}
    for name in args.routes.split(","):
        t0 = time.perf_counter()
        try:
            run = builders[name]()
            run()                                             # compile / autotune outside the timing
            setup = time.perf_counter() - t0
            results[name] = flops / seconds_per_call(run, cpu, args.seconds) / 1e9
            print(f"{name:<10} {results[name]:7.1f} GFLOP/s  x{results[name] / results.get('aten', results[name]):.2f}"
                  f"  (setup {setup:.1f} s)", flush=True)
        except Exception as e:                                # a route this build lacks is reported, not fatal
            print(f"{name:<10} failed: {type(e).__name__}: {str(e)[:200]}", flush=True)


if __name__ == "__main__":
    main()
