"""certainty-probe (Dynasor-CoT): a trace written in segments, probed for its answer after each,
stopped once `agree` consecutive probes give the same answer. Scripted traces pin the loop
exactly; the slow test runs it on the embedded model."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

import reasoning as rz
from reasoning.answers import extract_answer, last_boxed
from reasoning.backends import Scripted
from reasoning.strategies import create
from reasoning.strategies.certainty_probe import DYNASOR_PROBE, CertaintyProbe, probe_answer
from reasoning.strategy import Strategy
from reasoning.types import GenerationRequest

EVERY = 16  # segment tokens in these tests (Scripted's toy tokenizer: one token per character)


def probing_backend(probe_says, finish_at=None, numbered=True):
    """Segments are "|segN ..." cut at their max_tokens (finish "length"); segment ``finish_at``
    ends the trace with its own \\boxed{7} instead (without ``numbered``, segments are "|segA ..."
    and the last one gives no answer). A probe (a continuation ending in the probe text) after N
    segments writes ``probe_says[N - 1]``."""
    backend = Scripted(completion_tokens=len)

    def respond(request, index):
        done = backend.continuation(request)
        written = done.count("|")
        if done.endswith(DYNASOR_PROBE):
            return probe_says[written - 1]
        if written + 1 == finish_at:
            return "|So \\boxed{7}." if numbered else "|So it is done."
        return f"|seg{written + 1 if numbered else 'ABCDEFGH'[written]} " + "and more reasoning " * 5

    backend.responder = respond
    return backend


def solve(strategy, backend, budget=None):
    return rz.solve("Find x.", strategy, backend, budget)


def kinds(backend):
    """Each request as 'segment' or 'probe', in order."""
    return ["probe" if backend.continuation(r).endswith(DYNASOR_PROBE) else "segment" for r in backend.requests]


def test_it_stops_after_the_third_agreeing_probe_with_their_answer():
    backend = probing_backend(["3} \\]", "5} \\]", "5} \\]", "5} \\]", "5} \\]"])
    result = solve(CertaintyProbe(probe_every=EVERY, agree=3, max_tokens=1000), backend)
    assert result.answer == "5" and result.info["stop"] == "agreed" and result.info["answer_source"] == "probe"
    assert kinds(backend) == ["segment", "probe"] * 4  # 3, 5, 5, 5: the fourth probe is the third to agree
    assert result.info["segments"] == 4 and result.info["probes"] == 4
    assert result.info["probe_answers"] == ["3", "5", "5", "5"]
    assert [(r.max_tokens, r.temperature, r.top_p) for r in backend.requests[1::2]] == [(20, 0.6, 0.95)] * 4
    assert [r.max_tokens for r in backend.requests[::2]] == [EVERY] * 4
    probe_tokens = 4 * len("5} \\]")
    assert result.info["trace_tokens"] == 4 * EVERY and result.info["probe_tokens"] == probe_tokens
    assert result.info["saved_vs_max_tokens"] == 1000 - 4 * EVERY - probe_tokens
    assert result.text == "".join(f"|seg{k} and more r" for k in range(1, 5)) + DYNASOR_PROBE + "5} \\]"
    assert result.stopped_by is None


def test_probes_continue_the_traces_exact_ids_from_the_prefix_cache():
    backend = probing_backend(["3}", "5}", "5}", "5}"])
    result = solve(CertaintyProbe(probe_every=EVERY, max_tokens=1000), backend)
    assert result.info["probe_ids"] is True
    probe_ids = tuple(Scripted.encode(DYNASOR_PROBE))
    segments, probes = backend.requests[::2], backend.requests[1::2]
    calls = result.trace.calls()
    for k, probe in enumerate(probes):
        # the segment just written: its prompt ids + what it generated, then the probe text's ids
        segment = segments[k]
        trace_ids = (*backend.prompt_ids(segment), *Scripted.encode(calls[2 * k].completions[0]["text"]))
        assert probe.prompt_token_ids == (*trace_ids, *probe_ids)
        # the whole trace was seen before, so the prefix cache serves all of it (Scripted's
        # cache keeps id prompts only: the first segment went as the chat's messages)
        assert calls[2 * k + 1].usage["cached_prompt_tokens"] == (len(trace_ids) if k else 0)
    assert result.usage.cached_prompt_tokens > 0


def test_on_backends_without_token_ids_probes_go_as_text_to_continue():
    backend = probing_backend(["5}", "5}", "5}"])
    backend.capabilities = dataclasses.replace(backend.capabilities, token_ids=False)  # an HTTP server
    result = solve(CertaintyProbe(probe_every=EVERY, max_tokens=1000), backend)
    assert result.answer == "5" and result.info["probes"] == 3 and result.info["probe_ids"] is False
    probe = backend.requests[1]
    assert probe.prompt_token_ids is None and probe.continue_final_message
    assert probe.messages[-1].role == "assistant" and probe.messages[-1].content == "|seg1 and more r" + DYNASOR_PROBE


def test_a_trace_that_finishes_before_agreement_gives_its_own_answer():
    backend = probing_backend(["3}", "5}", "5}", "5}"], finish_at=3)
    result = solve(CertaintyProbe(probe_every=EVERY, max_tokens=1000), backend)
    assert result.answer == "7" and result.info["stop"] == "finished" and result.info["answer_source"] == "trace"
    assert kinds(backend) == ["segment", "probe", "segment", "probe", "segment"]  # no probe after the last
    assert result.info["segments"] == 3 and result.info["probes"] == 2
    assert result.text.endswith("|So \\boxed{7}.")


def test_a_finished_trace_without_an_answer_falls_back_to_the_last_probe():
    backend = probing_backend(["4}", "6}"], finish_at=3, numbered=False)
    result = solve(CertaintyProbe(probe_every=EVERY, max_tokens=1000), backend)
    assert result.info["stop"] == "finished" and result.text.endswith("|So it is done.")
    assert (result.answer, result.info["answer_source"]) == ("6", "probe")


@pytest.mark.parametrize(("calls", "made", "answer"), [
    (5, ["segment", "probe", "segment", "probe", "segment"], "5"),  # the third probe is refused
    (4, ["segment", "probe", "segment", "probe"], "5"),  # the third segment is refused
    (2, ["segment", "probe"], "3"),
    (1, ["segment"], None),  # no probe yet and no \boxed{} in the trace: nothing to answer
])
def test_a_budget_refusal_returns_the_best_answer_so_far(calls, made, answer):
    backend = probing_backend(["3}", "5}", "5}", "5}"])
    result = solve(CertaintyProbe(probe_every=EVERY, max_tokens=1000), backend, rz.Budget(calls=calls))
    assert kinds(backend) == made
    assert result.answer == answer and result.info["stop"] == "budget" and result.stopped_by == "calls"
    assert result.info["answer_source"] == (None if answer is None else "probe")


def test_at_max_tokens_the_last_segment_is_cut_to_fit_and_still_probed():
    backend = probing_backend(["1}", "2}", "3}", "4}"])
    result = solve(CertaintyProbe(probe_every=EVERY, max_tokens=2 * EVERY + 5), backend)
    assert [r.max_tokens for r in backend.requests] == [EVERY, 20, EVERY, 20, 5, 20]
    assert result.info["stop"] == "max_tokens" and result.info["trace_tokens"] == 2 * EVERY + 5
    assert (result.answer, result.info["answer_source"]) == ("3", "probe")  # the last probe's


def test_probes_that_hesitate_or_never_close_the_box_do_not_count():
    says = ["5} Hmm", "5}", "5}", "5 and so", "5}", "5}", "5}"]
    result = solve(CertaintyProbe(probe_every=EVERY, max_tokens=1000), probing_backend(says))
    # 1 hesitates, 4 gives no answer: 5, 6, 7 are the first three in a row that count
    assert result.info["probes"] == 7 and result.info["probe_answers"] == ["5", "5", "5", None, "5", "5", "5"]
    assert result.info["hesitant"] == [True] + [False] * 6
    counted = solve(CertaintyProbe(probe_every=EVERY, max_tokens=1000, hesitation_words=""), probing_backend(says))
    assert counted.info["probes"] == 3 and counted.answer == "5"


def test_probe_answers_agree_after_normalisation():
    result = solve(CertaintyProbe(probe_every=EVERY, max_tokens=1000),
                   probing_backend(["5}", "5.0}", "\\frac{10}{2}} \\]"]))
    assert result.info["stop"] == "agreed" and result.info["probes"] == 3 and result.answer == "\\frac{10}{2}"


class WithSamples(Strategy):
    """certainty-probe, with its outcome's samples' answers and vote keys put in the info."""

    name = "with-samples"

    async def run(self, ctx):
        outcome = await CertaintyProbe(probe_every=EVERY, max_tokens=1000).run(ctx)
        outcome.info["samples"] = [(s.answer, s.info.get("vote_key")) for s in outcome.samples]
        return outcome


def test_probes_agree_on_the_problems_vote_key_where_it_has_one():
    backend = probing_backend(["x+1} \\] so \\boxed{9}", "1+x}", "x + 1}"])
    result = rz.solve("Simplify.", WithSamples(), backend,
                      vote_key=lambda problem, answer: "".join(sorted(answer.replace(" ", ""))))
    assert result.info["stop"] == "agreed" and result.info["probes"] == 3 and result.answer == "x + 1"
    # the probes (with their own answers and keys, not the whole text's), then the trace
    assert result.info["samples"][:3] == [("x+1", "+1x"), ("1+x", "+1x"), ("x + 1", "+1x")]
    assert len(result.info["samples"]) == 4 and result.info["samples"][3][0] == "3"  # "|seg3...": its last number
    plain = solve(CertaintyProbe(probe_every=EVERY, max_tokens=48), probing_backend(["x+1}", "1+x}", "x + 1}"]))
    assert plain.info["stop"] == "max_tokens"  # without the key, x+1 and 1+x differ


class BosScripted(Scripted):
    """A tokenizer that starts every raw text with a BOS (id 1), as Llama's does."""

    def prompt_ids(self, request):
        ids = super().prompt_ids(request)
        return [1, *ids] if request.prompt is not None else ids


