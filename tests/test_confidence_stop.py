"""Stopping samples while they run (issue 21), on the Scripted backend: ``ConfidenceStop``
(DeepConf's group-confidence rule), ``token_confidence``, the request fields and capabilities,
Scripted's lockstep model of a confidence stop and of ``stop_early``, and what the context
makes of cut samples (no answer; partial tokens charged, not the reservation)."""

import asyncio
import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.errors import UnsupportedRequest
from reasoning.strategy import Outcome, Strategy
from reasoning.types import ConfidenceStop, GenerationRequest, Message, token_confidence


def generate(backend, request):
    return asyncio.run(backend.generate(request))


def request(**kw):
    return GenerationRequest(messages=(Message("user", "What is 6*7?"),), **kw)


# -- ConfidenceStop.stops_at, by hand ----------------------------------------------------


def test_stops_at_the_first_full_window_strictly_below_the_threshold():
    rule = ConfidenceStop(threshold=1.0, window=3)
    # windows ending at i = 2, 3, 4, 5: means 2.0, 1.5, 1.0 (equal: not below), 0.5
    assert rule.stops_at([2.0, 2.0, 2.0, 0.5, 0.5, 0.5, 0.5]) == 5
    assert rule.stops_at([2.0, 2.0, 2.0, 0.5, 0.5]) is None  # 1.0 at the end is not below 1.0
    assert ConfidenceStop(threshold=1.01, window=3).stops_at([2.0, 2.0, 2.0, 0.5, 0.5]) == 4


def test_never_stops_before_a_full_window():
    rule = ConfidenceStop(threshold=1.0, window=3)
    assert rule.stops_at([0.0, 0.0, 5.0, 5.0]) is None  # two low tokens, but no full window is low
    assert rule.stops_at([0.0, 0.0]) is None  # shorter than the window: never checked
    assert rule.stops_at([]) is None
    assert rule.stops_at([0.0, 0.0, 0.0]) == 2  # the first full window
    assert ConfidenceStop(threshold=1.0, window=1).stops_at([3.0, 0.5]) == 1  # a window of one token


def test_the_sliding_sum_drops_the_oldest_token():
    rule = ConfidenceStop(threshold=1.0, window=2)
    # windows (1, 4) = 2.5, (4, 0) = 2.0, (0, 0) = 0.0: stops at 3, not at 2 (which dropping
    # the wrong token would give) and not never (which keeping every token would give).
    assert rule.stops_at([1.0, 4.0, 0.0, 0.0]) == 3
    assert rule.stops_at([3.0, 3.0, 3.0, 0.0, 0.0]) == 4


def test_confidence_stop_validates_its_fields():
    for bad in [{"threshold": 1.0, "window": 0}, {"threshold": 1.0, "top_k": 0}, {"threshold": float("nan")}]:
        with pytest.raises(ValueError):
            ConfidenceStop(**bad)
    assert ConfidenceStop(0.5).to_dict() == {"threshold": 0.5, "window": 2048, "top_k": 20}  # the paper's


def brute_force_stops_at(confidences, threshold, window):
    for i in range(window - 1, len(confidences)):
        if sum(confidences[i - window + 1: i + 1]) / window < threshold:
            return i
    return None


@settings(max_examples=300, deadline=None)
@given(
    # quarters: every sum here is exact in floating point, so the two scans agree to the bit
    confidences=st.lists(st.integers(0, 40).map(lambda k: k / 4), max_size=40),
    window=st.integers(1, 12),
    threshold=st.integers(0, 40).map(lambda k: k / 4),
)
@example(confidences=[1.0, 4.0, 0.0, 0.0], window=2, threshold=1.0)
@example(confidences=[1.0, 1.0, 1.0], window=3, threshold=1.0)  # equal to the threshold: no stop
def test_stops_at_equals_a_brute_force_scan(confidences, window, threshold):
    assert ConfidenceStop(threshold, window).stops_at(confidences) == brute_force_stops_at(confidences, threshold, window)


def test_token_confidence_is_minus_the_mean_top_k_logprob():
    assert token_confidence([-0.1, -0.2, -0.6]) == pytest.approx(0.3)
    assert token_confidence([0.0]) == 0.0  # certain
    assert token_confidence([]) == 0.0
    # high when the distribution is peaked: the runners-up are then far less likely
    peaked = [math.log(0.9), math.log(0.05), math.log(0.05)]
    flat = [math.log(1 / 3)] * 3
    assert token_confidence(peaked) == pytest.approx(-(math.log(0.9) + 2 * math.log(0.05)) / 3)
    assert token_confidence(peaked) > token_confidence(flat) == pytest.approx(math.log(3))


