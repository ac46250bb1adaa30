"""DeepConf (strategies/deepconf.py) on the Scripted backend: the warm-up threshold, the online
requests, who votes and with what weight, consensus aborts, offline filtering, refusals and the
info it reports. Semantics: the official code (facebookresearch/deepconf, deepconf/wrapper.py
``_deepthink_online`` / ``_perform_basic_voting``, utils.py ``compute_least_grouped``)."""

import asyncio
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.context import Sample
from reasoning.strategies import create
from reasoning.strategies.deepconf import DeepConf, group_confidences, lowest_group_confidence, percentile
from reasoning.strategies.voting import majority
from reasoning.types import ConfidenceStop

try:
    import numpy as np
except ImportError:  # the percentile is also checked against statistics.quantiles below
    np = None


def solve(strategy, backend, budget=None):
    return asyncio.run(rz.asolve("What is 6*7?", strategy, backend, budget))


def traces(spec, **kw):
    """Sample i answers spec[i][0] and has the token confidences spec[i][1] (one per token)."""

    def responder(request, index):
        return f"\\boxed{{{spec[index][0]}}} #{index} " + "w" * 200  # the answer first: a cut text shows it

    def tokens(text):
        return len(spec[int(text.split("#")[1].split()[0])][1])

    return Scripted(responder=responder, completion_tokens=tokens,
                    confidences=lambda text, index: spec[index][1], **kw)


def const(c, length=20):
    return [c] * length


DIP = [3.0] * 8 + [2.0] * 4 + [3.0] * 8  # mean 2.8, lowest 4-token group 2.0


# -- the helpers ----------------------------------------------------------------------------


def test_group_confidences_are_the_official_sliding_means():
    assert group_confidences([1.0, 2.0, 3.0, 6.0], 2) == [1.5, 2.5, 4.5]
    assert group_confidences([1.0, 2.0, 3.0], 5) == [2.0]  # shorter than the window: one group
    assert group_confidences([], 4) == [] and lowest_group_confidence([], 4) is None
    assert lowest_group_confidence(DIP, 4) == 2.0 and lowest_group_confidence(DIP, 100) == pytest.approx(2.8)


def test_percentile_by_hand():
    # sorted [1, 2, 3, 4]: the 90th percentile sits at rank 2.7, the 10th at 0.3
    assert percentile([1.0, 4.0, 2.0, 3.0], 90) == pytest.approx(3.7)
    assert percentile([1.0, 4.0, 2.0, 3.0], 10) == pytest.approx(1.3)
    assert percentile([1.0, 4.0, 2.0, 3.0], 0) == 1.0 and percentile([1.0, 4.0, 2.0, 3.0], 100) == 4.0
    assert percentile([5.0], 37) == 5.0
    with pytest.raises(ValueError):
        percentile([], 50)
    data = [0.3, 1.9, 0.7, 2.2, 1.1]
    deciles = statistics.quantiles(data, n=10, method="inclusive")
    assert [percentile(data, 10 * k) for k in range(1, 10)] == pytest.approx(deciles)


@pytest.mark.skipif(np is None, reason="numpy not installed")
@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=30), q=st.floats(0, 100))
def test_percentile_is_numpys_linear_percentile(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-9)


# -- online ---------------------------------------------------------------------------------

# Warm-up lowest group confidences [1, 4, 2, 3]: DeepConf-low (keep 10 %) sets the threshold at
# their 90th percentile, 3.7; DeepConf-high (keep 90 %) at their 10th, 1.3.
WARM = [("A", const(1.0)), ("B", const(4.0)), ("A", DIP), ("C", const(3.0))]
ONLINE = [("D", const(2.5)), ("B", const(4.0)), ("E", [4.0] * 10 + [0.5] * 10), ("B", const(3.9))]