def test_the_probe_texts_ids_leave_out_what_the_tokenizer_adds_to_any_text():
    backend = probing_backend(["5}", "5}", "5}"])
    bos = BosScripted(completion_tokens=len, responder=backend.responder)
    backend.prompt_ids = bos.prompt_ids  # the responder reads continuations through backend
    result = solve(CertaintyProbe(probe_every=EVERY, max_tokens=1000), bos)
    probe = bos.requests[1]
    assert result.answer == "5" and probe.prompt_token_ids[-len(DYNASOR_PROBE) - 1:] == (
        ord("r"), *Scripted.encode(DYNASOR_PROBE))


def test_probe_answer_reads_up_to_the_first_unpaired_brace():
    ctx = SimpleNamespace(extract=extract_answer)  # all probe_answer reads of a context
    assert probe_answer(ctx, "\\frac{1}{2}} \\]\n\nso") == "\\frac{1}{2}"
    assert probe_answer(ctx, " 12 }.") == "12"
    assert probe_answer(ctx, "\\{1, 2\\}}") == "\\{1, 2\\}"  # escaped braces are the answer's
    assert probe_answer(ctx, "12") is None and probe_answer(ctx, "}") is None
    # what the box holds goes through the run's extractor (here one that keeps its input)
    assert probe_answer(SimpleNamespace(extract=lambda text: text), " 5 } \\]") == "\\boxed{5}"