# -- the request fields, capabilities ------------------------------------------------------


def test_request_round_trips_its_confidence_fields():
    asked = request(n=3, top_logprobs=20, confidence_stop=ConfidenceStop(0.75, 16, 5))
    data = asked.to_dict()
    assert data["top_logprobs"] == 20
    assert data["confidence_stop"] == {"threshold": 0.75, "window": 16, "top_k": 5}
    assert GenerationRequest.from_dict(json.loads(json.dumps(data))) == asked
    plain = request(n=3)
    assert "top_logprobs" not in plain.to_dict() and "confidence_stop" not in plain.to_dict()
    assert GenerationRequest.from_dict(plain.to_dict()) == plain
    # stop_early is how a request is read, not what is sampled: not in its dict nor its identity
    early = asked.replace(stop_early=lambda finished: True)
    assert early == asked and "stop_early" not in early.to_dict()
    with pytest.raises(ValueError):
        request(top_logprobs=-1)


def test_backends_refuse_what_they_do_not_declare():
    scripted = Scripted()
    assert scripted.capabilities.top_logprobs == 20
    scripted.check_supported(request(top_logprobs=20))
    with pytest.raises(UnsupportedRequest, match="at most 20"):
        scripted.check_supported(request(top_logprobs=21))
    with pytest.raises(UnsupportedRequest, match="at most 0"):
        Scripted(logprobs=False).check_supported(request(top_logprobs=1))
    stopping = request(confidence_stop=ConfidenceStop(0.5, 4))
    scripted.check_supported(stopping)
    with pytest.raises(UnsupportedRequest, match="confidence"):
        Scripted(confidence_stop=False).check_supported(stopping)
    with pytest.raises(UnsupportedRequest):
        generate(Scripted(confidence_stop=False), stopping)


# -- Scripted: a confidence stop -----------------------------------------------------------


def steady_then_low(text, index):
    """Sample 0 is steady at 2.0; the others drop to 0.1 after 10 tokens."""
    return [2.0] * 100 if index == 0 else [1.0] * 10 + [0.1] * 90