@pytest.mark.parametrize(("keep", "threshold"), [(10, 3.7), (90, 1.3)])
def test_online_threshold_is_the_warmup_percentile_and_rides_on_the_online_request(keep, threshold):
    backend = traces(WARM + ONLINE)
    result = solve(DeepConf(n=8, warmup=4, window=4, keep_percent=keep), backend)
    assert result.info["threshold"] == pytest.approx(threshold)
    warm, online = backend.requests
    assert (warm.n, warm.top_logprobs, warm.confidence_stop) == (4, 20, None)
    assert (online.n, online.top_logprobs) == (4, 20)
    assert online.confidence_stop == ConfidenceStop(result.info["threshold"], 4, 20)


def test_top_k_reaches_both_requests_and_the_stop_rule():
    backend = traces(WARM + ONLINE)
    result = solve(DeepConf(n=8, warmup=4, window=4, top_k=5), backend)
    assert [r.top_logprobs for r in backend.requests] == [5, 5]
    assert backend.requests[1].confidence_stop == ConfidenceStop(result.info["threshold"], 4, 5)


def test_deepconf_low_and_high_stop_different_traces():
    low = solve(DeepConf(n=8, warmup=4, window=4, keep_percent=10), traces(WARM + ONLINE))
    high = solve(DeepConf(n=8, warmup=4, window=4, keep_percent=90), traces(WARM + ONLINE))
    # 3.7: the 2.5 trace stops at its first full window, the dipping one when the dip fills a
    # window's mean below 3.7 (4, 4, 4, 0.5: 3.125), and the 3.9 trace runs on
    assert low.info["stopped"] == [False] * 4 + [True, False, True, False]
    assert low.info["tokens"][4:] == [4, 20, 11, 20]
    # 1.3: only the dip's window of 0.5s goes below it (4, 0.5, 0.5, 0.5: 1.375, then 0.5)
    assert high.info["stopped"] == [False] * 4 + [False, False, True, False]
    assert high.info["tokens"][4:] == [20, 20, 14, 20]
    assert sum(low.info["tokens"]) < sum(high.info["tokens"])


def test_stopped_traces_and_warmup_below_the_threshold_do_not_vote():
    backend = traces(WARM + ONLINE)
    result = solve(DeepConf(n=8, warmup=4, window=4, keep_percent=10), backend)
    info = result.info
    # warm-up: only B (4.0 >= 3.7) votes; online: D and E were stopped, the two Bs ran to the end
    assert info["voters"] == 3
    assert info["votes"] == {"B": pytest.approx(4.0 + 4.0 + 3.9)}
    assert result.answer == "B"
    # stopped traces come back without an answer, though their cut text shows one
    assert info["answers"] == ["A", "B", "A", "C", None, "B", None, "B"]
    stopped = result.trace.calls()[1].completions
    assert [c["finish_reason"] for c in stopped] == ["confidence", "stop", "confidence", "stop"]
    assert "\\boxed{D}" in stopped[0]["text"] and "\\boxed{E}" in stopped[2]["text"]


def majority_of(answers):
    return majority([Sample("", a) for a in answers]).answer


def test_the_vote_is_weighted_by_lowest_group_confidence():
    # keep 100 %: the threshold is the lowest warm-up confidence (1.0), so everyone votes;
    # three As of confidence 1.0 against two Bs of 2.5: A by count, B by weight
    spec = [("A", const(1.0)), ("A", const(1.0)), ("B", const(2.5)), ("B", const(2.5)), ("A", const(1.0))]
    result = solve(DeepConf(n=5, warmup=3, window=4, keep_percent=100), traces(spec))
    assert result.info["threshold"] == 1.0 and result.info["stopped"] == [False] * 5  # 1.0 is not below 1.0
    assert result.info["votes"] == {"A": pytest.approx(3.0), "B": pytest.approx(5.0)}
    assert result.answer == "B" and majority_of(result.info["answers"]) == "A"
    assert result.info["share"] == pytest.approx(5.0 / 8.0)


