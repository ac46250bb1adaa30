"""Early-stop self-consistency on the Scripted backend: waves, the two stopping rules, max_n,
budget refusal, DeepConf-style filtering, and in flight (one request, the rest aborted)."""

import asyncio
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.strategies import SelfConsistency, create
from reasoning.strategies.early_stop_sc import EarlyStopSC, leader_is_safe, lowest_group_confidence, p_leader_ahead


def solve(strategy, backend, budget=None, **kw):
    return asyncio.run(rz.asolve("What is 6*7?", strategy, backend, budget, **kw))


def boxed(answer):
    return "no idea" if answer is None else f"so \\boxed{{{answer}}}"


def scripted(answers, **kw):
    """One scripted sample per entry of ``answers``, in order (None: a sample with no answer)."""
    return Scripted(responder=lambda request, index: boxed(answers[index % len(answers)]), **kw)


def test_unanimous_first_wave_stops_on_the_beta_rule():
    backend = Scripted(["7"])
    result = solve(EarlyStopSC(in_flight=False, max_n=16, wave=4), backend)
    assert result.answer == "7"
    assert [r.n for r in backend.requests] == [4]
    # 4 of 4 agree: P(p1 > p2) = 1 - 1/2^5 = 0.96875 >= 0.95, while 12 more samples could still overturn it.
    assert result.info["stop"] == "confident" and result.info["n"] == 4 and result.info["waves"] == 1
    assert result.info["p_leader"] == pytest.approx(1 - 1 / 32)


def test_beta_rule_stops_after_the_wave_that_crosses_the_threshold():
    backend = scripted(["7", "7", "7", "8", "7", "7", "7", "7"] + ["9"] * 40)
    result = solve(EarlyStopSC(in_flight=False, max_n=40, wave=4, confidence=0.95), backend)
    history = result.info["history"]
    assert history[0]["p_leader"] == pytest.approx(26 / 32)  # 3 vs 1: below 0.95, keep sampling
    assert history[1]["p_leader"] == pytest.approx(1 - 10 / 512)  # 7 vs 1: above
    assert result.info["stop"] == "confident" and result.info["waves"] == 2 and result.info["n"] == 8
    assert result.answer == "7" and len(backend.requests) == 2


def test_exact_rule_stops_as_soon_as_the_leader_cannot_be_overtaken():
    # After 4 samples A leads 4-0 with 4 left: the best a challenger can do is tie, and ties
    # go to the answer seen first, so all 8 would still vote A.
    backend = scripted(["A", "A", "A", "A", "B", "B", "B", "B"])
    result = solve(EarlyStopSC(in_flight=False, max_n=8, wave=2, confidence=None), backend)
    assert result.info["stop"] == "decided" and result.info["waves"] == 2 and result.info["n"] == 4
    assert result.answer == "A"
    assert solve(SelfConsistency(n=8), scripted(["A", "A", "A", "A", "B", "B", "B", "B"])).answer == "A"


def test_leader_rule_is_exact_about_ties_and_unseen_answers():
    assert leader_is_safe({"a": 3.0, "b": 1.0}, 2)  # b can reach 3: a tie, and a was first
    assert not leader_is_safe({"b": 1.0, "a": 3.0}, 2)  # b was first: a tie would go to b
    assert not leader_is_safe({"a": 3.0, "b": 1.0}, 3)  # b can reach 4
    assert leader_is_safe({"a": 2.0}, 2) and not leader_is_safe({"a": 2.0}, 3)  # an unseen answer
    assert not leader_is_safe({}, 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answers=st.lists(st.sampled_from(["1", "2", "3", None]), min_size=1, max_size=12),
    wave=st.integers(1, 5),
)
@example(answers=["1", "2", "2"], wave=1)  # an answer not seen yet can still win
@example(answers=["2", "1", "1", "2", "1"], wave=2)  # a tie would go to the answer seen first
def test_exact_rule_never_changes_the_answer_of_all_max_n_samples(answers, wave):
    max_n = len(answers)
    wave = min(wave, max_n)
    backend = scripted(answers)
    early = solve(EarlyStopSC(in_flight=False, max_n=max_n, wave=wave, confidence=None), backend)
    full = solve(SelfConsistency(n=max_n), scripted(answers))
    assert early.answer == full.answer
    assert early.info["n"] <= max_n and sum(r.n for r in backend.requests) == early.info["n"]
    assert all(r.n <= wave for r in backend.requests)