def test_a_confidence_stopped_sample_keeps_stops_at_plus_one_tokens():
    rule = ConfidenceStop(0.5, window=4)
    # windows ending at 10, 11, 12: means 0.775, 0.55, 0.325: stops at 12, so 13 tokens
    assert rule.stops_at(steady_then_low("", 1)) == 12
    backend = Scripted(responder=lambda r, i: "x" * 100, completion_tokens=50, confidences=steady_then_low)
    response = generate(backend, request(n=2, max_tokens=100, logprobs=True, top_logprobs=20, confidence_stop=rule))
    full, cut = response.completions
    assert (full.finish_reason, full.completion_tokens, full.text) == ("stop", 50, "x" * 100)
    assert full.token_confidences == [2.0] * 50
    assert (cut.finish_reason, cut.completion_tokens, cut.stop_reason) == ("confidence", 13, "confidence")
    assert cut.token_confidences == [1.0] * 10 + [0.1] * 3
    assert len(cut.token_logprobs) == 13 and cut.text == "x" * (100 * 13 // 50)  # cut in proportion
    assert cut.token_ids == backend.encode(cut.text)
    assert response.completion_tokens == 50 + 13  # what was decoded, not max_tokens


def test_the_stop_applies_without_returning_confidences():
    backend = Scripted(responder=lambda r, i: "x" * 100, completion_tokens=50, confidences=steady_then_low)
    response = generate(backend, request(n=2, confidence_stop=ConfidenceStop(0.5, window=4)))
    assert [c.completion_tokens for c in response.completions] == [50, 13]
    assert all(c.token_confidences is None for c in response.completions)
    asked = generate(Scripted(confidences=steady_then_low), request(n=2, top_logprobs=5))
    assert asked.completions[1].token_confidences == [1.0] * 10 + [0.1] * 10  # asked, and not stopped
    assert [c.finish_reason for c in asked.completions] == ["stop", "stop"]


def test_a_sample_shorter_than_the_window_is_never_stopped():
    backend = Scripted(completion_tokens=3, confidences=lambda t, i: [0.0] * 3)
    response = generate(backend, request(n=1, confidence_stop=ConfidenceStop(0.5, window=4)))
    assert response.completions[0].finish_reason == "stop" and response.completions[0].completion_tokens == 3


# -- Scripted: stop_early (lockstep decoding) -----------------------------------------------


LENGTHS = [50, 10, 30, 80, 20]


def by_length(lengths, answer="7"):
    """Sample i has lengths[i] tokens; its answer comes first, so a cut text still shows it."""

    def responder(request, index):
        return f"\\boxed{{{answer}}} [{lengths[index % len(lengths)]}] " + "w" * 400

    return {"responder": responder, "completion_tokens": lambda text: int(text.split("[")[1].split("]")[0])}


def test_stop_early_cancels_the_samples_still_running_at_the_deciding_step():
    seen = []

    def two_finished(finished):
        seen.append([c.completion_tokens for c in finished])
        return len(finished) >= 2

    backend = Scripted(**by_length(LENGTHS))
    response = generate(backend, request(n=5, max_tokens=100, logprobs=True, stop_early=two_finished))
    # shortest first: 10 (sample 1), then 20 (sample 4) decides at step 20
    assert seen == [[10], [10, 20]]
    completions = response.completions
    assert [c.finish_reason for c in completions] == ["cancelled", "stop", "cancelled", "cancelled", "stop"]
    assert [c.completion_tokens for c in completions] == [20, 10, 20, 20, 20]
    original = backend._text(request(), 0)
    assert completions[0].text == original[: len(original) * 20 // 50]  # cut in proportion
    assert completions[0].token_ids == backend.encode(completions[0].text)
    assert len(completions[0].token_logprobs) == 20
    assert response.completion_tokens == 90


def test_stop_early_on_a_token_id_prompt():
    # (Scripted used to crash here: a cancelled sample had no token ids for its prefix cache.)
    backend = Scripted(**by_length(LENGTHS))
    prompt = tuple(backend.encode("<user>What is 6*7?<assistant>"))
    response = generate(backend, GenerationRequest(prompt_token_ids=prompt, n=5, max_tokens=100,
                                                   stop_early=lambda finished: len(finished) >= 2))
    assert [c.completion_tokens for c in response.completions] == [20, 10, 20, 20, 20]
    cancelled = response.completions[0]
    assert cancelled.token_ids == backend.encode(cancelled.text)
    again = generate(backend, GenerationRequest(prompt_token_ids=prompt + tuple(cancelled.token_ids), n=1))
    assert again.cached_prompt_tokens == len(prompt) + len(cancelled.token_ids)  # the partial sample was seen


def test_samples_finishing_on_the_deciding_step_are_not_cancelled():
    backend = Scripted(**by_length([10, 20, 20, 30]))
    response = generate(backend, request(n=4, max_tokens=100, stop_early=lambda finished: len(finished) >= 2))
    assert [c.finish_reason for c in response.completions] == ["stop", "stop", "stop", "cancelled"]
    assert [c.completion_tokens for c in response.completions] == [10, 20, 20, 20]


def test_stop_early_that_never_fires_or_a_backend_that_cannot_abort_runs_every_sample():
    never = generate(Scripted(**by_length(LENGTHS)), request(n=5, stop_early=lambda finished: False))
    assert [c.completion_tokens for c in never.completions] == LENGTHS
    assert {c.finish_reason for c in never.completions} == {"stop"}
    calls = []
    cannot = Scripted(**by_length(LENGTHS), early_stop=False)
    response = generate(cannot, request(n=5, stop_early=lambda finished: calls.append(1) or True))
    assert [c.completion_tokens for c in response.completions] == LENGTHS and not calls


def test_a_confidence_stopped_sample_finishes_at_its_stop_step():
    # sample 0 runs 50 tokens but is stopped at its 13th: it finishes first and decides
    lengths = [50, 30, 40]
    backend = Scripted(**by_length(lengths), confidences=lambda t, i: [1.0] * 10 + [0.1] * 90 if i == 0 else [2.0] * 100)
    response = generate(backend, request(n=3, confidence_stop=ConfidenceStop(0.5, 4),
                                         stop_early=lambda finished: len(finished) >= 1))
    assert [c.finish_reason for c in response.completions] == ["confidence", "cancelled", "cancelled"]
    assert [c.completion_tokens for c in response.completions] == [13, 13, 13]


# -- through the context: answers and the ledger --------------------------------------------


class Cutting(Strategy):
    """One call that may be cut: its samples' answers, finish reasons and tokens in the info."""

    name = "cutting"
    n: int = 5
    max_tokens: int = 100
    finished_before_stop: int = 2
    threshold: float | None = None

    async def run(self, ctx):
        seen = []

        def decided(finished):
            seen.append([(s.answer, s.completion.finish_reason) for s in finished])
            return len(finished) >= self.finished_before_stop

        stop = ConfidenceStop(self.threshold, 4) if self.threshold is not None else None
        samples = await ctx.generate(n=self.n, max_tokens=self.max_tokens, stop_early=decided,
                                     confidence_stop=stop, top_logprobs=20 if stop else 0)
        return Outcome(None, None, samples, {
            "answers": [s.answer for s in samples], "texts": [s.text for s in samples],
            "finish": [s.completion.finish_reason for s in samples],
            "tokens": [s.completion.completion_tokens for s in samples], "seen": seen,
        })


@pytest.mark.parametrize("run", ["solve", "asolve"])
def test_the_ledger_charges_the_partial_tokens_and_cut_samples_have_no_answer(run):
    backend = Scripted(**by_length(LENGTHS))
    budget = rz.Budget(tokens=5 * 100 + 1000)  # room for the reservation of 5 x 100
    if run == "solve":
        result = rz.solve("What is 6*7?", Cutting(), backend, budget)
    else:
        result = asyncio.run(rz.asolve("What is 6*7?", Cutting(), backend, budget))
    info = result.info
    assert info["finish"] == ["cancelled", "stop", "cancelled", "cancelled", "stop"]
    assert info["tokens"] == [20, 10, 20, 20, 20]
    assert result.usage.completion_tokens == sum(info["tokens"]) == 90  # not the 500 reserved
    assert result.usage.prompt_tokens == backend.count_prompt_tokens(backend.requests[0])
    # every text shows \boxed{7}; only the samples that ran to their end have it as an answer
    assert all("\\boxed{7}" in text for text in info["texts"])
    assert info["answers"] == [None, "7", None, None, "7"]
    assert info["seen"] == [[("7", "stop")], [("7", "stop"), ("7", "stop")]]


def test_a_confidence_stopped_sample_has_no_answer_in_the_vote_nor_in_stop_early():
    backend = Scripted(**by_length([50, 30, 40]), confidences=lambda t, i: [1.0] * 10 + [0.1] * 90 if i == 0 else [2.0] * 100)
    result = rz.solve("What is 6*7?", Cutting(n=3, finished_before_stop=3, threshold=0.5), backend,
                      rz.Budget(tokens=2000))
    info = result.info
    assert info["finish"] == ["confidence", "stop", "stop"] and info["tokens"] == [13, 30, 40]
    assert "\\boxed{7}" in info["texts"][0] and info["answers"] == [None, "7", "7"]
    assert info["seen"][0] == [(None, "confidence")]  # the predicate sees it finish, without an answer
    assert result.usage.completion_tokens == 13 + 30 + 40
    assert backend.requests[0].confidence_stop == ConfidenceStop(0.5, 4) and backend.requests[0].top_logprobs == 20


def test_partial_charging_leaves_budget_for_a_later_call():
    class TwoCalls(Strategy):
        name = "two-calls"

        async def run(self, ctx):
            first = await ctx.generate(n=5, max_tokens=100, stop_early=lambda finished: len(finished) >= 2)
            second = await ctx.generate(n=4, max_tokens=100)
            return Outcome(None, None, first + second, {"second": len(second)})

    backend = Scripted(**by_length(LENGTHS))
    # the first call reserves 5 x 100 completion tokens but is charged the 90 it decoded; the
    # second (4 x 100) fits in full only if the first was charged what it decoded
    result = rz.solve("What is 6*7?", TwoCalls(), backend, rz.Budget(completion_tokens=5 * 100 + 90))
    assert result.info["second"] == 4 and result.stopped_by is None
    assert result.usage.completion_tokens == 90 + (50 + 10 + 30 + 80)
