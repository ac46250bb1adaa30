"""Summarization loop on the Scripted backend: bounded ("sawtooth") context, stop rules, budget."""

import asyncio
import re

import pytest

import reasoning as rz
from reasoning.prompts import load_prompt
from reasoning.backends import Scripted
from reasoning.strategies import create
from reasoning.strategies.summarization_loop import SummarizationLoop

PROBLEM = "Count the ways to tile a 2 by 12 board with dominoes."


def solve(strategy, backend, budget=None, **kw):
    return asyncio.run(rz.asolve(PROBLEM, strategy, backend, budget, **kw))


def is_summary(request):
    return any(m.role == "assistant" for m in request.messages)


def looping(final_round=None, final_text="So the count is \\boxed{233}."):
    """Segments of round r are long runs of the word ``r{r}step`` (cut at max_tokens); summaries
    long runs of ``note{r}``. Round ``final_round`` answers instead. One token per word."""
    state = {"round": 0}

    def respond(request, index):
        if is_summary(request):
            return f"note{state['round']} " * 1000
        state["round"] += 1
        if state["round"] == final_round:
            return final_text
        return f"r{state['round']}step " * 1000

    return Scripted(responder=respond, completion_tokens=lambda text: len(text.split()))


def test_context_stays_bounded_over_twenty_rounds():
    segment_tokens, summary_tokens = 30, 12
    backend = looping()
    result = solve(SummarizationLoop(segment_tokens, summary_tokens, max_rounds=20), backend)
    assert result.info["rounds"] == 20 and result.info["stop"] == "max_rounds"
    segments = [r for r in backend.requests if not is_summary(r)]
    summaries = [r for r in backend.requests if is_summary(r)]
    assert len(segments) == 20 and len(summaries) == 19  # no summary after the last round

    count = backend.count_prompt_tokens
    # The bound: the question + one summary (summary_tokens) + the template, whatever the round.
    template = load_prompt("continue_from_summary").render(problem=PROBLEM, summary="")
    segment_bound = count(rz.GenerationRequest(messages=template)) + summary_tokens
    summary_bound = segment_bound + segment_tokens + len(load_prompt("summarize_progress").sections[0][1].split())
    assert all(count(r) <= segment_bound for r in segments)
    assert all(count(r) <= summary_bound for r in summaries)
    assert max(count(r) for r in segments[1:]) == count(segments[-1]) == count(segments[1])  # flat, not growing
    assert all(PROBLEM in r.messages[-1].content for r in segments)

    # Never the full history: a segment's prompt holds no earlier segment's words, only the last summary.
    for round_, request in enumerate(segments, 1):
        text = " ".join(m.content for m in request.messages)
        assert not re.search(r"r\d+step", text)
        assert set(re.findall(r"note\d+", text)) == ({f"note{round_ - 1}"} if round_ > 1 else set())
    assert result.info["summary"] == ("note19 " * summary_tokens).strip()
    assert result.info["segment_tokens_used"] == [segment_tokens] * 20


def test_stops_on_a_boxed_answer_and_reports_the_last_summary():
    backend = looping(final_round=3)
    result = solve(SummarizationLoop(30, 12, max_rounds=10), backend)
    assert result.answer == "233" and result.info["stop"] == "answer" and result.info["rounds"] == 3
    assert result.info["summary"].startswith("note2")
    assert [is_summary(r) for r in backend.requests] == [False, True, False, True, False]
    spans = [n.name for n in result.trace.nodes if n.kind == "span"]
    assert {"round-1", "round-2", "round-3"} <= set(spans)


def test_a_segment_that_ends_by_itself_with_an_answer_stops_the_loop():
    backend = looping(final_round=2, final_text="Adding the cases gives 233 in total.")
    result = solve(SummarizationLoop(30, 12), backend)
    assert result.info["stop"] == "finished" and result.answer == "233" and result.info["rounds"] == 2


