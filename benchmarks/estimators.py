"""Statistics of a sweep: subset estimators, bootstrap intervals, coverage fits, saturation.

- ``pass_at_k``: the unbiased estimator of Chen et al. 2021 (from ``benchmarks.run``).
- ``subset_mean``: E[f(random k-subset of a pool)] by averaging over random subsets, the
  estimator search-and-learn uses for majority@k / best-of-k from one pool of N samples.
- ``bootstrap_ci``: percentile bootstrap over problems.
- ``fit_coverage``: the exponentiated power law of Large Language Monkeys (Brown et al.
  2024), coverage(k) ≈ exp(a · k^b), fitted by least squares on log(-log c) = log(-a) + b log k.
- ``saturation``: the budget from which one more doubling gains less than a threshold, an
  empirical plateau rule; it is not TTSPM's saturation point N*, which
  ``benchmarks.scaling_models`` fits.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .run import pass_at_k

T = TypeVar("T")

__all__ = ["CoverageFit", "bootstrap_ci", "coverage_curve", "fit_coverage", "pass_at_k", "saturation", "subset_mean"]


def subset_mean(pool: Sequence[T], k: int, value: Callable[[list[T]], float], *, draws: int, rng: random.Random) -> float:
    """E[value(S)] for S the k elements of ``pool`` drawn without replacement, in random order:
    the mean over k-subsets with order-based tie-breaks (majority's first-seen answer, best-of-n's
    earlier sample) averaged over orders. At most ``draws`` calls of ``value``:

    - exact when there are at most ``draws`` ordered k-subsets: every subset in every order;
    - else, when there are at most ``draws`` k-subsets, every subset in ``draws // C(n, k)``
      random orders (exact for a ``value`` that ignores order, unbiased otherwise);
    - else the mean over ``draws`` independent random ordered k-subsets (unbiased).
    """
    n = len(pool)
    if not 1 <= k <= n:
        raise ValueError(f"subset size {k} not in 1..{n}")
    if math.perm(n, k) <= draws:
        orders = math.perm(n, k)
        return sum(value(list(order)) for order in itertools.permutations(pool, k)) / orders
    subsets = math.comb(n, k)
    if subsets <= draws:
        orders = draws // subsets
        total = sum(value(rng.sample(subset, k)) for subset in itertools.combinations(pool, k) for _ in range(orders))
        return total / (subsets * orders)
    return sum(value(rng.sample(list(pool), k)) for _ in range(draws)) / draws


def bootstrap_ci(values: Sequence[float], *, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling problems with replacement)."""
    if not values:
        return (0.0, 0.0)
    import numpy as np

    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def coverage_curve(pools: Sequence[tuple[int, int]], ks: Sequence[int]) -> list[float]:
    """Mean unbiased pass@k over problems, each given as (samples n, correct c); problems
    with fewer than k samples are left out of that k's mean."""
    curve = []
    for k in ks:
        values = [pass_at_k(n, c, k) for n, c in pools if n >= k]
        curve.append(sum(values) / len(values) if values else float("nan"))
    return curve


@dataclass(frozen=True, slots=True)
class CoverageFit:
    a: float  # coverage(k) ≈ exp(a · k^b), a < 0
    b: float  # b < 0: the failure exponent decays as a power of k
    r2: float  # of the linear fit in log(-log) space
    points: int

    def __call__(self, k: float) -> float:
        return math.exp(self.a * k**self.b)

    def to_dict(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b, "r2": self.r2, "points": self.points}


MIN_FIT_POINTS = 3  # two points always fit a two-parameter curve exactly (R² = 1): no evidence


def fit_coverage(ks: Sequence[int], coverage: Sequence[float]) -> CoverageFit | None:
    """Least-squares fit of log(-log c) = log(-a) + b·log k over points with 0 < c < 1.
    None when fewer than ``MIN_FIT_POINTS`` such points exist (too few, flat or saturated)."""
    xs, ys = [], []
    for k, c in zip(ks, coverage):
        if 0 < c < 1 and k > 0:
            xs.append(math.log(k))
            ys.append(math.log(-math.log(c)))
    if len(xs) < MIN_FIT_POINTS or max(xs) == min(xs):
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    intercept = mean_y - slope * mean_x
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    total = sum((y - mean_y) ** 2 for y in ys)
    r2 = 1 - residual / total if total > 0 else 1.0
    return CoverageFit(-math.exp(intercept), slope, r2, len(xs))


def saturation(budgets: Sequence[float], accuracies: Sequence[float], threshold: float) -> tuple[list[float | None], int | None]:
    """Gain per doubling of budget between consecutive points, and the index of the saturation
    point: the first budget from which the next point gains less than ``threshold`` accuracy
    per doubling (and every later step too). None if the curve never saturates."""
    order = sorted(range(len(budgets)), key=lambda i: budgets[i])
    gains: list[float | None] = [None] * len(budgets)
    for here, there in itertools.pairwise(order):
        doublings = math.log2(budgets[there] / budgets[here]) if budgets[here] > 0 and budgets[there] > budgets[here] else 0
        gains[here] = (accuracies[there] - accuracies[here]) / doublings if doublings > 0 else None
    point = None
    for position, index in enumerate(order[:-1]):
        later = [gains[i] for i in order[position:-1]]
        if all(g is not None and g < threshold for g in later):
            point = index
            break
    return gains, point
