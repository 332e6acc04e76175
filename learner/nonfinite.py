"""Notice a NaN or inf loss without a host sync, or a kernel per metric, on every step.

Checking each metric as it comes (`flag |= ~isfinite(v)` per metric) costs about three kernels per
metric per step: ~30 of a learner step's ~240 on a GPU, where launches bound the step rate. Here
each step adds the sum of all its metrics, in float64, to one device scalar: a sum is finite exactly
when every term is (float32 values cannot overflow a float64 sum in any run), so the
scalar stays finite until some metric is not. The scalar is read, one host sync, only when the
loop logs or checkpoints; a divergence is then reported with the steps between which it happened.
"""
from __future__ import annotations

import torch

from errors import TrainingDiverged


class NonFiniteWatch:
    def __init__(self, device: torch.device, step: int = 0):
        self._sum = torch.zeros((), dtype=torch.float64, device=device)
        self._checked_step = step            # every step up to this one was finite

    def observe(self, metrics: dict[str, torch.Tensor]) -> None:
        """One step's scalar metrics, on the device; nothing is read back."""
        if metrics:
            self._sum += torch.stack(list(metrics.values())).sum(dtype=torch.float64)

    def finite(self) -> bool:
        """Whether every metric observed so far was finite (one host sync)."""
        return bool(torch.isfinite(self._sum))

    def check(self, step: int, metrics: dict[str, torch.Tensor], where: str) -> None:
        """Raise TrainingDiverged naming the steps since the last check if a metric was NaN or inf.

        `metrics` are the latest step's, named in the message where they are not finite; `where`
        says what stops and what is kept (e.g. "the last good checkpoint in <dir> is intact").
        """
        if self.finite():
            self._checked_step = step
            return
        bad = [k for k, v in metrics.items() if not torch.isfinite(v)]
        raise TrainingDiverged(
            f"A loss became NaN or inf between steps {self._checked_step + 1} and {step}"
            f"{' (at step ' + str(step) + ': ' + ', '.join(bad) + ')' if bad else ''}. {where}")