def test_the_summary_continues_the_segments_own_chat():
    backend = looping(final_round=2)
    solve(SummarizationLoop(30, 12), backend)
    first, summary = backend.requests[0], backend.requests[1]
    assert summary.messages[: len(first.messages)] == first.messages
    assert [m.role for m in summary.messages[len(first.messages):]] == ["assistant", "user"]
    assert summary.max_tokens == 12 and summary.temperature == 0.0 and first.max_tokens == 30


def test_budget_refusal_stops_with_the_best_answer_so_far():
    backend = looping()
    result = solve(SummarizationLoop(30, 12, max_rounds=10), backend, rz.Budget(calls=4))
    assert result.info["stop"] == "budget" and result.info["rounds"] == 2
    assert result.stopped_by == "calls" and result.usage.calls == 4
    assert result.info["summary"].startswith("note2")
    assert result.text.startswith("r2step")


def test_options_are_validated_and_settable_by_name():
    assert isinstance(create("summarization-loop", segment_tokens=64, max_rounds=3), SummarizationLoop)
    for bad in [{"segment_tokens": 0}, {"summary_tokens": 0}, {"max_rounds": 0}]:
        with pytest.raises(ValueError):
            SummarizationLoop(**bad)


# -- the paper's segment length and committed answers (issue 22) ----------------------------------


def test_the_default_segment_is_the_papers_eta_of_4096_tokens():
    assert SummarizationLoop().segment_tokens == 4096
    backend = looping(final_round=1)
    solve(SummarizationLoop(), backend)
    assert backend.requests[0].max_tokens == 4096


def numbered(final_round=None, final_text="", summary="note {r} ", tail="step {r} "):
    """Like ``looping``, but every cut-off segment ends in a number (the round's) and summaries
    are ``summary`` repeated; round ``final_round`` writes ``final_text`` followed by 1000 words."""
    state = {"round": 0}

    def respond(request, index):
        r = state["round"]
        if is_summary(request):
            return summary.replace("{r}", str(r)) * 1000
        state["round"] += 1
        r = state["round"]
        if r == final_round:
            return final_text + " more" * 1000
        return tail.replace("{r}", str(r)) * 1000

    return Scripted(responder=respond, completion_tokens=lambda text: len(text.split()))


def test_at_max_rounds_the_last_number_of_a_cut_segment_is_not_the_answer():
    result = solve(SummarizationLoop(30, 12, max_rounds=3), numbered())
    assert result.info["stop"] == "max_rounds" and result.info["rounds"] == 3
    assert result.answer is None and result.info["answer_from"] is None
    assert result.info["uncommitted_answer"] == "3"  # what the extractor reads: round 3's "step 3"
    assert result.text.startswith("step 3")


def test_a_budget_stop_after_a_cut_segment_gives_no_answer():
    result = solve(SummarizationLoop(30, 12, max_rounds=10), numbered(), rz.Budget(calls=3))
    assert result.info["stop"] == "budget" and result.info["rounds"] == 2
    assert result.answer is None and result.info["uncommitted_answer"] == "2"


def test_a_boxed_answer_counts_even_in_a_segment_cut_after_it():
    result = solve(SummarizationLoop(30, 12, max_rounds=5), numbered(final_round=2, final_text="So \\boxed{233}."))
    assert result.info["stop"] == "answer" and result.answer == "233" and result.info["answer_from"] == "segment"
    assert result.info["segment_tokens_used"] == [30, 30]  # both cut at the limit
    assert result.info["uncommitted_answer"] is None


def test_a_boxed_answer_in_the_last_summary_counts_a_bare_number_does_not():
    boxed = solve(SummarizationLoop(30, 12, max_rounds=2), numbered(summary="we found \\boxed{233} "))
    assert boxed.info["stop"] == "max_rounds" and boxed.answer == "233" and boxed.info["answer_from"] == "summary"
    assert boxed.info["uncommitted_answer"] == "2"
    bare = solve(SummarizationLoop(30, 12, max_rounds=2), numbered(summary="we found 233 "))
    assert bare.answer is None and bare.info["answer_from"] is None