def test_never_more_than_max_n_and_the_last_wave_is_cut_to_fit():
    backend = scripted([str(i) for i in range(100)])  # all different: nothing is ever decided early
    result = solve(EarlyStopSC(in_flight=False, max_n=10, wave=4), backend)
    assert [r.n for r in backend.requests] == [4, 4, 2]
    assert result.info["n"] == 10 and result.info["stop"] == "max_n" and result.info["waves"] == 3
    assert result.answer == "0"  # all tied: the first seen


def test_beta_probability_matches_numerical_integration():
    def integral(a, b, steps=20000):  # P(Beta(a, b) > 1/2), midpoint rule
        norm = math.gamma(a + b) / (math.gamma(a) * math.gamma(b))
        h = 0.5 / steps
        return sum(norm * (x := 0.5 + (i + 0.5) * h) ** (a - 1) * (1 - x) ** (b - 1) for i in range(steps)) * h

    for v1, v2 in [(1, 0), (3, 1), (5, 2), (6, 6), (10, 3)]:
        # Other answers (z, no more votes than the runner-up) do not change it.
        assert p_leader_ahead({"y": v2, "x": v1, "z": min(1, v2)}) == pytest.approx(integral(v1 + 1, v2 + 1), abs=1e-6)
    assert p_leader_ahead({}) == 0.0


def test_budget_refusal_keeps_the_votes_so_far():
    backend = scripted(["1", "2", "2", "3"] * 4)
    budget = rz.Budget(completion_tokens=4 * 20 + 10)  # one wave of 4 x 20 tokens, then not one more sample
    result = solve(EarlyStopSC(in_flight=False, max_n=16, wave=4, max_tokens=20), backend, budget)
    assert result.info["stop"] == "budget" and result.info["n"] == 4 and result.info["waves"] == 1
    assert result.answer == "2" and result.stopped_by == "completion_tokens"
    assert result.usage.completion_tokens <= 90


class ConfidenceScripted(Scripted):
    """Token logprobs chosen per answer: ``dips[answer]`` is put in the middle of the trace."""

    def __init__(self, answers, dips, **kw):
        super().__init__(responder=lambda r, i: boxed(answers[i % len(answers)]), completion_tokens=100, **kw)
        self.dips = dips

    async def generate(self, request):
        response = await super().generate(request)
        for c in response.completions:
            if request.logprobs:
                dip = next((v for k, v in self.dips.items() if f"{{{k}}}" in c.text), -0.1)
                c.token_logprobs = [-0.1] * 40 + [dip] * 10 + [-0.1] * (c.completion_tokens - 50)
        return response


def test_lowest_group_confidence_is_the_worst_sliding_window():
    trace = [-0.1] * 40 + [-2.0] * 10 + [-0.1] * 50
    assert lowest_group_confidence(trace, 10) == pytest.approx(-2.0)
    assert lowest_group_confidence(trace, 20) == pytest.approx((10 * -2.0 + 10 * -0.1) / 20)
    assert lowest_group_confidence(trace, 1000) == pytest.approx(sum(trace) / len(trace))


