"""parallel-thinking, summarization-loop and early-stop-sc once each on the real embedded model
(slow: run with -m slow). Tiny max_tokens: the point is that real completions, token counts and
logprobs flow through each strategy within its budget, not accuracy."""

from __future__ import annotations

import pytest

import reasoning as rz
from reasoning.strategies.early_stop_sc import EarlyStopSC
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
    names = [c.name for c in result.trace.calls()]
    assert names == ["paths-0", "synthesis"] and result.trace.calls()[0].request["n"] == 2
    assert result.info["route"] in ("synthesis", "vote") and len(result.info["path_answers"]) == 2
    if result.info["route"] == "vote":
        assert result.info["fallback"] in ("unparseable", "truncated") and result.answer == result.info["vote_answer"]
    print(result.info, result.answer)


def test_summarization_loop_on_the_local_model(backend):
    budget = rz.Budget(tokens=3000)
    result = solve(SummarizationLoop(segment_tokens=32, summary_tokens=24, max_rounds=2), backend, budget)
    check_usage(result, budget)
    calls = result.trace.calls()
    assert 1 <= result.info["rounds"] <= 2 and result.info["stop"] in ("answer", "finished", "max_rounds")
    assert all(c.usage["completion_tokens"] <= (32 if c.name == "segment" else 24) for c in calls)
    if result.info["rounds"] == 2:
        assert [c.name for c in calls] == ["segment", "summary", "segment"]
        second = calls[2].request["messages"][-1]["content"]
        # The second segment starts from the question and the summary, not the first segment.
        assert GSM8K in second and result.info["summary"] in second
        assert calls[0].completions[0]["text"] not in second
    print(result.info, result.answer)


def test_early_stop_sc_on_the_local_model(backend):
    budget = rz.Budget(tokens=3000)
    strategy = EarlyStopSC(max_n=4, wave=2, max_tokens=40, drop_low_confidence=0.5, window=8)
    result = solve(strategy, backend, budget)
    check_usage(result, budget)
    calls = result.trace.calls()
    assert result.info["n"] == sum(c.request["n"] for c in calls) <= 4 and len(calls) == result.info["waves"] <= 2
    assert all(c.request["logprobs"] for c in calls)
    confidences = result.info["confidences"]
    assert len(confidences) == result.info["n"] and all(c is not None and c <= 0 for c in confidences)
    assert result.info["dropped"] == result.info["n"] // 2
    assert result.info["stop"] in ("decided", "confident", "max_n")
    print(result.info, result.answer)
