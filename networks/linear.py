"""nn.Linear whose CPU matrix products go through oneDNN instead of MKL.

Why: on CPUs with AVX-512 (the AMD EPYC and Intel Xeon machines measured here) torch's default
fp32 route, MKL, runs the learner's GEMMs at ~85-95 GFLOP/s on one thread, while oneDNN's JIT
kernels run the same products at ~160-200 (the speed JAX/XLA reaches, and the reason IDQL's JAX μ
step was 1.3x ours): `python -m bench.cpu_gemm`. On an AVX2-only AMD EPYC the two routes ran the μ
step's GEMMs alike (33.7 vs 34.2 GFLOP/s) and oneDNN made the whole quickstart learner step slower
(20.5 vs 25.7 steps/s, interleaved in one run, 2026-12-03), so the default "auto" takes oneDNN only
where torch reports AVX-512. Both are float32 with float32 accumulation; results agree to rounding.
On CUDA, and where oneDNN is missing, this is exactly `nn.Linear`.

The layer keeps nn.Linear's parameters, names and initialisation, so checkpoints and published
acting weights are unchanged. Forward, input gradient and weight gradient are each one oneDNN
linear (`torch.ops.mkldnn._linear_pointwise`, which reads transposed views without copying).
`set_cpu_matmul("aten")` (config `cpu_matmul`) switches back to torch's default in a process.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

_ONEDNN_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
CPU_MATMULS = ("auto", "onednn", "aten")


def onednn_pays() -> bool:
    """What "auto" picks: oneDNN where the CPU has AVX-512 (see the module's docstring)."""
    return _ONEDNN_AVAILABLE and "AVX512" in torch.backends.cpu.get_cpu_capability()


_use_onednn = onednn_pays()      # the same as "auto", so a process that never sets a route agrees with one that does


def set_cpu_matmul(route: str) -> str:
    """"auto" (the default: oneDNN where the CPU has AVX-512), "onednn" or "aten"; returns the route in force."""
    global _use_onednn
    if route not in CPU_MATMULS:
        from errors import ConfigError
        raise ConfigError(f"Invalid setting config.cpu_matmul={route!r}: choose auto, onednn or aten.")
    _use_onednn = onednn_pays() if route == "auto" else (route == "onednn" and _ONEDNN_AVAILABLE)
    return "onednn" if _use_onednn else "aten"


def cpu_matmul_in_force() -> str:
    return "onednn" if _use_onednn else "aten"


@contextlib.contextmanager
def cpu_matmul(route: str):
    """`set_cpu_matmul(route)` for the duration of a block (benches and the GEMM count)."""
    before = cpu_matmul_in_force()
    set_cpu_matmul(route)
    try:
        yield
    finally:
        set_cpu_matmul(before)


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _onednn_applies(x: torch.Tensor) -> bool:
    """float32 on the CPU, outside autocast (bf16 acting keeps torch's bf16 products) and outside
    torch.compile (which picks its own kernels)."""
    return (_use_onednn and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


class _OneDNNLinear(torch.autograd.Function):
    """y = x Wᵀ + b on 2-D x; dX = dY W and dW = dYᵀ X as oneDNN linears over transposed views."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        grad_y = grad_y.contiguous()
        grad_x = _onednn_linear(grad_y, weight.t(), None) if ctx.needs_input_grad[0] else None
        grad_w = _onednn_linear(grad_y.t(), x.t(), None) if ctx.needs_input_grad[1] else None
        grad_b = grad_y.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class Linear(nn.Linear):
    """nn.Linear with oneDNN products on the CPU (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _onednn_applies(x) or self.weight.dtype != torch.float32:
            return F.linear(x, self.weight, self.bias)
        lead = x.shape[:-1]
        y = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]).contiguous(), self.weight, self.bias)
        return y.reshape(*lead, y.shape[-1])


class _OneDNNEnsembleLinear(torch.autograd.Function):
    """y[m] = x[m] W[m] + b[m] per member m (W[m]: [in, out]), each product a oneDNN linear."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.stack([_onednn_linear(x[m], weight[m].t(), bias[m, 0]) for m in range(weight.shape[0])])

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        grad_y = grad_y.contiguous()
        members = range(weight.shape[0])
        grad_x = torch.stack([_onednn_linear(grad_y[m], weight[m], None) for m in members]) \
            if ctx.needs_input_grad[0] else None
        grad_w = torch.stack([_onednn_linear(x[m].t(), grad_y[m].t(), None) for m in members]) \
            if ctx.needs_input_grad[1] else None
        grad_b = grad_y.sum(1, keepdim=True) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def ensemble_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x [members, batch, in] @ weight [members, in, out] + bias [members, 1, out]: oneDNN on the CPU
    (one product per member), one batched product elsewhere."""
    if not _onednn_applies(x) or weight.dtype != torch.float32:
        return torch.baddbmm(bias, x, weight)
    return _OneDNNEnsembleLinear.apply(x.contiguous(), weight, bias)