def test_drop_low_confidence_removes_the_least_confident_traces_before_voting():
    answers = ["9", "9", "9", "5", "5", "5"]
    plain = solve(EarlyStopSC(in_flight=False, max_n=6, wave=6), ConfidenceScripted(answers, {"9": -3.0}))
    assert plain.answer == "9"  # a 3-3 tie goes to the first seen
    backend = ConfidenceScripted(answers, {"9": -3.0})
    result = solve(EarlyStopSC(in_flight=False, max_n=6, wave=6, drop_low_confidence=0.5, window=8, confidence_weighted=False), backend)
    assert backend.requests[0].logprobs is True
    assert result.answer == "5" and result.info["dropped"] == 3
    assert result.info["votes"] == {"5": 3.0}
    assert [c < -1 for c in result.info["confidences"]] == [True, True, True, False, False, False]
    # Weighted (the default): each kept trace votes exp(its lowest window mean), here exp(-0.1).
    weighted = solve(EarlyStopSC(in_flight=False, max_n=6, wave=6, drop_low_confidence=0.5, window=8),
                     ConfidenceScripted(answers, {"9": -3.0}))
    assert weighted.info["weights"] == pytest.approx([math.exp(-0.1)] * 3)
    assert weighted.info["votes"] == {"5": pytest.approx(3 * math.exp(-0.1))}


def test_filtering_is_skipped_without_logprobs():
    backend = scripted(["1", "2", "1", "1"], logprobs=False)
    result = solve(EarlyStopSC(in_flight=False, max_n=4, wave=4, drop_low_confidence=0.5), backend)
    assert backend.requests[0].logprobs is False
    assert result.answer == "1" and "not filtered" in result.info["dropped"]


def test_options_are_validated_and_settable_by_name():
    assert isinstance(create("early-stop-sc", max_n=8, wave=2, confidence=None), EarlyStopSC)
    for bad in [{"max_n": 0}, {"wave": 0}, {"confidence": 1.0}, {"confidence": 0.5},
                {"drop_low_confidence": 1.0}, {"window": 0}]:
        with pytest.raises(ValueError):
            EarlyStopSC(**bad)
    with pytest.raises(rz.ConfigError, match="wave must be"):
        create("early-stop-sc", max_n=2, wave=0)
    # A wave larger than max_n (e.g. `--n 2` with the default wave of 4) is one wave of max_n.
    assert create("early-stop-sc", n=2).wave == 2


def test_confidence_weighted_vote_among_the_kept_traces_can_overturn_the_count():
    # Three 9s that dip to -3.0 somewhere, two steady 5s, and one 7 that dips to -5.0.
    answers = ["9", "9", "9", "5", "5", "7"]
    dips = {"9": -3.0, "7": -5.0}
    options = {"max_n": 6, "wave": 6, "confidence": None, "drop_low_confidence": 1 / 6, "window": 10}
    counted = solve(EarlyStopSC(**options, confidence_weighted=False), ConfidenceScripted(answers, dips))
    assert counted.info["dropped"] == 1 and counted.answer == "9"  # the 7 is dropped; 9 wins 3 to 2
    weighted = solve(EarlyStopSC(**options), ConfidenceScripted(answers, dips))
    # exp(-3.0) x 3 = 0.149 against exp(-0.1) x 2 = 1.810: the confident 5s win.
    assert weighted.answer == "5"
    assert weighted.info["votes"] == {"9": pytest.approx(3 * math.exp(-3.0)), "5": pytest.approx(2 * math.exp(-0.1))}
    assert weighted.info["p_leader"] == pytest.approx(p_leader_ahead({"9": 3.0, "5": 2.0}))  # counts, not weights


def test_deepconf_offline_settings_one_wave_keep_the_most_confident_tenth():
    strategy = EarlyStopSC(in_flight=False, max_n=10, wave=10, confidence=None, drop_low_confidence=0.9)
    assert strategy.window == 2048 and strategy.confidence_weighted  # DeepConf's window and weighted vote
    answers = ["1", "1", "1", "1", "1", "1", "1", "1", "1", "2"]
    backend = ConfidenceScripted(answers, {"1": -2.0, "2": -0.2})
    result = solve(strategy, backend)
    assert [r.n for r in backend.requests] == [10] and backend.requests[0].logprobs is True
    assert result.info["dropped"] == 9 and result.answer == "2"  # the one most confident trace decides
    # 100-token traces are shorter than the 2,048 window: each confidence is the whole trace's mean.
    assert result.info["confidences"][0] == pytest.approx((90 * -0.1 + 10 * -2.0) / 100)
    assert result.info["confidences"][-1] == pytest.approx((90 * -0.1 + 10 * -0.2) / 100)


