"""Property: recorded usage never exceeds any limit, whatever the strategy, budget and
backend behaviour (honest, over-reporting, under-reporting, reporting negative usage, failing
mid-call, cancelled at a ``seconds`` deadline); and usage adds up exactly over the trace."""

import asyncio
import zlib

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import reasoning as rz
from reasoning.backends import Scripted, ScriptedFailure
from reasoning.backends.scripted import FlakyError
from reasoning.strategy import Outcome, ProcessVerifier, Strategy
from reasoning.strategies import (
    DVTS, ETS, BeamSearch, BestOfN, ComputeOptimal, EarlyStopSC, Greedy, ParallelThinking, Rebase, SelfConsistency,
    SpawnJoin, SummarizationLoop,
)
from reasoning.strategies.genrm_best_of_n import GenRMBestOfN
from reasoning.strategies.pessimistic_best_of_n import PessimisticBestOfN
from reasoning.verifiers import Confidence, LLMJudge


class SlicedSelfConsistency(Strategy):
    """Hands each of its groups its own slice of the budget (nested ledgers)."""

    name = "sliced-sc"
    groups: int
    n: int
    slice_tokens: int

    async def run(self, ctx):
        async def group(i):
            sub = ctx.slice(rz.Budget(tokens=self.slice_tokens), name=f"group-{i}")
            return await SelfConsistency(self.n).run(sub)

        outcomes = await asyncio.gather(*(group(i) for i in range(self.groups)))
        answers = [o for o in outcomes if o.answer is not None]
        return answers[0] if answers else Outcome(None)


class Loop(Strategy):
    """Keeps asking until the budget says no: the ledger must stop it."""

    name = "loop"

    async def run(self, ctx):
        samples = []
        for _ in range(200):
            got = await ctx.generate(n=2)
            if not got and ctx.ledger.exhausted:
                break
            samples += got
        return Outcome(samples[0].answer if samples else None, None, samples)


class ChargedPRM(ProcessVerifier):
    """A process reward that costs a model call per prefix (scores from the judgement's length;
    a refused call scores 0), so tree searches spend budget on scoring as on expanding."""

    name = "charged-prm"

    async def step_scores(self, ctx, prefixes):
        async def one(prefix):
            judged = await ctx.generate(f"Rate: {prefix.text}", n=1, max_tokens=16, min_tokens=1, name="prm")
            return [(len(judged[0].text) % 7) / 7 if judged else 0.0] * prefix.depth

        return list(await asyncio.gather(*(one(p) for p in prefixes)))


def step_search(cls, **extra):
    """A tree search drawn small: width at most n, a few short steps, maybe a look-ahead."""
    return st.builds(
        lambda n, width, steps, step_tokens, lookahead: cls(
            n=n, **({"width": min(width, n)} if cls not in (Rebase, ETS) else {}), prm=ChargedPRM(), max_steps=steps,
            max_step_tokens=step_tokens, lookahead=lookahead, **extra),
        st.integers(1, 6), st.integers(1, 3), st.integers(1, 4), st.integers(1, 128), st.sampled_from([0, 0, 1]),
    )


limits = st.fixed_dictionaries(
    {},
    optional={
        "tokens": st.integers(0, 6000),
        "completion_tokens": st.integers(0, 4000),
        "calls": st.integers(0, 12),
        "usd": st.floats(0, 0.05),
        "flops": st.floats(0, 5e10),
    },
)

strategies_ = st.one_of(
    st.builds(Greedy),
    st.builds(SelfConsistency, n=st.integers(1, 16)),
    st.builds(BestOfN, n=st.integers(1, 6), verifier=st.sampled_from([LLMJudge(max_tokens=64), Confidence()])),
    st.builds(
        lambda n, k: BestOfN(n=n, verifier=LLMJudge(max_tokens=64), sampler=SelfConsistency(k)),
        st.integers(1, 4),
        st.integers(1, 4),
    ),
    st.builds(SlicedSelfConsistency, groups=st.integers(1, 4), n=st.integers(1, 6), slice_tokens=st.integers(0, 3000)),
    st.builds(Loop),
    st.builds(
        GenRMBestOfN, n_solutions=st.integers(1, 5), k_verifications=st.integers(1, 4),
        solution_share=st.sampled_from([None, 0.3, 0.7]), verify_max_tokens=st.integers(1, 96),
    ),
    st.builds(
        PessimisticBestOfN, n_solutions=st.integers(1, 5), k_verifications=st.integers(1, 3),
        solution_share=st.sampled_from([None, 0.5]), verify_max_tokens=st.integers(1, 96),
    ),
    st.builds(EarlyStopSC, max_n=st.integers(1, 12), wave=st.integers(1, 5),
              confidence=st.sampled_from([None, 0.9]), drop_low_confidence=st.sampled_from([0.0, 0.3])),
    st.builds(lambda paths, groups, share: ParallelThinking(
        paths=paths, groups=min(groups, paths), hints=min(groups, paths) > 1,  # groups must differ
        synthesis_share=share, synthesis_tokens=96,
    ), st.integers(1, 6), st.integers(1, 3), st.sampled_from([0.0, 0.25, 0.6])),
    st.builds(SpawnJoin, max_depth=st.integers(1, 2), max_fanout=st.integers(1, 3),
              overflow=st.sampled_from(["drop", "sequential"]), join_share=st.sampled_from([0.0, 0.25, 0.5]),
              context_limit=st.sampled_from([None, 120, 400])),
    st.builds(SummarizationLoop, segment_tokens=st.integers(1, 128), summary_tokens=st.integers(1, 64),
              max_rounds=st.integers(1, 4)),
    st.builds(ComputeOptimal),
    step_search(BeamSearch),
    step_search(DVTS),
    step_search(Rebase),
    step_search(ETS, embeddings="ngrams", lambda_kv=1.0, lambda_coverage=1.4),
)