def test_info_lines_up_one_entry_per_sample():
    backend = traces(WARM + ONLINE)
    result = solve(DeepConf(n=8, warmup=4, window=4, keep_percent=10), backend)
    info = result.info
    assert info["n"] == 8 and info["warmup"] == 4 and info["mode"] == "online" and info["cancelled"] == 0
    assert len(info["min_conf"]) == len(info["stopped"]) == len(info["tokens"]) == len(info["answers"]) == 8
    completions = [c for node in result.trace.calls() for c in node.completions]
    assert info["tokens"] == [c["completion_tokens"] for c in completions]
    assert info["stopped"] == [c["finish_reason"] == "confidence" for c in completions]
    # each trace's lowest group confidence, over what it decoded (a stopped trace: up to its stop)
    expected = [lowest_group_confidence(conf[: tokens], 4) for (_, conf), tokens in zip(WARM + ONLINE, info["tokens"])]
    assert info["min_conf"] == pytest.approx(expected)
    assert info["min_conf"][:4] == pytest.approx([1.0, 4.0, 2.0, 3.0])
    assert result.usage.completion_tokens == sum(info["tokens"])


def test_warmup_larger_than_n_is_clamped():
    assert DeepConf(n=3, warmup=16).warmup == 3
    assert create("deepconf", n=3).warmup == 3
    backend = traces([("A", const(2.0)), ("B", const(1.0)), ("A", const(3.0))])
    result = solve(DeepConf(n=3, warmup=16, window=4, keep_percent=50), backend)
    assert [r.n for r in backend.requests] == [3] and backend.requests[0].confidence_stop is None
    assert result.info["warmup"] == 3 and result.info["threshold"] == 2.0
    assert result.answer == "A" and result.info["votes"] == {"A": pytest.approx(5.0)}


def test_a_budget_that_refuses_the_online_call_keeps_the_warmup_vote():
    backend = traces(WARM + ONLINE)
    budget = rz.Budget(completion_tokens=4 * 20)  # the warm-up (4 x 20), then not one more token
    result = solve(DeepConf(n=8, warmup=4, window=4, keep_percent=10, max_tokens=20), backend, budget)
    assert len(backend.requests) == 1 and result.stopped_by == "completion_tokens"
    assert result.info["n"] == 4 and result.info["warmup"] == 4 and result.info["voters"] == 1
    assert result.answer == "B" and result.info["threshold"] == pytest.approx(3.7)
    assert result.usage.completion_tokens == 80


def test_a_budget_that_refuses_the_warmup_answers_nothing():
    result = solve(DeepConf(n=8, warmup=4, window=4, max_tokens=20), traces(WARM + ONLINE),
                   rz.Budget(completion_tokens=0))
    assert result.answer is None and result.info["threshold"] is None and result.info["n"] == 0


# -- consensus: abort the rest --------------------------------------------------------------


CONSENSUS = [("A", const(2.0, 40)), ("A", const(2.0, 40)),  # warm-up: threshold 2.0, both vote
             ("B", const(2.0, 10)), ("A", const(2.0, 20)), ("A", const(2.0, 30)), ("A", const(2.0, 40)),
             ("A", const(2.0, 50)), ("A", const(2.0, 60))]


def test_consensus_aborts_the_traces_still_running():
    backend = traces(CONSENSUS)
    result = solve(DeepConf(n=8, warmup=2, window=4, keep_percent=50, consensus=0.75), backend)
    info = result.info
    # B finishes first (A 4 : B 2, share 2/3), then an A (A 6 : B 2 = 0.75): the four As still
    # running are aborted at step 20
    assert info["cancelled"] == 4
    assert info["tokens"] == [40, 40, 10, 20, 20, 20, 20, 20]
    assert info["stopped"] == [False] * 8  # aborted, not stopped on confidence
    assert info["answers"][4:] == [None] * 4
    assert info["voters"] == 4 and info["votes"] == {"A": pytest.approx(6.0), "B": pytest.approx(2.0)}
    assert result.answer == "A" and result.usage.completion_tokens == sum(info["tokens"])
    assert backend.requests[1].stop_early is not None
    without = traces(CONSENSUS)
    full = solve(DeepConf(n=8, warmup=2, window=4, keep_percent=50), without)
    assert full.info["cancelled"] == 0 and without.requests[1].stop_early is None
    assert sum(full.info["tokens"]) == 290 > sum(info["tokens"]) == 190
    assert full.answer == "A"