# -- in flight: one request of max_n, the rules checked as each sample finishes -------------


def by_length(spec, **kw):
    """Sample i answers spec[i][0] (None: no answer) in spec[i][1] tokens; Scripted decodes
    them in lockstep, so they finish shortest first (ties in index order)."""

    def responder(request, index):  # the sample's index in letters: no number for the extractor to read
        return f"{boxed(spec[index % len(spec)][0])} #{chr(ord('a') + index % len(spec))}"

    return Scripted(responder=responder, completion_tokens=lambda text: spec[ord(text[-1]) - ord("a")][1], **kw)


def first_rule(spec, max_n, confidence):
    """The stopping rules over the samples in finishing order, each unfinished sample counted
    as a vote still to come: (rule, how many had finished) or None."""
    order = sorted(range(len(spec)), key=lambda i: (spec[i][1], i))
    for k in range(1, max_n):
        tally = {}
        for i in order[:k]:
            if spec[i][0] is not None:
                tally[spec[i][0]] = tally.get(spec[i][0], 0.0) + 1.0
        if leader_is_safe(tally, max_n - k, ties_to_first=False):
            return "decided", k
        if confidence is not None and tally and p_leader_ahead(tally) >= confidence:
            return "confident", k
    return None


# Finishing order A A B A A A B B (by length); index order B A A B A A A B.
IN_FLIGHT = [("B", 70), ("A", 10), ("A", 20), ("B", 30), ("A", 40), ("A", 50), ("A", 60), ("B", 80)]


def test_in_flight_is_one_request_that_stops_once_the_leader_is_safe():
    backend = by_length(IN_FLIGHT)
    result = solve(EarlyStopSC(max_n=8, confidence=None), backend)
    assert len(backend.requests) == 1 and backend.requests[0].n == 8 and backend.requests[0].stop_early is not None
    # After 5: A 4, B 1 with 3 to come: B could tie at 4, and a tie is not safe in flight.
    # After 6: A 5, B 1 with 2 to come: decided at step 60; the 70- and 80-token Bs are aborted there.
    assert first_rule(IN_FLIGHT, 8, None) == ("decided", 6)
    info = result.info
    assert info["in_flight"] and info["stop"] == "decided" and info["n"] == 6 and info["waves"] == 6
    assert [row["n"] for row in info["history"]] == [1, 2, 3, 4, 5, 6]
    assert info["history"][-1]["votes"] == {"A": 5.0, "B": 1.0}
    assert info["cancelled"] == 2 and info["cancelled_tokens"] == 2 * 60
    assert result.answer == "A" and info["votes"] == {"A": 5.0, "B": 1.0}  # the aborted Bs do not vote
    assert result.usage.completion_tokens == 10 + 20 + 30 + 40 + 50 + 60 + 2 * 60
    # waves of 4 decide nothing before all 8 (A 2 : B 2 after the first): every token is spent
    waves = solve(EarlyStopSC(in_flight=False, max_n=8, wave=4, confidence=None), by_length(IN_FLIGHT))
    assert waves.info["stop"] == "max_n" and waves.usage.completion_tokens == 360 > result.usage.completion_tokens
    assert waves.answer == result.answer


