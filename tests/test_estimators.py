"""benchmarks/estimators.py edge cases, written against the survivors of a mutation run
(tests/MUTATION.md): each test fails for a mutant that test_sweep.py and test_statistics.py let
through. Exact values throughout."""

import dataclasses
import math
import random

import numpy as np
import pytest

from reasoning.benchmarks.estimators import CoverageFit, bootstrap_ci, fit_coverage, saturation, subset_mean


def test_subset_mean_is_exact_when_every_subset_fits_the_draws_once():
    # 4 choose 2 = 6 subsets = draws (12 orders do not fit): every subset once, so an
    # order-blind value gets its exact mean, (2/4) x (1 + 2 + 4 + 8) = 7.5, whatever the rng.
    for seed in range(5):
        assert subset_mean([1, 2, 4, 8], 2, sum, draws=6, rng=random.Random(seed)) == 7.5


def test_subset_mean_refuses_a_subset_size_outside_the_pool():
    with pytest.raises(ValueError) as refused:
        subset_mean([1, 2], 3, sum, draws=10, rng=random.Random(0))
    assert str(refused.value) == "subset size 3 not in 1..2"


def test_bootstrap_is_the_percentile_interval_of_1000_seeded_resamples():
    values = [0.13, 0.71, 0.42, 0.05, 0.98, 0.66, 0.27, 0.84, 0.39, 0.55]  # continuous: no tied percentiles
    data = np.asarray(values, dtype=float)
    means = data[np.random.default_rng(0).integers(0, len(data), size=(1000, len(data)))].mean(axis=1)
    assert bootstrap_ci(values) == tuple(float(p) for p in np.percentile(means, [2.5, 97.5]))
    assert bootstrap_ci(values, level=0.8) == tuple(float(p) for p in np.percentile(means, [10, 90]))
    assert bootstrap_ci([]) == (0.0, 0.0)


def test_a_flat_curve_fits_exactly_and_k_zero_is_left_out():
    # The same coverage at every k: log(-log c) is flat, slope 0, R² 1 (no division by zero).
    flat = fit_coverage([0, 1, 2, 4], [0.5, 0.5, 0.5, 0.5])
    assert (flat.b, flat.r2, flat.points) == (0.0, 1.0, 3) and flat.a == pytest.approx(math.log(0.5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        flat.a = 0.0
    assert isinstance(flat, CoverageFit)


def test_the_fits_r2_is_that_of_the_log_log_regression():
    ks, coverage = [1, 2, 4, 8], [0.30, 0.36, 0.48, 0.52]  # noisy, and its total variance is below 1
    xs = np.log(ks)
    ys = np.log(-np.log(coverage))
    assert float(np.sum((ys - ys.mean()) ** 2)) < 1
    fit = fit_coverage(ks, coverage)
    assert fit.r2 == pytest.approx(np.corrcoef(xs, ys)[0, 1] ** 2) and fit.r2 < 0.99


def test_saturation_gains_are_per_doubling_and_the_point_may_be_the_last_step():
    gains, point = saturation([1, 2, 4, 16], [0.1, 0.3, 0.4, 0.42], threshold=0.05)
    assert gains[:3] == pytest.approx([0.2, 0.1, 0.01]) and gains[3] is None  # 4 -> 16 is two doublings
    assert point == 2  # the first budget from which every later step gains less than 0.05
    # A zero or repeated budget has no doubling: no gain there (and no division by zero).
    assert saturation([0, 1, 1, 2], [0.1, 0.2, 0.3, 0.3], threshold=0.05) == ([None, None, 0.0, None], 2)
    # Exactly the threshold is not below it.
    assert saturation([1, 2, 4], [0.25, 0.5, 0.75], threshold=0.25)[1] is None
