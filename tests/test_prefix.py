"""Prefixes in the core: ctx.extend continues a partial answer (token ids when the backend has
them), stop strings stay in text and ids, cached prompt tokens are not charged as computed, and
traces refer to prefixes instead of copying them."""

import asyncio

import pytest

import reasoning as rz
from reasoning.answers import extract_answer
from reasoning.backends import Scripted
from reasoning.budget import Ledger
from reasoning.context import Prefix
from reasoning.strategies.steps import StepConfig, next_steps
from reasoning.trace import Trace

STEPS = ["Step one.\n\n", "Step two.\n\n", "So \\boxed{4}."]


def stepper(backend):
    """Answers one step at a time: the next step after what the request continues."""
    def respond(request, index):
        done = backend.continuation(request)
        at = sum(done.count(s) == 1 for s in STEPS if s in done) if done else 0
        return "".join(STEPS[at:])  # the rest of the solution; the stop string cuts it to one step
    return respond


def context(backend, budget=None, params=None):
    backend.params = params
    return rz.Context(rz.Problem("What is 2+2?"), backend, Ledger(budget), Trace(),
                      messages=(rz.Message("user", "What is 2+2?"),), extract=extract_answer)


def test_extend_walks_a_solution_step_by_step_with_exact_ids_and_cache_hits():
    backend = Scripted()
    backend.responder = stepper(backend)
    ctx = context(backend)

    async def walk():
        prefix, seen = Prefix(), []
        while not prefix.complete:
            [sample] = await ctx.extend(prefix, n=1, stop=["\n\n"], max_tokens=64)
            seen.append(sample)
            prefix = sample.prefix
        return prefix, seen

    prefix, seen = asyncio.run(walk())
    assert prefix.steps == tuple(STEPS) and prefix.complete and seen[-1].answer == "4"
    assert [s.completion.stop_reason for s in seen] == ["\n\n", "\n\n", "eos"]
    # text and ids never drift: the ids are the prompt's plus exactly the text's
    assert Scripted.decode(prefix.token_ids).endswith(prefix.text)
    # the second and third calls were token-id continuations that hit the prefix cache
    assert [r.prompt_token_ids is not None for r in backend.requests] == [False, True, True]
    usage = ctx.ledger.usage()
    assert usage.cached_prompt_tokens > 0 and usage.uncached_tokens == usage.tokens - usage.cached_prompt_tokens


def test_text_continuation_where_the_backend_takes_no_token_ids():
    backend = Scripted()
    backend.capabilities = backend.capabilities.__class__(native_n=True, token_ids=False)
    backend.responder = stepper(backend)
    ctx = context(backend)
    [first] = asyncio.run(ctx.extend(Prefix(), stop=["\n\n"], max_tokens=64))
    [second] = asyncio.run(ctx.extend(first.prefix, stop=["\n\n"], max_tokens=64))
    request = backend.requests[-1]
    assert request.continue_final_message and request.messages[-1].content == STEPS[0]
    assert second.prefix.steps == tuple(STEPS[:2]) and first.prefix.token_ids is None


def test_uncached_tokens_budget_and_flops_count_only_what_is_computed():
    backend = Scripted(completion_tokens=5)
    backend.responder = stepper(backend)
    ctx = context(backend, rz.Budget(uncached_tokens=10_000), params=1000)

    async def go():
        [a] = await ctx.extend(Prefix(), stop=["\n\n"], max_tokens=64)
        many = await next_steps(ctx, [a.prefix] * 4, 2, StepConfig(max_step_tokens=64))
        return many

    asyncio.run(go())
    usage = ctx.ledger.usage()
    assert usage.cached_prompt_tokens > 0
    assert usage.flops == pytest.approx(2 * 1000 * usage.uncached_tokens)
    assert rz.Budget.parse("uncached_tokens=5").uncached_tokens == 5


def test_a_deep_search_trace_grows_with_what_is_generated_not_with_depth_times_prefix():
    def long_steps(request, index):
        return "x" * 40 + "\n\n"

    def trace_size(depth):
        backend = Scripted(responder=long_steps)
        ctx = context(backend)

        async def go():
            prefix = Prefix()
            for _ in range(depth):
                [sample] = await ctx.extend(prefix, stop=["\n\n"], max_tokens=64)
                prefix = sample.prefix
            return prefix

        prefix = asyncio.run(go())
        assert len(prefix.token_ids) > depth * 40
        return len(ctx.trace.to_json())

    small, large = trace_size(5), trace_size(20)
    # linear: 4x the steps is about 4x the trace, not 16x
    assert large < 5 * small


class _CountedIds(tuple):
    """Token ids that count how often they are iterated (each copy is one)."""

    copies = 0

    def __iter__(self):
        type(self).copies += 1
        return super().__iter__()


def test_a_continuations_trace_node_does_not_copy_the_prefix_ids():
    # Issue 19: the trace node of a continuation names its prefix; the request's token ids were
    # still copied into a list first (then dropped), once per node, as long as the whole prefix.
    from reasoning.context import _traced

    prefix = Prefix(("Step one.\n\n",), _CountedIds(range(4000)), trace_id=3)
    request = rz.GenerationRequest(prompt_token_ids=prefix.token_ids, n=4, stop=("\n\n",))
    _CountedIds.copies = 0
    traced = _traced(request, prefix)
    assert _CountedIds.copies == 0
    assert "prompt_token_ids" not in traced and traced["prefix"] == {"node": 3, "steps": 1, "chars": 11,
                                                                      "tokens": 4000}
    full = request.to_dict()  # the rest as to_dict has it; the ids only where asked for
    assert full.pop("prompt_token_ids") == list(range(4000))
    assert full == {key: value for key, value in traced.items() if key != "prefix"}