def test_in_flight_beta_rule_counts_unfinished_samples_as_still_to_vote():
    spec = [("7", 10 * (i + 1)) for i in range(16)]
    backend = by_length(spec)
    result = solve(EarlyStopSC(max_n=16, confidence=0.95), backend)
    # 4 of 4: P = 1 - 1/32 >= 0.95, while 12 unfinished could still overturn the count
    assert first_rule(spec, 16, 0.95) == ("confident", 4)
    assert result.info["stop"] == "confident" and result.info["n"] == 4
    assert result.info["p_leader"] == pytest.approx(1 - 1 / 32)
    assert result.info["cancelled"] == 12 and result.info["cancelled_tokens"] == 12 * 40
    assert result.usage.completion_tokens == 10 + 20 + 30 + 40 + 12 * 40
    assert result.answer == "7"


def test_in_flight_a_tie_is_not_decided_since_samples_finish_out_of_order():
    # A finishes first, but B is sample 0: all of them vote B (a 1-1 tie goes to the first
    # sample). Taking "A, and 1 to come" as decided (a tie to the first seen) would answer A.
    spec = [("B", 20), ("A", 10)]
    result = solve(EarlyStopSC(max_n=2, confidence=None), by_length(spec))
    assert result.info["stop"] == "max_n" and result.info["cancelled"] == 0
    assert result.answer == solve(SelfConsistency(n=2), by_length(spec)).answer == "B"
    assert not leader_is_safe({"A": 1.0}, 1, ties_to_first=False) and leader_is_safe({"A": 1.0}, 1)
    assert not leader_is_safe({"A": 3.0, "B": 1.0}, 2, ties_to_first=False)
    assert leader_is_safe({"A": 3.0, "B": 1.0}, 1, ties_to_first=False)


def test_falls_back_to_waves_where_the_backend_cannot_abort():
    for backend, strategy in [(by_length(IN_FLIGHT, early_stop=False), EarlyStopSC(max_n=8, wave=4, confidence=None)),
                              (by_length(IN_FLIGHT), EarlyStopSC(in_flight=False, max_n=8, wave=4, confidence=None))]:
        result = solve(strategy, backend)
        assert [r.n for r in backend.requests] == [4, 4]
        assert all(r.stop_early is None for r in backend.requests)
        assert "in_flight" not in result.info and "cancelled" not in result.info
        assert result.info["stop"] == "max_n" and result.info["waves"] == 2 and result.answer == "A"


def test_in_flight_budget_refusal():
    result = solve(EarlyStopSC(max_n=8, max_tokens=20), by_length(IN_FLIGHT), rz.Budget(completion_tokens=0))
    assert result.info["stop"] == "budget" and result.info["n"] == 0 and result.answer is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.lists(st.tuples(st.sampled_from(["1", "2", "3", None]), st.integers(1, 40)), min_size=1, max_size=12))
@example(spec=[("2", 20), ("1", 10)])  # finishes out of order: a tie must not count as decided
@example(spec=[("1", 5), ("2", 5), ("2", 9), ("1", 1)])
def test_in_flight_decided_never_changes_the_answer_of_all_max_n_samples(spec):
    max_n = len(spec)
    backend = by_length(spec)
    early = solve(EarlyStopSC(max_n=max_n, confidence=None), backend)
    full = solve(SelfConsistency(n=max_n), by_length(spec))
    assert early.answer == full.answer
    info = early.info
    expected = first_rule(spec, max_n, None)
    assert info["stop"] == (expected[0] if expected else "max_n")
    assert info["waves"] == (expected[1] if expected else max_n)
    assert info["n"] + info["cancelled"] == max_n and len(backend.requests) == 1
    lengths = [length for _, length in spec]
    if expected:  # the rest stopped at the step the deciding sample finished
        order = sorted(range(max_n), key=lambda i: (spec[i][1], i))
        step = spec[order[expected[1] - 1]][1]
        assert early.usage.completion_tokens == sum(min(length, step) for length in lengths)
        assert info["cancelled"] == sum(length > step for length in lengths)
        assert info["cancelled_tokens"] == step * info["cancelled"]
    else:
        assert early.usage.completion_tokens == sum(lengths) and info["cancelled"] == 0
