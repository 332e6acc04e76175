"""What a learner step costs besides its maths: no host syncs and a fixed, small number of
operations for bookkeeping (on a GPU each is a kernel launch or a wait for the device).

Checked on CPU by counting the aten operations issued, and by the behaviour that argument
validation would change.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from errors import TrainingDiverged
from learner.nonfinite import NonFiniteWatch
from networks.mlp import GaussianActor


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def metrics(n: int, bad_at: int | None = None) -> dict[str, torch.Tensor]:
    return {f"loss/m{i}": torch.tensor(float("nan") if i == bad_at else 1.0 + i) for i in range(n)}


@pytest.mark.parametrize("n", [2, 12])
def test_the_nan_watch_costs_the_same_few_operations_however_many_metrics(n):
    watch, step_metrics = NonFiniteWatch(torch.device("cpu")), metrics(n)
    with CountOps() as counted:
        watch.observe(step_metrics)
    assert len(counted.ops) <= 4, counted.ops     # stack, sum, add; not ~3 per metric
    assert not any("item" in op or "is_nonzero" in op for op in counted.ops)   # nothing read back


def test_the_nan_watch_names_the_steps_between_which_a_metric_went_bad():
    watch = NonFiniteWatch(torch.device("cpu"), step=100)
    for step in range(101, 111):
        watch.observe(metrics(3))
    watch.check(110, metrics(3), "kept")          # all finite: no error
    for step in range(111, 121):
        watch.observe(metrics(3, bad_at=1 if step >= 115 else None))
    with pytest.raises(TrainingDiverged, match=r"between steps 111 and 120 \(at step 120: loss/m1\)\. kept"):
        watch.check(120, metrics(3, bad_at=1), "kept")
    assert not watch.finite()


def test_an_inf_and_huge_finite_values_are_told_apart():
    watch = NonFiniteWatch(torch.device("cpu"))
    for _ in range(1000):
        watch.observe({"a": torch.tensor(3.0e38), "b": torch.tensor(3.0e38)})   # float32 max ~3.4e38
    assert watch.finite()
    watch.observe({"a": torch.tensor(float("inf")), "b": torch.tensor(float("-inf"))})
    assert not watch.finite()


def test_iql_actor_does_not_validate_its_distribution_on_every_step():
    """torch validates a Normal's loc, scale and every sample by default: a host sync each on a GPU.
    Unvalidated, a diverged actor gives NaN log-probabilities (caught by the NaN watch) instead
    of raising inside the step; a healthy one gives the Gaussian's log-density."""
    torch.manual_seed(0)
    actor = GaussianActor(3, 2, hidden=(8,))
    obs, act = torch.randn(4, 3), torch.rand(4, 2) * 2 - 1
    mean = torch.tanh(actor.mean_net(obs))
    std = actor.log_std.exp()
    expected = (-((act - mean) / std) ** 2 / 2 - torch.log(std) - math.log(math.sqrt(2 * math.pi))).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, act), expected)

    with torch.no_grad():
        for p in actor.mean_net.parameters():
            p.fill_(float("nan"))
    assert torch.isnan(actor.log_prob(obs, act)).all()
