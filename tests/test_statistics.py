"""The sweep's statistics proven against independent exact references (issue #23).

- majority@k / best-of-k from one pool (``subset_mean`` over ``SelfConsistency.choose`` and
  ``BestOfN.choose``) against exact enumeration of every k-subset, ties included;
- k-subsets drawn without replacement;
- bootstrap intervals: size and coverage on data of known accuracy;
- the coverage fit against numpy's least squares, and coverage@k against enumeration;
- the generation cache's key: every sampling parameter, one test each;
- small sweeps plot readable x ticks and say they are too small to fit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import random
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reasoning.benchmarks.estimators import bootstrap_ci, coverage_curve, fit_coverage, subset_mean
from reasoning.strategies.best_of_n import BestOfN
from reasoning.strategies.self_consistency import SelfConsistency
from reasoning.strategies.voting import majority

from reasoning.backends import Scripted
from reasoning.backends.cache import CachedBackend, model_identity, request_key
from reasoning.context import Sample
from reasoning.types import ConfidenceStop, GenerationRequest, Message

# -- majority@k and best-of-k from a pool --------------------------------------------------
#
# The exact reference. ``majority`` gives a tie to the tied answer seen first; ``best_index``
# gives a tied best score to the earlier sample. ``subset_mean`` evaluates a subset in random
# order, so what it estimates is the mean over subsets AND orders. Over a uniformly random
# order, the first of the samples that back the tied answers is uniform among those samples,
# so a tied answer wins with probability (its voting samples) / (all voting samples of the
# tied answers): 1/(number tied) for plain votes, where tied answers have equal counts, but
# not for weighted votes (one sample scoring 0.75 ties two scoring 0.5 and 0.25, and wins
# 1/3 of the time). A tie of best scores likewise goes to each top-scored sample with
# probability 1/(number of top-scored samples). The reference below computes that in exact
# fractions over ``itertools.combinations`` (scores are dyadic, so the floats ``majority``
# adds are exact too), and is itself checked against every order of every subset.

TRUE = "12"
KEYS = {"12": "12", "12.0": "12", "7": "7", "30": "30"}  # answer -> what it votes for
GRADE = {"12": True, "12.0": True, "7": False, "30": False, None: False}  # as the sweep grades answers


def pool_of(*entries: tuple[str | None, float]) -> list[Sample]:
    return [Sample(f"sample {i}: {answer}", answer, score=score) for i, (answer, score) in enumerate(entries)]


# Ties of counts, of weighted sums with unequal counts, of best scores; an unanswered sample;
# one answer written two ways.
TINY = pool_of(("12", 0.75), ("7", 0.5), ("7", 0.25), ("30", 0.5), (None, 0.75), ("12.0", 0.0), ("30", 0.25))
SMALL = TINY[:5]
LARGE = pool_of(*(([TRUE, "7", "30", None, "12.0", "7", "30", "7"][i % 8], [0.25, 0.5, 0.75, 1.0, 0.0, 0.5][i % 6])
                  for i in range(16)))


def p_majority(subset: tuple[Sample, ...]) -> Fraction:
    counts = Counter(KEYS[s.answer] for s in subset if s.answer is not None)
    if not counts:
        return Fraction(0)
    top = max(counts.values())
    tied = [key for key, count in counts.items() if count == top]
    return Fraction(int(TRUE in tied), len(tied))


def p_best_sum(subset: tuple[Sample, ...]) -> Fraction:
    totals: dict[str, Fraction] = {}
    counts: Counter[str] = Counter()
    for s in subset:
        if s.answer is not None:
            key = KEYS[s.answer]
            totals[key] = totals.get(key, Fraction(0)) + Fraction(s.score)
            counts[key] += 1
    if not totals:
        return Fraction(0)
    top = max(totals.values())
    tied = [key for key, total in totals.items() if total == top]
    return Fraction(counts[TRUE] if TRUE in tied else 0, sum(counts[key] for key in tied))


def p_best_max(subset: tuple[Sample, ...]) -> Fraction:
    top = max(s.score for s in subset)
    best = [s for s in subset if s.score == top]
    return Fraction(sum(GRADE[s.answer] for s in best), len(best))


STRATEGIES = {
    "majority": (SelfConsistency(n=8), p_majority),
    "best-of-n-sum": (BestOfN(n=8, aggregate="sum"), p_best_sum),
    "best-of-n-max": (BestOfN(n=8, aggregate="max"), p_best_max),
}


def value_of(strategy) -> Any:
    """The sweep's value of a subset: whether the strategy's choice is graded correct."""
    return lambda subset: float(GRADE[strategy.choose(subset).answer])


def per_subset(pool: list[Sample], k: int, p) -> list[Fraction]:
    return [p(subset) for subset in itertools.combinations(pool, k)]


def exact(pool: list[Sample], k: int, p) -> Fraction:
    chances = per_subset(pool, k, p)
    return sum(chances, Fraction(0)) / len(chances)


def test_the_grading_is_what_the_strategies_see():
    from reasoning.answers import normalize_answer

    assert {normalize_answer(a) for a in KEYS} == set(KEYS.values())  # "12.0" votes with "12"


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("k", range(1, len(TINY) + 1))
def test_the_tie_rule_is_what_every_order_of_every_subset_gives(name, k):
    """The reference against brute force: the strategy run on every ordered k-subset."""
    strategy, p = STRATEGIES[name]
    value = value_of(strategy)
    orders = list(itertools.permutations(TINY, k))
    brute = Fraction(sum(int(value(list(order))) for order in orders), len(orders))
    assert brute == exact(TINY, k, p)


@pytest.mark.parametrize("name", STRATEGIES)
def test_the_pools_have_ties_that_only_order_decides(name):
    """Else the exact tests below would not test tie-breaking at all."""
    _, p = STRATEGIES[name]
    for pool in (TINY, LARGE):
        assert any(0 < chance < 1 for k in range(2, 6) for chance in per_subset(pool, k, p))


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("k", range(1, len(TINY) + 1))
def test_subset_mean_is_exact_when_draws_cover_every_subset_in_every_order(name, k):
    strategy, p = STRATEGIES[name]
    draws = math.perm(len(TINY), k)
    estimate = subset_mean(TINY, k, value_of(strategy), draws=draws, rng=random.Random(1))
    assert estimate == pytest.approx(float(exact(TINY, k, p)), abs=1e-12)


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("k", range(2, len(TINY)))
def test_every_subset_in_random_orders_is_within_five_standard_errors(name, k):
    """Draws between C(n, k) and n!/(n-k)!: every subset, each in r = draws // C(n, k) random
    orders. The estimate is the mean over subsets S of the mean of r Bernoulli(p_S), unbiased
    with variance sum_S p_S(1 - p_S) / (r C(n, k)^2); 5 standard errors fail a correct
    estimator with probability < 1e-6 (and the seed is fixed). Subsets without a tie have
    p_S in {0, 1}: with no tie at all the estimate must be exact."""
    strategy, p = STRATEGIES[name]
    n = len(TINY)
    subsets = math.comb(n, k)
    draws = min(3 * subsets, math.perm(n, k) - 1)
    orders = draws // subsets
    chances = per_subset(TINY, k, p)
    variance = sum(float(c * (1 - c)) for c in chances) / (orders * subsets**2)
    estimate = subset_mean(TINY, k, value_of(strategy), draws=draws, rng=random.Random(2))
    assert abs(estimate - float(exact(TINY, k, p))) <= 5 * math.sqrt(variance) + 1e-12


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("k", [6, 10])
def test_random_subsets_are_within_five_standard_errors(name, k):
    """C(16, k) = 8008 > draws: the mean of ``draws`` independent uniformly random ordered
    k-subsets, each valued 0/1 with P(1) = the exact value p, so the standard error is
    sqrt(p(1-p)/draws) (at most 0.0071 here); 5 of them bound a correct estimator's error
    but for a chance < 1e-6 (and the seed is fixed)."""
    strategy, p = STRATEGIES[name]
    draws = 5000
    assert math.comb(len(LARGE), k) > draws
    truth = float(exact(LARGE, k, p))
    estimate = subset_mean(LARGE, k, value_of(strategy), draws=draws, rng=random.Random(3))
    assert abs(estimate - truth) <= 5 * math.sqrt(truth * (1 - truth) / draws)


def test_best_of_n_by_summed_scores_with_no_answer_to_vote_for_chooses_none():
    """A subset of unanswered samples (e.g. all cut at max_tokens) used to crash the sweep."""
    samples = pool_of((None, 0.5), (None, 0.25))
    assert BestOfN(n=2, aggregate="sum").choose(samples).answer is None
    assert majority(samples).answer is None


# -- subsets are drawn without replacement ---------------------------------------------------


class Token:
    """A pool element distinct from every other (compared by identity)."""

    def __init__(self, index: int) -> None:
        self.index = index


def recorder(pool: list[Token], k: int):
    seen: list[tuple[int, ...]] = []

    def value(subset: list[Token]) -> float:
        assert len(subset) == k
        assert len({id(t) for t in subset}) == k, "an element drawn twice in one subset"
        assert all(any(t is member for member in pool) for t in subset)
        seen.append(tuple(t.index for t in subset))
        return float(subset[0].index)

    return value, seen


def test_enumerated_subsets_are_every_ordered_subset_once():
    pool = [Token(i) for i in range(5)]
    value, seen = recorder(pool, 3)
    mean_first = subset_mean(pool, 3, value, draws=math.perm(5, 3), rng=random.Random(0))
    assert Counter(seen) == Counter(itertools.permutations(range(5), 3))
    assert mean_first == pytest.approx(2.0)  # the first element is uniform over the pool


def test_every_subset_gets_the_same_number_of_random_orders():
    pool = [Token(i) for i in range(6)]
    value, seen = recorder(pool, 3)
    subset_mean(pool, 3, value, draws=50, rng=random.Random(0))  # C(6, 3) = 20: 2 orders each
    assert Counter(frozenset(s) for s in seen) == {frozenset(c): 2 for c in itertools.combinations(range(6), 3)}
    assert len(set(seen)) > 20  # orders are shuffled, not each subset in pool order twice


def test_random_subsets_have_no_repeats_and_every_element_and_first_place_is_equally_likely():
    """C(20, 6) = 38760 > 3000 draws: independent random draws. Each
    element is in a draw with probability 6/20 and first in it with probability 1/20, so its
    counts are Binomial(3000, .) (SD 25.1 and 11.9); all 20 counts within 5 SD of the mean."""
    n, k, draws = 20, 6, 3000
    pool = [Token(i) for i in range(n)]
    value, seen = recorder(pool, k)
    subset_mean(pool, k, value, draws=draws, rng=random.Random(4))
    assert len(seen) == draws
    inclusion = Counter(i for subset in seen for i in subset)
    first = Counter(subset[0] for subset in seen)
    for counts, chance in ((inclusion, k / n), (first, 1 / n)):
        sd = math.sqrt(draws * chance * (1 - chance))
        assert all(abs(counts[i] - draws * chance) <= 5 * sd for i in range(n)), counts


# -- bootstrap intervals ------------------------------------------------------------------------


def bernoulli_datasets(p: float, size: int, count: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((count, size)) < p).astype(float)


def test_bootstrap_95_percent_intervals_cover_the_true_accuracy_95_percent_of_the_time():
    """400 datasets of 200 Bernoulli(0.3) problems. If an interval covers p with probability
    0.95, the number covering is Binomial(400, 0.95): mean 380, SD 4.4; 3 SD is 367..393
    (0.917..0.983). The percentile bootstrap of a mean of 200 is known to undercover a
    little (like the Wald interval, about 0.94 here), so the lower bound gets one SD more:
    0.91..0.98. A 90% interval (mean 360) or a much narrower one fails it."""
    p, size = 0.3, 200
    data = bernoulli_datasets(p, size, 400, seed=2024)
    intervals = [bootstrap_ci(row.tolist(), seed=i) for i, row in enumerate(data)]
    covered = sum(low <= p <= high for low, high in intervals) / len(intervals)
    assert 0.91 <= covered <= 0.98
    # Size: the normal-theory width 2·1.96·sqrt(p(1-p)/n) = 0.127. Each interval's width over
    # its own plug-in width 2·1.96·sqrt(p̂(1-p̂)/n) has SD ≈ 3.5% (percentile noise of 1000
    # resamples and the 1/200 steps of the mean): within 5 SD, 17%. The mean width over 400
    # datasets has SE ≈ 0.25%: within 3% of the theory (the bootstrap's known small-sample
    # shrink, sqrt((n-1)/n) and skew, is about 1%), so a 90% interval (16% narrower) fails.
    widths = np.array([high - low for low, high in intervals])
    means = data.mean(axis=1)
    plug_in = 2 * 1.96 * np.sqrt(means * (1 - means) / size)
    assert np.all(np.abs(widths / plug_in - 1) <= 0.17)
    assert widths.mean() == pytest.approx(2 * 1.96 * math.sqrt(p * (1 - p) / size), rel=0.03)
    for (low, high), mean in zip(intervals, means):
        assert low <= mean <= high


@pytest.mark.parametrize(("level", "z"), [(0.8, 1.2816), (0.99, 2.5758)])
def test_bootstrap_width_follows_the_level(level, z):
    """The same size check at other levels, 100 datasets of 200 Bernoulli(0.6): mean width
    within 4% of 2·z·sqrt(p(1-p)/n) (SE of the mean ≈ 0.5%; the 99% interval rests on the
    5 most extreme of 1000 resampled means, hence the slack)."""
    p, size = 0.6, 200
    data = bernoulli_datasets(p, size, 100, seed=7)
    widths = [high - low for low, high in (bootstrap_ci(row.tolist(), level=level, seed=i) for i, row in enumerate(data))]
    assert float(np.mean(widths)) == pytest.approx(2 * z * math.sqrt(p * (1 - p) / size), rel=0.04)


def test_bootstrap_is_reproducible_by_seed():
    values = bernoulli_datasets(0.5, 50, 1, seed=1)[0].tolist()
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


# -- the coverage fit and coverage@k ----------------------------------------------------------


def reference_fit(ks, coverage) -> tuple[float, float, float]:
    """Ordinary least squares by numpy on the points strictly inside (0, 1):
    log(-log c) = log(-a) + b log k; R² = 1 - SS_res / SS_tot."""
    inside = [(k, c) for k, c in zip(ks, coverage) if 0 < c < 1]
    x = np.log([k for k, _ in inside])
    y = np.log(-np.log([c for _, c in inside]))
    design = np.column_stack([np.ones_like(x), x])
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ np.array([intercept, slope])
    r2 = 1 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
    return -math.exp(intercept), float(slope), r2


def test_fit_coverage_equals_numpys_least_squares_on_noisy_data():
    a, b, sigma = -1.3, -0.55, 0.08
    ks = list(range(1, 65))
    noise = np.random.default_rng(11).normal(0, sigma, len(ks))
    coverage = [math.exp(-math.exp(math.log(-a) + b * math.log(k) + e)) for k, e in zip(ks, noise)]
    # Points at 0 or 1 (a saturated k, an unsolved one) carry no log(-log) value: left out.
    ks_all, coverage_all = ks + [128, 256], coverage + [1.0, 0.0]
    fit = fit_coverage(ks_all, coverage_all)
    ref_a, ref_b, ref_r2 = reference_fit(ks_all, coverage_all)
    assert fit.points == len(ks)
    assert (fit.a, fit.b, fit.r2) == pytest.approx((ref_a, ref_b, ref_r2), rel=1e-9)
    assert 0.5 < fit.r2 < 1
    # The truth, within 5 standard errors of the slope, sigma / sqrt(Sxx), and of the intercept.
    x = np.log(ks)
    sxx = float(((x - x.mean()) ** 2).sum())
    assert abs(fit.b - b) <= 5 * sigma / math.sqrt(sxx)
    se_intercept = sigma * math.sqrt(1 / len(ks) + x.mean() ** 2 / sxx)
    assert abs(math.log(-fit.a) - math.log(-a)) <= 5 * se_intercept


@pytest.mark.parametrize(("a", "b"), [(-0.4, -0.3), (-2.5, -0.8), (-1.0, -0.05)])
def test_fit_coverage_recovers_the_law_from_noise_free_points(a, b):
    ks = [1, 2, 4, 8, 16, 32]
    fit = fit_coverage(ks, [math.exp(a * k**b) for k in ks])
    assert (fit.a, fit.b, fit.r2) == pytest.approx((a, b, 1.0), rel=1e-9)
    assert fit(3) == pytest.approx(math.exp(a * 3**b), rel=1e-9)


def test_coverage_curve_equals_enumerating_every_subset():
    """Coverage@k of problems with n samples, c of them right: the share of k-subsets with a
    right sample, averaged over the problems with at least k samples (none: NaN)."""
    problems = [(6, 2), (4, 1), (5, 0), (3, 3), (2, 1), (6, 5)]
    ks = list(range(1, 8))
    curve = coverage_curve(problems, ks)
    for k, got in zip(ks, curve):
        shares = []
        for n, c in problems:
            if n >= k:
                subsets = list(itertools.combinations([True] * c + [False] * (n - c), k))
                shares.append(Fraction(sum(any(s) for s in subsets), len(subsets)))
        if shares:
            assert got == pytest.approx(float(sum(shares) / len(shares)), abs=1e-12)
        else:
            assert math.isnan(got)


# -- the generation cache's key covers every sampling parameter ---------------------------

QUESTION = (Message("user", "What is 2+2?"),)
BASE = {"messages": QUESTION, "max_tokens": 50, "seed": 7}
HALF_DONE = (Message("user", "What is 2+2?"), Message("assistant", "Let me see"))
# parameter -> (the first request's fields, the second's): two requests that differ in it alone.
DIFFERING: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "messages": (BASE, {**BASE, "messages": (Message("user", "What is 2+3?"),)}),
    "messages (role)": (BASE, {**BASE, "messages": (Message("system", "What is 2+2?"),)}),
    "prompt": ({**BASE, "messages": None, "prompt": "What is 2+2?"}, {**BASE, "messages": None, "prompt": "What is 2+3?"}),
    "prompt (vs messages)": (BASE, {**BASE, "messages": None, "prompt": "What is 2+2?"}),
    "prompt_token_ids": ({**BASE, "messages": None, "prompt_token_ids": (1, 2, 3)},
                         {**BASE, "messages": None, "prompt_token_ids": (1, 2, 4)}),
    "max_tokens": (BASE, {**BASE, "max_tokens": 51}),
    "temperature": (BASE, {**BASE, "temperature": 0.8}),
    "top_p": (BASE, {**BASE, "top_p": 0.95}),
    "stop": (BASE, {**BASE, "stop": ("\n",)}),
    "seed": (BASE, {**BASE, "seed": 8}),
    "seed (none)": (BASE, {**BASE, "seed": None}),
    "logprobs": (BASE, {**BASE, "logprobs": True}),
    "continue_final_message": ({**BASE, "messages": HALF_DONE}, {**BASE, "messages": HALF_DONE, "continue_final_message": True}),
    "include_stop": ({**BASE, "stop": ("step",)}, {**BASE, "stop": ("step",), "include_stop": True}),
    "top_logprobs": (BASE, {**BASE, "top_logprobs": 20}),
    "confidence_stop": ({**BASE, "confidence_stop": ConfidenceStop(0.5, 8)},
                        {**BASE, "confidence_stop": ConfidenceStop(0.6, 8)}),
    "score": ({**BASE, "score": "It is 4."}, {**BASE, "score": "It is 5."}),
}


def counting_backend(name: str = "scripted") -> Scripted:
    """A real backend whose i-th sample says i, so a repeat from the cache is visible."""
    return Scripted(responder=lambda request, i: f"step {i}: \\boxed{{{i}}}", name=name, prefix_cache=False)


def generate(backend, request: GenerationRequest):
    return asyncio.run(backend.generate(request))


def test_every_request_field_has_a_cache_key_test():
    """A field added to GenerationRequest must get a case above (n is left out of the key on
    purpose: a bigger n reuses the stored samples, see test_sweep's cache tests)."""
    tested = {name.split(" (")[0] for name in DIFFERING}
    # stop_early is left out too: such a request bypasses the cache (the test below); so is
    # affinity, a routing hint that must not change the key (tests/test_replicas.py).
    assert {f.name for f in dataclasses.fields(GenerationRequest)} - {"n", "stop_early", "affinity"} == tested


def test_a_request_that_stops_early_is_neither_served_from_nor_stored_in_the_cache(tmp_path):
    inner = counting_backend()
    cached = CachedBackend(inner, tmp_path / "gen.sqlite")
    plain = GenerationRequest(**BASE, n=4)
    generate(cached, plain)
    early = plain.replace(stop_early=lambda finished: len(finished) >= 1)
    response = generate(cached, early)
    assert len(inner.requests) == 2 and response.info["cache"].startswith("bypassed")
    # Lockstep decoding, all four the same length: they finish together, nothing to cancel.
    assert [c.text for c in response.completions] == [f"step {i}: \\boxed{{{i}}}" for i in range(4, 8)]
    assert generate(cached, plain.replace(n=8)).completions[4].text == "step 8: \\boxed{8}"  # rows 4-7 are new


@pytest.mark.parametrize("parameter", DIFFERING)
def test_requests_differing_in_one_parameter_do_not_share_a_cache_entry(tmp_path, parameter):
    first, second = (GenerationRequest(**fields) for fields in DIFFERING[parameter])
    inner = counting_backend()
    cached = CachedBackend(inner, tmp_path / "gen.sqlite")
    stored = generate(cached, first)
    assert generate(cached, first).completions[0].text == stored.completions[0].text  # served from disk
    assert len(inner.requests) == 1
    other = generate(cached, second)
    assert len(inner.requests) == 2, f"{parameter}: the second request was served the first one's sample"
    assert other.completions[0].text != stored.completions[0].text
    assert generate(cached, second).completions[0].text == other.completions[0].text  # its own entry
    assert len(inner.requests) == 2


def test_backends_of_different_models_do_not_share_a_cache_file_entry(tmp_path):
    path = tmp_path / "gen.sqlite"
    request = GenerationRequest(**BASE)
    one, other, same = counting_backend("model-a"), counting_backend("model-b"), counting_backend("model-a")
    text = generate(CachedBackend(one, path), request).completions[0].text
    generate(CachedBackend(other, path), request)
    assert len(other.requests) == 1
    assert generate(CachedBackend(same, path), request).completions[0].text == text  # the same model reuses it
    assert same.requests == []


def test_backend_options_that_change_sampling_are_in_the_key(tmp_path):
    """``extra`` (merged into every request body, e.g. top_k) changes what is sampled: an
    OpenAI-compatible backend with other extras must not be served another's samples."""
    from reasoning.benchmarks.stub_server import StubServer

    from reasoning.backends.openai_compat import OpenAICompatible

    path = tmp_path / "gen.sqlite"
    request = GenerationRequest(**BASE)

    def ask(server: StubServer, extra: dict[str, Any] | None) -> None:
        backend = OpenAICompatible("stub-model", server.base_url, extra=extra, backoff=0.001)
        cached = CachedBackend(backend, path)

        async def once() -> None:
            try:
                await cached.generate(request)
            finally:
                await backend.aclose()

        asyncio.run(once())

    with StubServer() as server:
        for extra, calls in ((None, 1), ({"top_k": 20}, 2), ({"top_k": 40}, 3), ({"top_k": 20}, 3), ({}, 3)):
            ask(server, extra)
            assert server.count == calls, extra
    assert server.requests[1].body["top_k"] == 20 and server.requests[2].body["top_k"] == 40


def test_keys_of_backends_without_options_are_unchanged():
    """Cache files written before the key knew backend options stay readable: the key of a
    backend without them is its name's, as it always was (hashes pinned from that version)."""
    from reasoning.backends.openai_compat import OpenAICompatible

    request = GenerationRequest(**BASE)
    assert request_key(model_identity(counting_backend()), request) == \
        "f79310b579dd3572179c5ce1ad89050013ca4fca41cdc8c92b845dfaf0239eb5"
    plain = OpenAICompatible("stub-model", "http://127.0.0.1:9/v1")  # built, never called
    assert request_key(model_identity(plain), request) == \
        "893057c83892c64ffe9a6794ed5e73582418e2bcd71753045a7b0aca95ba71c2"


# -- tiny sweeps read sensibly ------------------------------------------------------------------

PLAIN_NUMBER = re.compile(r"^\d[\d,]*(\.\d+)?$")


def tick_labels(fig, ax) -> dict[float, str]:
    """The labelled major x ticks inside the view, after drawing: position -> text."""
    fig.canvas.draw()
    low, high = ax.get_xlim()
    return {tick: label.get_text() for tick, label in zip(ax.get_xticks(), ax.get_xticklabels())
            if low <= tick <= high and label.get_text()}


def assert_ticks_read_as_the_points(fig, ax, xs: list[float]) -> None:
    labels = tick_labels(fig, ax)
    assert all(PLAIN_NUMBER.match(text) for text in labels.values()), labels
    assert not any(text for text in (t.get_text() for t in ax.get_xticklabels(minor=True))), "minor labels"
    for x in xs:  # every point has a tick, labelled with its value
        assert any(tick == pytest.approx(x) and float(text.replace(",", "")) == pytest.approx(x, rel=0.01)
                   for tick, text in labels.items()), (x, labels)


def test_a_two_point_sweep_plots_readable_ticks_and_says_it_is_too_small_to_fit(tmp_path):
    import matplotlib.pyplot as plt
    from reasoning.benchmarks.cli import main
    from reasoning.benchmarks.report import figures, load
    from reasoning.benchmarks.sweep import x_value

    out = tmp_path / "tiny"
    for axis in ("tokens", "n"):
        assert main(["sweep", "--dataset", "gsm8k", "--limit", "2", "--strategy", "self-consistency", "--n", "1,2",
                     "--backend", "scripted:18,3", "--x-axis", axis, "--out", str(out / axis)]) == 0
        config, rows, coverage = load(out / axis)
        assert len(rows) == 2 and not any(r["saturation_point"] for r in rows)
        report = (out / axis / "report.html").read_text()
        assert "no fit: too few points" in report and "◉" not in report
        made = figures(out / axis, config, rows, coverage)
        try:
            (acc_fig, acc_ax, acc_path), (cov_fig, cov_ax, cov_path) = made
            assert acc_path.name == "accuracy_gsm8k.png" and cov_path.name == "coverage_gsm8k.png"
            assert_ticks_read_as_the_points(acc_fig, acc_ax, [x_value(r, axis) for r in rows])
            assert_ticks_read_as_the_points(cov_fig, cov_ax, [1, 2])
        finally:
            for fig, _, _ in made:
                plt.close(fig)


@pytest.mark.parametrize("xs", [[1, 2, 4], [200, 450, 900], [212.5, 418.0], [0.0012, 0.0031, 0.0077], [1, 2, 4, 8, 16, 32, 64]])
def test_a_narrow_log_axis_is_ticked_at_its_points_in_plain_numbers(xs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from reasoning.benchmarks.report import log_x_axis

    fig, ax = plt.subplots()
    try:
        ax.plot(xs, [0.5] * len(xs), marker="o")
        log_x_axis(ax, xs)
        assert ax.get_xscale() == "log"
        assert_ticks_read_as_the_points(fig, ax, xs)
    finally:
        plt.close(fig)


def test_many_close_points_get_few_ticks_and_a_wide_sweep_keeps_powers_of_ten():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from reasoning.benchmarks.report import MAX_POINT_TICKS, log_x_axis

    close = [200 + 7 * i for i in range(40)] + [900]
    wide = [1e3, 1e4, 1e5, 1e6]
    fig, (left, right) = plt.subplots(1, 2)
    try:
        log_x_axis(left, close)
        left.plot(close, [0.5] * len(close))
        log_x_axis(right, wide)
        right.plot(wide, [0.5] * len(wide))
        labels = tick_labels(fig, left)
        assert 2 <= len(labels) <= MAX_POINT_TICKS and all(PLAIN_NUMBER.match(t) for t in labels.values())
        assert {min(labels), max(labels)} == {200, 900}
        decades = tick_labels(fig, right)  # matplotlib's own ticks and labels, as before
        assert set(decades) == set(wide) and all("10^{" in text for text in decades.values())
    finally:
        plt.close(fig)


def test_report_plots_write_the_figures_they_draw(tmp_path):
    """plot() saves what figures() draws (one PNG per figure)."""
    from reasoning.benchmarks.report import plot
    from reasoning.benchmarks.sweep import SweepConfig

    config = SweepConfig(datasets=["gsm8k"], strategies=[{"name": "self-consistency"}], n=[1, 2], out=str(tmp_path))
    rows = [{"dataset": "gsm8k", "strategy": "self-consistency", "accuracy": a, "ci95": [a - 0.1, a + 0.1],
             "usage": {"tokens": t}, "saturation_point": False} for a, t in ((0.4, 300.0), (0.6, 600.0))]
    coverage = {"gsm8k": {"self-consistency": {"k": [1, 2], "coverage": [0.4, 0.7], "problems": 2, "fit": None}}}
    written = plot(Path(tmp_path), config, rows, coverage)
    assert [p.name for p in written] == ["accuracy_gsm8k.png", "coverage_gsm8k.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
