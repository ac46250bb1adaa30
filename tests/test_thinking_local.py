"""parallel-thinking, summarization-loop and early-stop-sc once each on the real embedded model
(slow: run with -m slow). Tiny max_tokens: the point is that real completions, token counts and
logprobs flow through each strategy within its budget, not accuracy."""

from __future__ import annotations

import pytest

import reasoning as rz
from reasoning.answers import extract_answer, last_boxed
from reasoning.context import Sample
from reasoning.strategies.voting import majority
from reasoning.strategies.early_stop_sc import EarlyStopSC, leader_is_safe, p_leader_ahead
from reasoning.strategies.parallel_thinking import ParallelThinking
from reasoning.strategies.summarization_loop import SummarizationLoop

pytestmark = pytest.mark.slow

GSM8K = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?"
)


@pytest.fixture(scope="module")
def backend(local_backend):
    return local_backend


def solve(strategy, backend, budget):
    return rz.solve(GSM8K, strategy, backend, budget)


def check_usage(result, budget):
    calls = result.trace.calls()
    assert sum(c.usage.get("tokens", 0) for c in calls) == result.usage.tokens <= budget.tokens
    assert result.usage.usd == 0 and all(c.error is None for c in calls)


def test_parallel_thinking_on_the_local_model(backend):
    budget = rz.Budget(tokens=3000)
    result = solve(ParallelThinking(paths=2, max_tokens=48, synthesis_tokens=48, path_chars=300), backend, budget)
    check_usage(result, budget)
    calls = result.trace.calls()
    *path_calls, synthesis = calls
    assert synthesis.name == "synthesis" and all(c.name.startswith("paths-") for c in path_calls)
    # The route and the answer recomputed from the recorded completions: the paths' answers
    # and their vote; the synthesis is used unless it has no answer or was cut before \boxed{}.
    paths = [Sample(c["text"], extract_answer(c["text"])) for call in path_calls for c in call.completions]
    assert len(paths) == 2 and result.info["path_answers"] == [p.answer for p in paths]
    final = synthesis.completions[0]
    answer = extract_answer(final["text"])
    cut = final["finish_reason"] == "length" and last_boxed(final["text"]) is None
    fallback = "unparseable" if answer is None else "truncated" if cut else None
    assert result.info.get("fallback") == fallback
    assert result.info["route"] == ("synthesis" if fallback is None else "vote")
    assert result.answer == (answer if fallback is None else majority(paths).answer)
    print(result.info, result.answer)


def test_summarization_loop_on_the_local_model(backend):
    budget = rz.Budget(tokens=3000)
    result = solve(SummarizationLoop(segment_tokens=32, summary_tokens=24, max_rounds=2), backend, budget)
    check_usage(result, budget)
    calls = result.trace.calls()
    assert all(c.usage["completion_tokens"] <= (32 if c.name == "segment" else 24) for c in calls)
    # Why the loop stopped, recomputed from the segments it wrote: a \boxed{} ends it ("answer"),
    # an answer in a segment that ended by itself too ("finished"), else it runs to max_rounds.
    segments = [c.completions[0] for c in calls if c.name == "segment"]
    assert result.info["rounds"] == len(segments) and [c.name for c in calls] == (
        ["segment", "summary", "segment"][: 2 * len(segments) - 1])
    last = segments[-1]
    if last_boxed(last["text"]) is not None:
        stop = "answer"
    elif extract_answer(last["text"]) is not None and last["finish_reason"] == "stop":
        stop = "finished"
    else:
        stop = "max_rounds"
    assert result.info["stop"] == stop and (stop != "max_rounds" or len(segments) == 2)
    if result.info["rounds"] == 2:
        assert [c.name for c in calls] == ["segment", "summary", "segment"]
        second = calls[2].request["messages"][-1]["content"]
        # The second segment starts from the question and the summary, not the first segment.
        assert GSM8K in second and result.info["summary"] in second
        assert calls[0].completions[0]["text"] not in second
    print(result.info, result.answer)


def test_early_stop_sc_on_the_local_model(backend):
    budget = rz.Budget(tokens=3000)
    # Waves: the local backend can also abort in flight (the default there since it honours
    # stop_early; its abort is tested in test_local_confidence.py).
    strategy = EarlyStopSC(max_n=4, wave=2, max_tokens=40, drop_low_confidence=0.5, window=8, in_flight=False)
    result = solve(strategy, backend, budget)
    check_usage(result, budget)
    calls = result.trace.calls()
    assert result.info["n"] == sum(c.request["n"] for c in calls) <= 4 and len(calls) == result.info["waves"] <= 2
    assert all(c.request["logprobs"] for c in calls)
    confidences = result.info["confidences"]
    assert len(confidences) == result.info["n"] and all(c is not None and c <= 0 for c in confidences)
    assert result.info["dropped"] == result.info["n"] // 2
    # Why it stopped, recomputed from its recorded waves with the strategy's own rules: after the
    # first wave of 2 (of at most 4) it stops when the leader is safe or likely enough.
    first = result.info["history"][0]
    assert first["p_leader"] == p_leader_ahead(first["votes"])
    if leader_is_safe(first["votes"], 4 - first["n"]):
        stop = "decided"
    elif first["votes"] and first["p_leader"] >= 0.95:
        stop = "confident"
    else:
        stop = "max_n"
    assert result.info["stop"] == stop and result.info["waves"] == (2 if stop == "max_n" else 1)
    print(result.info, result.answer)
