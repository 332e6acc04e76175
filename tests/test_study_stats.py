"""The study's aggregates (study/stats.py) on cases solvable by hand."""
from __future__ import annotations

import numpy as np
import pytest

from study import stats


def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm(np.arange(1, 9)) == pytest.approx(4.5)                 # mean of 3, 4, 5, 6
    assert stats.iqm([[1, 2], [3, 4], [5, 6], [7, 8]]) == pytest.approx(4.5)   # pooled over tasks
    assert stats.iqm([0, 0, 0, 100]) == pytest.approx(0.0)                  # the outlier is trimmed
    assert stats.iqm([[5.0]]) == pytest.approx(5.0)


def test_ci_of_identical_values_has_zero_width():
    m, lo, hi = stats.iqm_ci(np.full((3, 2), 7.0), reps=200)
    assert m == lo == hi == pytest.approx(7.0)
    assert stats.iqm_ci([[5.0]], reps=50) == pytest.approx((5.0, 5.0, 5.0))


def test_bootstrap_is_stratified_over_tasks():
    # Task A scores 0 and task B 100 on every run: a resample within each task keeps four of each, so the
    # IQM (middle half of 0,0,0,0,100,100,100,100) is 50 in every replication; pooling would not be.
    scores = np.array([[0.0, 100.0]] * 4)
    assert stats.iqm_ci(scores, reps=300) == pytest.approx((50.0, 50.0, 50.0))


def test_ci_brackets_the_estimate_and_is_reproducible():
    x = np.random.default_rng(0).normal(50, 10, size=(5, 3))
    m, lo, hi = stats.iqm_ci(x, reps=500, seed=1)
    assert lo < m < hi and hi - lo < 20
    state = np.random.get_state()[1].copy()
    assert stats.iqm_ci(x, reps=500, seed=1) == (m, lo, hi)
    np.testing.assert_array_equal(np.random.get_state()[1], state)     # the caller's global stream is kept


def test_paired_difference():
    rng = np.random.default_rng(0)
    before = rng.normal(40, 15, size=(5, 2))             # 5 seeds × 2 tasks, spread far above the shift
    assert stats.paired_difference_ci(before + 1.0, before, reps=200) == pytest.approx((1.0, 1.0, 1.0))
    after = before + 3.0 + rng.normal(0, 0.5, size=before.shape)
    m, lo, hi = stats.paired_difference_ci(after, before, reps=1000)
    assert m == pytest.approx(np.mean(after - before))
    assert 0 < lo < m < hi
    m, lo, hi = stats.paired_difference_ci(before, after, reps=1000)
    assert hi < 0
    with pytest.raises(ValueError):
        stats.paired_difference_ci([1.0, 2.0], [1.0])


def test_balanced_keeps_seeds_every_task_has():
    x, seeds = stats.balanced({"hopper": {0: 1.0, 1: 2.0, 2: 3.0}, "cheetah": {0: 4.0, 2: 6.0, 3: None},
                               "walker": {}})
    assert seeds == [0, 2]
    np.testing.assert_array_equal(x, [[1.0, 4.0], [3.0, 6.0]])
    x, seeds = stats.balanced({})
    assert seeds == [] and x.size == 0
    assert stats.fmt_iqm(x) == "n/a"
    assert stats.fmt_iqm(np.full((2, 1), 3.0), reps=50) == "3.0 [3.0, 3.0]"


def test_ragged_mean_ci_keeps_every_run_and_resamples_within_tasks():
    from study.stats import ragged_mean_ci

    # task a: runs 1 and 3 (resampled means 1, 2 or 3); task b: one run, 5, fixed.
    point, lo, hi = ragged_mean_ci({"a": [1.0, 3.0], "b": [5.0]})
    assert point == 3.5                                   # mean of the task means (2 and 5)
    assert 3.0 <= lo < point < hi <= 4.0                  # (1+5)/2 .. (3+5)/2, both ends reachable
    assert ragged_mean_ci({"a": [2.0], "b": [4.0]}) == (3.0, 3.0, 3.0)
    assert ragged_mean_ci({}) is None
