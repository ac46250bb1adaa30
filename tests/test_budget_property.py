"""Property: recorded usage never exceeds any limit, whatever the strategy, budget and
backend behaviour; and usage adds up exactly over the trace."""

import asyncio
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.strategy import Outcome, Strategy
from reasoning.strategies import BestOfN, Greedy, SelfConsistency
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
            if not got and ctx.budget.exhausted:
                break
            samples += got
        return Outcome(samples[0].answer if samples else None, None, samples)


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
)


@st.composite
def backends(draw):
    spread = draw(st.integers(1, 400))
    return Scripted(
        [str(a) for a in draw(st.lists(st.integers(0, 5), min_size=1, max_size=5))],
        # Completion length varies per text: some fit, some hit max_tokens.
        completion_tokens=lambda text, spread=spread: 1 + zlib.crc32(text.encode()) % spread,
        native_n=draw(st.booleans()),
        usd_per_token=draw(st.sampled_from([(0.0, 0.0), (1e-6, 4e-6), (1e-5, 3e-5)])),
        params=draw(st.sampled_from([None, 500_000_000])),
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
    budget = rz.Budget(**budget)
    sampling = rz.Sampling(max_tokens=max_tokens, min_tokens=min_tokens)
    result = asyncio.run(rz.asolve("Compute 2+3, show steps.", strategy, backend, budget, sampling=sampling))
    for limit, cap in budget.limits().items():
        assert result.usage.value(limit) <= cap * (1 + 1e-9) + 1e-12, (limit, result.usage, budget)
    # Every reported unit is accounted to exactly one trace node.
    calls = result.trace.calls()
    assert sum(c.usage.get("tokens", 0) for c in calls) == result.usage.tokens
    assert sum(c.usage.get("calls", 0) for c in calls) == result.usage.calls
    # A call that was refused or shrunk is named in stopped_by.
    if any(c.error or "shrunk" in c.info for c in calls):
        assert result.stopped_by is not None
    # No call ever asked the backend for more than a limit allowed on its own.
    if budget.completion_tokens is not None:
        assert all(r.n * r.max_tokens <= budget.completion_tokens for r in backend.requests)


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