def plans_and_answers(answers):
    """Spawn-join's plan calls get sub-tasks to spawn; every other call a boxed answer."""

    def respond(request, index):
        if "<spawn>" in request.prompt_text() and index % 3:
            return "Split it: <spawn>first half</spawn> and <spawn>second half</spawn>."
        # Two steps (a tree search stops at the blank line, then continues), or one when continued.
        steps = "" if request.prompt_token_ids or request.continue_final_message else "Let me think step by step.\n\n"
        return f"{steps}The result is \\boxed{{{answers[index % len(answers)]}}}."

    return respond


@st.composite
def backends(draw, latency=False):
    spread = draw(st.integers(1, 400))
    answers = [str(a) for a in draw(st.lists(st.integers(0, 5), min_size=1, max_size=5))]
    failing = draw(st.frozensets(st.integers(1, 12), max_size=2))
    return Scripted(
        responder=plans_and_answers(answers),
        # Completion length varies per text: some fit, some hit max_tokens.
        completion_tokens=lambda text, spread=spread: 1 + zlib.crc32(text.encode()) % spread,
        native_n=draw(st.booleans()),
        usd_per_token=draw(st.sampled_from([(0.0, 0.0), (1e-6, 4e-6), (1e-5, 3e-5)])),
        params=draw(st.sampled_from([None, 500_000_000])),
        # Honest, under-reporting, over-reporting, negative: what is charged stays in bounds.
        misreport=draw(st.sampled_from([1.0, 1.0, 0.5, 0.0, 3.0, 40.0, -2.0])),
        failures=[ScriptedFailure(failing, FlakyError("upstream died"), mid_call=draw(st.booleans()))] if failing else [],
        latency=draw(st.sampled_from([0.0, 0.001, 0.004])) if latency else 0.0,
        seed=draw(st.integers(0, 10)),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=strategies_,
    budget=limits,
    backend=backends(),
    max_tokens=st.integers(1, 512),
    min_tokens=st.integers(1, 64),
)
def test_recorded_usage_never_exceeds_any_limit(strategy, budget, backend, max_tokens, min_tokens):
    check_limits_hold(strategy, rz.Budget(**budget), backend, max_tokens, min_tokens)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=strategies_,
    budget=limits,
    seconds=st.floats(0.002, 0.03),
    backend=backends(latency=True),
    max_tokens=st.integers(1, 512),
    min_tokens=st.integers(1, 64),
)
def test_limits_hold_when_a_deadline_cancels_calls(strategy, budget, seconds, backend, max_tokens, min_tokens):
    check_limits_hold(strategy, rz.Budget(**budget, seconds=seconds), backend, max_tokens, min_tokens)


def check_limits_hold(strategy, budget, backend, max_tokens, min_tokens):
    sampling = rz.Sampling(max_tokens=max_tokens, min_tokens=min_tokens)
    run = rz.Ledger()  # unlimited: sees the problem's usage even when a failure ends the solve
    try:
        result = asyncio.run(rz.asolve("Compute 2+3, show steps.", strategy, backend, budget, run_ledger=run,
                                       sampling=sampling))
    except FlakyError:  # a backend failure propagates; what was charged still fits every limit
        result = None
        event("a backend call failed")
    usage = result.usage if result else run.used
    for limit, cap in budget.limits().items():
        if limit != "seconds":
            assert usage.value(limit) <= cap * (1 + 1e-9) + 1e-12, (limit, usage, budget)
    # Nothing stays reserved: every reservation was committed or released.
    assert (run.reserved.tokens, run.reserved.calls) == (0, 0) and abs(run.reserved.usd) < 1e-12
    # No call ever asked the backend for more than a limit allowed on its own.
    if budget.completion_tokens is not None:
        assert all(r.n * r.max_tokens <= budget.completion_tokens for r in backend.requests)
    if result is None:
        return
    # Every charged unit is accounted to exactly one trace node.
    calls = result.trace.calls()
    assert sum(c.usage.get("tokens", 0) for c in calls) == result.usage.tokens
    assert sum(c.usage.get("calls", 0) for c in calls) == result.usage.calls
    # A call that was refused, shrunk or cancelled is named in stopped_by.
    if any(c.error or "shrunk" in c.info for c in calls):
        assert result.stopped_by is not None
    if any(c.error == "cancelled at the deadline" for c in calls):
        event("a call was cancelled at the deadline")  # charged one call each, no tokens
    if any("usage_anomaly" in c.info for c in calls):
        event("usage out of bounds was clamped")
    # Negative usage (prompt tokens are never 0) is always out of bounds, and flagged.
    if backend.misreport < 0:
        assert all("usage_anomaly" in c.info for c in calls if c.completions)


@settings(max_examples=40, deadline=None)
@given(
    run_tokens=st.integers(0, 3000),
    problem_tokens=st.integers(0, 1500),
    concurrency=st.integers(1, 6),
    n=st.integers(1, 8),
)
def test_run_budget_caps_the_sum_over_concurrent_problems(run_tokens, problem_tokens, concurrency, n):
    backend = Scripted(["1"], completion_tokens=lambda text: 1 + len(text) % 90)
    results = asyncio.run(
        rz.asolve_many(
            [f"p{i}" for i in range(8)], SelfConsistency(n), backend, rz.Budget(tokens=problem_tokens),
            run_budget=rz.Budget(tokens=run_tokens), concurrency=concurrency,
            sampling=rz.Sampling(max_tokens=100, min_tokens=8),
        )
    )
    assert sum(r.usage.tokens for r in results) <= run_tokens
    assert all(r.usage.tokens <= problem_tokens for r in results)
