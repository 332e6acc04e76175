"""Aggregates of the study's scores: mean ± std over seeds."""
from __future__ import annotations

import numpy as np

def mstd(values) -> tuple[float, float] | None:
    """Mean and population std of the values that are not None."""
    v = [x for x in values if x is not None]
    if not v:
        return None
    return float(np.mean(v)), float(np.std(v))


def pm(values, digits: int = 1) -> str:
    r = mstd(values)
    return "n/a" if r is None else f"{r[0]:.{digits}f} ± {r[1]:.{digits}f}"
