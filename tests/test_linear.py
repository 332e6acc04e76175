"""The oneDNN CPU route of the linear layers computes what nn.Linear / baddbmm compute.

Checked against float64 references by hand-sized cases: outputs and the gradients of input,
weight and bias, for 2-D and batched inputs, with the input needing or not needing a gradient.
"""
import pytest
import torch
from torch.nn import functional as F

from networks.linear import Linear, ensemble_linear, set_cpu_matmul
from networks.mlp import EnsembleLinear


@pytest.fixture(autouse=True)
def onednn():
    assert set_cpu_matmul("onednn") == "onednn", "this build of torch has no oneDNN"
    yield
    set_cpu_matmul("auto")          # the default, for the tests that run after these in the same process


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 5)])
@pytest.mark.parametrize("input_grad", [True, False])
def test_linear_matches_float64_forward_and_gradients(shape, input_grad):
    torch.manual_seed(0)
    layer = Linear(5, 6)
    x = torch.randn(*shape, requires_grad=input_grad)
    y = layer(x)
    assert y.shape == (*shape[:-1], 6)
    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()

    x64 = x.detach().double().requires_grad_(input_grad)
    w64 = layer.weight.detach().double().requires_grad_()
    b64 = layer.bias.detach().double().requires_grad_()
    y64 = F.linear(x64, w64, b64)
    (y64 * upstream.double()).sum().backward()
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.weight.grad.double(), w64.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.bias.grad.double(), b64.grad, rtol=1e-5, atol=1e-5)
    if input_grad:
        torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)


def test_a_hand_sized_product():
    layer = Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, -1.0]]))
        layer.bias.fill_(0.5)
    x = torch.tensor([[3.0, 4.0]], requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert y.item() == 2.5                                  # 2*3 - 4 + 0.5
    assert x.grad.tolist() == [[2.0, -1.0]] and layer.weight.grad.tolist() == [[3.0, 4.0]]


def test_ensemble_linear_matches_baddbmm_and_its_gradients():
    torch.manual_seed(1)
    layer = EnsembleLinear(2, 5, 4)
    x = torch.randn(3, 5).unsqueeze(0).expand(2, -1, -1)              # the first layer sees one input twice
    h = torch.randn(2, 3, 5, requires_grad=True)
    for inp in (x, h):
        layer.zero_grad()
        y = layer(inp)
        upstream = torch.randn_like(y)
        (y * upstream).sum().backward()
        grads = (layer.weight.grad.clone(), layer.bias.grad.clone())
        w64 = layer.weight.detach().double().requires_grad_()
        b64 = layer.bias.detach().double().requires_grad_()
        i64 = inp.detach().double().requires_grad_(inp.requires_grad)
        y64 = torch.baddbmm(b64, i64, w64)
        (y64 * upstream.double()).sum().backward()
        torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grads[0].double(), w64.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grads[1].double(), b64.grad, rtol=1e-5, atol=1e-5)
        if inp.requires_grad:
            torch.testing.assert_close(inp.grad.double(), i64.grad, rtol=1e-5, atol=1e-5)


def test_aten_route_is_plain_nn_linear_and_state_dicts_are_unchanged():
    torch.manual_seed(2)
    layer, plain = Linear(5, 3), torch.nn.Linear(5, 3)
    plain.load_state_dict(layer.state_dict())               # same names and shapes as nn.Linear
    x = torch.randn(4, 5)
    assert set_cpu_matmul("aten") == "aten"
    assert torch.equal(layer(x), plain(x))
    set_cpu_matmul("onednn")
    torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-6)
    assert torch.equal(ensemble_linear(torch.ones(1, 1, 2), torch.ones(1, 2, 1), torch.zeros(1, 1, 1)),
                       torch.full((1, 1, 1), 2.0))
    with pytest.raises(Exception, match="config.cpu_matmul"):
        set_cpu_matmul("mkl")


def test_auto_takes_onednn_only_where_the_cpu_has_avx512(monkeypatch):
    # oneDNN is ~1.5-2x MKL with AVX-512 but made the learner step slower on an AVX2-only CPU
    # (networks/linear.py); "auto", the default, decides by the capability torch reports.
    for capability, route in (("AVX512", "onednn"), ("AVX2", "aten"), ("DEFAULT", "aten")):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert set_cpu_matmul("auto") == route, capability
    from configs import base
    assert base.get_config().cpu_matmul == "auto"


def test_autocast_keeps_its_bfloat16_products():
    # actors may sample μ under bf16 autocast (online.actor_mu_dtype): the oneDNN float32 route must
    # not silently take those products back to float32
    layer = Linear(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(3, 8)).dtype == torch.bfloat16
        assert ensemble_linear(torch.randn(2, 3, 8), torch.randn(2, 8, 4), torch.randn(2, 1, 4)).dtype == torch.bfloat16
