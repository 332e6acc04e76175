"""Aggregates of the study's scores: per-task mean ± std, and robust aggregates over tasks × seeds.

The robust ones follow Agarwal et al., "Deep RL at the Edge of the Statistical Precipice"
(NeurIPS 2021) through their `rliable` package: the interquartile mean (IQM, the mean of the
middle 50 % of all runs pooled over tasks, scipy's 25 % trimmed mean) with a percentile
confidence interval from a stratified bootstrap, which resamples runs with replacement within
each task (a task's runs are a stratum). A stratified bootstrap needs the same number of runs on
every task: `balanced` keeps the seeds every task has.

`paired_difference_ci` is the mean of a − b over paired runs (same task and seed, e.g. a score
after finetuning and the same run's score after pretraining) with the same bootstrap of the
pairs. rliable (and its dependency arch) are imported lazily: only the report needs them.
"""
from __future__ import annotations

import numpy as np

CI_SIZE = 0.95
REPS = 2_000         # bootstrap replications (rliable's figures use 2,000)


def mstd(values) -> tuple[float, float] | None:
    """Mean and population std of the values that are not None."""
    v = [x for x in values if x is not None]
    if not v:
        return None
    return float(np.mean(v)), float(np.std(v))


def pm(values, digits: int = 1) -> str:
    r = mstd(values)
    return "n/a" if r is None else f"{r[0]:.{digits}f} ± {r[1]:.{digits}f}"


def _matrix(scores) -> np.ndarray:
    """runs × tasks, float64; a 1-D array is one task's runs."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"scores must be a non-empty finite runs × tasks array, got shape {x.shape}")
    return x


def iqm(scores) -> float:
    """Interquartile mean over all runs and tasks (rliable.metrics.aggregate_iqm: 25 % trimmed mean)."""
    from rliable import metrics
    return float(metrics.aggregate_iqm(_matrix(scores)))


def _interval(x: np.ndarray, func, reps: int, size: float, seed: int) -> tuple[float, float, float]:
    if x.shape[0] == 1:           # one run per task: every stratified resample is x itself
        v = float(func(x))
        return v, v, v
    from rliable import library as rly
    # rliable 1.2's StratifiedBootstrap draws its indices from NumPy's global generator (it ignores
    # `random_state`), so the seed goes there, and the caller's global state is put back afterwards.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        point, ci = rly.get_interval_estimates({"x": x}, lambda s: np.array([func(s)]), method="percentile",
                                               reps=reps, confidence_interval_size=size)
    finally:
        np.random.set_state(saved)
    return float(point["x"][0]), float(ci["x"][0, 0]), float(ci["x"][1, 0])


def iqm_ci(scores, reps: int = REPS, size: float = CI_SIZE, seed: int = 0) -> tuple[float, float, float]:
    """(IQM, lower, upper): IQM over runs × tasks and its stratified-bootstrap percentile interval."""
    from rliable import metrics
    return _interval(_matrix(scores), metrics.aggregate_iqm, reps, size, seed)


def paired_difference_ci(a, b, reps: int = REPS, size: float = CI_SIZE,
                         seed: int = 0) -> tuple[float, float, float]:
    """(mean of a − b, lower, upper): pairs resampled together, stratified over tasks (columns)."""
    a, b = _matrix(a), _matrix(b)
    if a.shape != b.shape:
        raise ValueError(f"paired sets must have the same shape, got {a.shape} and {b.shape}")
    return _interval(a - b, np.mean, reps, size, seed)


def ragged_mean_ci(by_task: dict, reps: int = REPS, size: float = CI_SIZE,
                   seed: int = 0) -> tuple[float, float, float] | None:
    """(mean over tasks of each task's mean, lower, upper) for {task: [values]} with any number of runs per
    task: a stratified bootstrap (runs resampled within their task, rliable's scheme) that keeps every
    run where `balanced` would drop the seeds some task lacks. A task with one run contributes it fixed."""
    groups = [np.asarray(v, dtype=np.float64) for v in by_task.values() if len(v)]
    if not groups:
        return None
    point = float(np.mean([g.mean() for g in groups]))
    rng = np.random.default_rng(seed)
    stats = np.zeros(reps)
    for g in groups:
        stats += rng.choice(g, size=(reps, g.size), replace=True).mean(axis=1)
    stats /= len(groups)
    alpha = (1.0 - size) / 2
    return point, float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def balanced(by_task: dict) -> tuple[np.ndarray, list]:
    """{task: {seed: score}} -> (runs × tasks matrix over the seeds every task has, those seeds).

    None scores are dropped first; a task with no score is left out. Rows are in seed order."""
    by_task = {t: {s: v for s, v in runs.items() if v is not None} for t, runs in by_task.items()}
    by_task = {t: runs for t, runs in by_task.items() if runs}
    if not by_task:
        return np.zeros((0, 0)), []
    seeds = sorted(set.intersection(*(set(runs) for runs in by_task.values())))
    return np.array([[by_task[t][s] for t in by_task] for s in seeds], dtype=np.float64).reshape(
        len(seeds), len(by_task)), seeds


def fmt_iqm(scores, digits: int = 1, **kw) -> str:
    """'IQM [lower, upper]', or 'n/a' without scores."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        return "n/a"
    m, lo, hi = iqm_ci(x, **kw)
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
