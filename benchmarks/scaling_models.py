"""Parametric models of test-time scaling curves, fitted to a sweep's (N, accuracy) points.

**TTSPM**, the Test-Time Scaling Performance Model (Wang, Zhu, Leong, Li and Li 2025, "Scaling
over Scaling: Exploring Test-Time Scaling Plateau in Large Reasoning Models", arXiv 2505.20522).
Parallel scaling draws N candidates, each correct after selection with probability p
independently of the others; the chance that the N contain a correct one, scaled by the
attainable ceiling F_max, is

    F(N) = F_max · (1 − (1 − p)^N).

The marginal gain of one more unit of budget (one more sample) is

    ΔF(N) = F(N + 1) − F(N) = F_max · p · (1 − p)^N,

and the saturation point N* is the budget from which that gain falls below a threshold ε:
the smallest N with ΔF(N) < ε, i.e.

    N* = ⌈ ln(ε / (F_max · p)) / ln(1 − p) ⌉      (0 when F_max · p < ε already)

(up to the strict inequality at an exact integer, where N* is one more). The paper's sequential
scaling (a rethink succeeds with probability p per round) has the same form as an upper bound,
so the same N* applies with p read as the per-round probability. ε is a gain per sample (0.01:
one accuracy point per extra sample).

What of this was checked against the paper (issue 22), and what was not: the stored copies
of its text reachable here (arXiv's HTML, 2505.20522v2, and a markdown copy of it) end in the
introduction. A review,
https://www.themoonlight.io/review/scaling-over-scaling-exploring-test-time-scaling-pareto-in-large-reasoning-models,
restates the two models in the paper's terms: parallel scaling's Hit@N = P(K ≥ 1) =
1 − (1 − p_sample)^N, K ~ Binomial(N, p_sample), p_sample the probability that one candidate
is correct after the selection strategy; sequential scaling as a two-state Markov chain with an
absorbing correct state, p_rethink per round and a geometric number of rounds to success. That
much matches F above with F_max = 1. **The factor F_max, the definition of N* (the gain of one
more sample below ε, the closed form above) and the value of ε the paper uses were not found
in any stored copy**: they are this project's reading of the paper, and ε = 0.01 is this
project's choice.

This is a different quantity from ``estimators.saturation``, the empirical rule of this
project's sweeps (the first budget from which every further *doubling* gains less than a
threshold, read off the measured points without a model); the sweeps report both, under their
own names: ``saturation_point`` / ``gain_per_doubling`` for the rule, ``ttspm`` for this fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

MIN_POINTS = 3  # two points always fit a two-parameter curve exactly: no evidence
DEFAULT_EPSILON = 0.01


def ttspm(n: float, f_max: float, p: float) -> float:
    """F(N) = F_max · (1 − (1 − p)^N)."""
    return f_max * (1.0 - (1.0 - p) ** n)


def ttspm_saturation(f_max: float, p: float, epsilon: float = DEFAULT_EPSILON) -> int:
    """N*: the smallest N ≥ 0 whose next sample gains less than ``epsilon``,
    F_max · p · (1 − p)^N < ε."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    first = f_max * p  # the gain of the first sample, ΔF(0)
    if first < epsilon:
        return 0
    bound = math.log(epsilon / first) / math.log(1.0 - p)  # ΔF(N) < ε  ⇔  N > bound
    n = math.floor(bound) + 1

    def gain(k: int) -> float:
        return first * (1.0 - p) ** k

    while n > 0 and gain(n - 1) < epsilon:  # the logarithms' rounding, at an exact integer bound
        n -= 1
    while gain(n) >= epsilon:
        n += 1
    return n


@dataclass(frozen=True, slots=True)
class TTSPMFit:
    f_max: float
    p: float
    f_max_se: float  # standard errors from the fit's covariance (inf when it is singular)
    p_se: float
    r2: float
    rmse: float
    points: int
    epsilon: float
    n_star: int  # TTSPM's saturation point for ``epsilon``

    def __call__(self, n: float) -> float:
        return ttspm(n, self.f_max, self.p)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_ttspm(ns: Sequence[float], accuracies: Sequence[float], epsilon: float = DEFAULT_EPSILON) -> TTSPMFit | None:
    """Least-squares fit of F(N) = F_max · (1 − (1 − p)^N) to (N, accuracy) points, with
    0 ≤ F_max ≤ 1 and 0 < p < 1, and TTSPM's N* for ``epsilon``. None with fewer than
    ``MIN_POINTS`` distinct N ≥ 1."""
    import numpy as np
    from scipy.optimize import curve_fit

    pairs = [(float(n), float(a)) for n, a in zip(ns, accuracies, strict=True) if n >= 1]
    if len({n for n, _ in pairs}) < MIN_POINTS:
        return None
    x = np.array([n for n, _ in pairs])
    y = np.array([a for _, a in pairs])
    top = float(max(y.max(), 1e-6))
    at_smallest = float(y[x == x.min()].mean())
    start = (min(top, 1.0), min(max(at_smallest / top, 0.01), 0.99))
    low, high = (0.0, 1e-6), (1.0, 1.0 - 1e-6)
    import warnings

    from scipy.optimize import OptimizeWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # a singular covariance: reported as inf below
            (f_max, p), covariance = curve_fit(lambda n, f, q: f * (1.0 - (1.0 - q) ** n), x, y, p0=start,
                                               bounds=(low, high), maxfev=20_000)
    except RuntimeError:  # no convergence
        return None
    residual = y - ttspm(x, f_max, p)
    ss_res = float((residual**2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res <= 1e-12 * len(y) else 0.0)  # a flat curve
    errors = np.sqrt(np.diag(covariance)) if np.all(np.isfinite(covariance)) else (math.inf, math.inf)
    return TTSPMFit(float(f_max), float(p), float(errors[0]), float(errors[1]), r2, math.sqrt(ss_res / len(y)),
                    len(y), epsilon, ttspm_saturation(float(f_max), float(p), epsilon))