def test_probes_without_an_answer_never_agree():
    result = solve(CertaintyProbe(probe_every=EVERY, max_tokens=3 * EVERY), probing_backend(["5 and", "6 or", "7"]))
    assert result.info["stop"] == "max_tokens" and result.info["probe_answers"] == [None] * 3
    assert result.answer is None and result.info["answer_source"] is None


def test_registered_with_the_papers_defaults():
    strategy = create("certainty-probe", probe_every=32, agree=2)
    assert isinstance(strategy, CertaintyProbe) and (strategy.probe_every, strategy.agree) == (32, 2)
    defaults = CertaintyProbe()
    assert (defaults.probe_every, defaults.agree, defaults.probe_tokens) == (64, 3, 20)
    assert defaults.probe.endswith("**Final Answer**\n\n\\[ \\boxed{")
    with pytest.raises(rz.ConfigError, match="agree must be >= 1"):
        create("certainty-probe", agree=0)


@pytest.mark.slow
def test_certainty_probe_on_the_embedded_model(local_backend):
    """One GSM8K problem end to end. The embedded backend keeps no prefix cache (it reports no
    cached tokens), so what is checked is what a cache needs: every probe's prompt is the trace's
    exact token ids so far followed by the probe text's."""
    backend = local_backend
    seen = []
    generate = backend.generate

    async def recording(request):
        response = await generate(request)
        seen.append((request, response))
        return response

    backend.generate = recording
    try:
        result = rz.solve(
            "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?",
            CertaintyProbe(probe_every=64, max_tokens=256, temperature=0.0, probe_temperature=0.0),
            backend, rz.Budget(tokens=4000),
        )
    finally:
        del backend.generate
    info = result.info
    print(info, result.answer)
    assert info["probe_ids"] is True and info["segments"] >= 1 and info["trace_tokens"] <= 256
    probe_ids = backend.prompt_ids(GenerationRequest(prompt=DYNASOR_PROBE))  # no BOS on this tokenizer
    for (segment, written), (probe, said) in zip(seen[::2], seen[1::2]):
        trace_ids = [*written.prompt_token_ids, *written.completions[0].token_ids]
        assert list(probe.prompt_token_ids) == trace_ids + probe_ids
        assert probe.max_tokens == 20 and said.completions[0].completion_tokens <= 20
    assert info["probes"] == len(seen) // 2 and info["segments"] == (len(seen) + 1) // 2
    assert info["probe_answers"] == [probe_answer_of(said) for _, said in seen[1::2]]
    # The stop and the answer recomputed from the recorded completions.
    trace_text = "".join(written.completions[0].text for _, written in seen[::2])
    last_probe = next((a for a in reversed(info["probe_answers"]) if a is not None), None)
    if info["stop"] == "agreed":
        assert len(set(info["probe_answers"][-3:])) == 1 and result.answer == info["probe_answers"][-1] is not None
        assert result.text == trace_text + DYNASOR_PROBE + result.answer + "} \\]"
    elif info["stop"] == "finished":
        assert seen[-1][1].completions[0].finish_reason == "stop"
        assert result.answer == (extract_answer(trace_text) or last_probe) and result.text == trace_text
    else:
        boxed = extract_answer(trace_text) if last_boxed(trace_text) is not None else None
        assert info["stop"] == "max_tokens" and info["trace_tokens"] == 256 and result.answer == (last_probe or boxed)


def probe_answer_of(response):
    from reasoning.answers.latex_utils import matching_brace

    text = response.completions[0].text
    close = matching_brace("{" + text, 0)
    inner = text[: close - 1].strip() if close is not None else ""
    return extract_answer(f"\\boxed{{{inner}}}") if inner else None