def test_consensus_that_is_never_reached_aborts_nothing():
    spec = CONSENSUS[:2] + [(str(i), const(2.0, 10 * i)) for i in range(1, 7)]  # all different
    result = solve(DeepConf(n=8, warmup=2, window=4, keep_percent=50, consensus=0.95), traces(spec))
    assert result.info["cancelled"] == 0 and sum(result.info["tokens"]) == 80 + 210


def test_consensus_is_refused_outside_its_range():
    for bad in [0.5, 1.01]:
        with pytest.raises(ValueError):
            DeepConf(consensus=bad)


# -- offline --------------------------------------------------------------------------------


def test_offline_keeps_the_top_percent_of_all_traces_and_weights_them():
    # lowest group confidences 1, 1, 1, 3.6, 3.7, 9: keep 50 % -> threshold (1 + 3.6) / 2 = 2.3;
    # the kept A, A, C vote 3.6 + 3.7 = 7.3 against 9: C. By count: B (all) or A (the kept).
    spec = [("B", const(1.0)), ("B", const(1.0)), ("B", const(1.0)), ("A", const(3.6)), ("A", const(3.7)),
            ("C", const(9.0))]
    backend = traces(spec)
    result = solve(DeepConf(n=6, mode="offline", window=4, keep_percent=50), backend)
    info = result.info
    assert [r.n for r in backend.requests] == [6]
    assert backend.requests[0].top_logprobs == 20 and backend.requests[0].confidence_stop is None
    assert info["mode"] == "offline" and info["threshold"] == pytest.approx(2.3)
    assert info["voters"] == 3 and info["votes"] == {"A": pytest.approx(7.3), "C": pytest.approx(9.0)}
    assert result.answer == "C"
    assert majority_of(info["answers"]) == "B"
    assert info["stopped"] == [False] * 6 and info["min_conf"] == pytest.approx([1, 1, 1, 3.6, 3.7, 9])
    kept = majority_of([a if c >= info["threshold"] else None for a, c in zip(info["answers"], info["min_conf"])])
    assert kept == "A"


def test_offline_deepconf_low_keeps_the_most_confident_tenth():
    spec = [("B", const(1.0 + i / 10)) for i in range(9)] + [("A", const(5.0))]
    result = solve(DeepConf(n=10, mode="offline", window=4, keep_percent=10), traces(spec))
    assert result.answer == "A" and result.info["voters"] == 1
    high = solve(DeepConf(n=10, mode="offline", window=4, keep_percent=90), traces(spec))
    assert high.answer == "B" and high.info["voters"] == 9  # the 10th percentile drops only the least


def test_offline_runs_where_online_cannot():
    spec = [("A", const(2.0)), ("B", const(1.0))]
    backend = traces(spec, confidence_stop=False)
    result = solve(DeepConf(n=2, mode="offline", window=4, keep_percent=50), backend)
    assert result.answer == "A"


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_refused_without_top_logprobs(mode):
    backend = traces(WARM + ONLINE, logprobs=False)
    with pytest.raises(rz.ConfigError, match="top logprobs"):
        solve(DeepConf(n=8, warmup=4, mode=mode), backend)
    assert backend.requests == []


def test_online_refused_where_the_backend_cannot_stop_on_confidence():
    backend = traces(WARM + ONLINE, confidence_stop=False)
    with pytest.raises(rz.ConfigError, match="mode='offline'"):
        solve(DeepConf(n=8, warmup=4), backend)
    assert backend.requests == []


def test_options_are_validated_and_the_defaults_are_the_official_ones():
    strategy = DeepConf()
    assert (strategy.n, strategy.warmup, strategy.keep_percent, strategy.window, strategy.top_k) == (256, 16, 10, 2048, 20)
    assert strategy.mode == "online" and strategy.consensus is None
    for bad in [{"n": 0}, {"warmup": 0}, {"keep_percent": 0}, {"keep_percent": 101}, {"window": 0}, {"top_k": 21},
                {"mode": "both"}]:
        with pytest.raises(ValueError):
            DeepConf(**bad)
