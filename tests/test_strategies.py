"""Strategy logic on the deterministic Scripted backend."""

import asyncio
import math

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.strategies import BestOfN, Greedy, SelfConsistency, create
from reasoning.strategies.voting import majority
from reasoning.verifiers import Confidence, LLMJudge


def solve(strategy, backend, budget=None, **kw):
    return asyncio.run(rz.asolve("What is 6*7?", strategy, backend, budget, **kw))


def test_self_consistency_takes_the_majority_in_one_batched_call():
    backend = Scripted(["41", "42", "42", "7", "42", "41"])
    result = solve(SelfConsistency(n=6), backend)
    assert result.answer == "42"
    assert len(backend.requests) == 1 and backend.requests[0].n == 6
    assert result.info["votes"] == {"41": 2.0, "42": 3.0, "7": 1.0}
    assert result.usage.calls == 1 and result.stopped_by is None


def test_vote_ties_go_to_the_answer_seen_first():
    result = solve(SelfConsistency(n=4), Scripted(["5", "9", "9", "5"]))
    assert result.answer == "5"


def test_equivalent_spellings_vote_together():
    result = solve(SelfConsistency(n=5), Scripted(["1,000", "7", "1000", "7", "1000.0"]))
    assert result.answer in ("1,000", "1000")
    assert max(result.info["votes"].values()) == 3.0


def test_weighted_vote_uses_verifier_scores():
    samples = [rz.Sample("a", "1"), rz.Sample("b", "2"), rz.Sample("c", "2")]
    assert majority(samples).answer == "2"
    assert majority(samples, [5.0, 1.0, 1.0]).answer == "1"
    assert majority([rz.Sample("x", None)]).answer is None


def test_greedy_uses_temperature_zero_and_one_sample():
    backend = Scripted(["3"])
    result = solve(Greedy(), backend)
    assert result.answer == "3"
    assert backend.requests[0].temperature == 0.0 and backend.requests[0].n == 1


def judge_backend(good="42", run=1):
    """Solutions answer 41/42 alternating in runs of ``run``; the judge scores 9 for the good one."""

    def respond(request, index):
        content = request.messages[-1].content
        if "Proposed solution" in content:
            return "Looks right. Score: 9" if f"boxed{{{good}}}" in content else "Wrong. Score: 2"
        return f"so \\boxed{{{41 + (index // run) % 2}}}"

    return Scripted(responder=respond)


def test_best_of_n_keeps_the_best_judged_candidate():
    backend = judge_backend()
    result = solve(BestOfN(n=4, verifier=LLMJudge()), backend)
    assert result.answer == "42"
    assert sorted(result.info["scores"]) == [0.2, 0.2, 0.9, 0.9]
    # 1 batched sampling call + 4 judge calls, all in one trace.
    assert result.usage.calls == 5 and len(result.trace.calls()) == 5


def test_best_of_n_with_confidence_requests_logprobs():
    backend = Scripted(["1", "2", "3"])
    result = solve(BestOfN(n=3, verifier=Confidence()), backend)
    assert backend.requests[0].logprobs is True
    assert result.answer in ("1", "2", "3")
    assert all(0 < s <= 1 for s in result.info["scores"])


def test_best_of_n_over_self_consistency_groups_shares_one_ledger():
    backend = judge_backend(run=4)  # each SC group of 4 agrees; groups alternate
    strategy = BestOfN(n=3, verifier=LLMJudge(), sampler=SelfConsistency(n=4))
    result = solve(strategy, backend, rz.Budget(tokens=100_000))
    assert result.answer == "42"
    groups = [n for n in result.trace.nodes if n.kind == "span" and n.name.startswith("self-consistency-")]
    assert len(groups) == 3
    total = sum(node.usage.get("tokens", 0) for node in result.trace.calls())
    assert total == result.usage.tokens


def test_strategies_stop_with_best_so_far_when_budget_refuses():
    backend = judge_backend()
    # Enough for the samples, not for all judge calls: the answer still comes back.
    result = solve(BestOfN(n=4, verifier=LLMJudge(max_tokens=256)), backend, rz.Budget(completion_tokens=4 * 20 + 300))
    assert result.answer in ("41", "42")
    assert result.stopped_by == "completion_tokens"
    assert result.usage.completion_tokens <= 380


def test_refused_first_call_gives_no_answer_and_names_the_limit():
    result = solve(SelfConsistency(n=8), Scripted(["1"]), rz.Budget(tokens=5))
    assert result.answer is None and result.stopped_by == "tokens" and result.usage.calls == 0


def test_deadline_cancels_in_flight_call():
    cancelled = []

    class Watched(Scripted):  # records what its own call saw: cancellation, not completion
        async def generate(self, request):
            try:
                return await super().generate(request)
            except asyncio.CancelledError:
                cancelled.append(request.n)
                raise

    backend = Watched(["1"], latency=5.0)
    result = solve(SelfConsistency(n=2), backend, rz.Budget(seconds=0.3))
    assert result.stopped_by == "seconds" and result.answer is None
    assert cancelled == [2] and backend._sample_index == 0  # the call was cancelled before any sample
    assert result.trace.calls()[0].error == "cancelled at the deadline"


def test_backend_errors_propagate_with_their_type():
    backend = Scripted(["1"], failures=[rz.backends.ScriptedFailure(frozenset({1}), rz.BadModel("no such model"))])
    with pytest.raises(rz.BadModel):
        solve(SelfConsistency(n=2), backend)


def test_trace_is_json_serialisable_and_round_trips():
    result = solve(SelfConsistency(n=3), Scripted(["1", "2", "1"]))
    data = result.model_dump_json()
    assert '"trace"' in data
    trace = rz.Trace.from_list(result.trace.to_list())
    call = trace.calls()[0]
    assert call.request["n"] == 3 and len(call.completions) == 3 and call.usage["calls"] == 1
    assert rz.GenerationRequest.from_dict(call.request).n == 3


def test_solve_many_respects_a_run_budget():
    backend = Scripted(["1"], completion_tokens=50)
    results = rz.solve_many(
        [f"problem {i}" for i in range(10)], SelfConsistency(n=4), backend, rz.Budget(tokens=1000),
        run_budget=rz.Budget(tokens=1200), concurrency=3, sampling=rz.Sampling(max_tokens=100),
    )
    total = sum(r.usage.tokens for r in results)
    assert total <= 1200
    assert any(r.stopped_by == "run:tokens" for r in results)


class _InFlight(Scripted):
    """Records the problem of each request as it arrives and the most requests in flight."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arrived, self.in_flight, self.most = [], 0, 0

    async def generate(self, request):
        self.arrived.append(request.messages[-1].content)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            return await super().generate(request)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("concurrency", [2, 6])
def test_solve_many_sends_one_native_n_request_per_problem_in_problem_order(concurrency):
    # Issue 19 (admission): problems start in their order under the concurrency gate, each sends
    # its n samples as one request at once, and as many requests are in flight as the gate allows.
    backend = _InFlight(["1"], latency=0.01)
    problems = [rz.Problem(f"problem number {i}", str(i)) for i in range(6)]
    results = rz.solve_many(problems, SelfConsistency(n=4), backend, concurrency=concurrency)
    assert [r.answer for r in results] == ["1"] * 6
    assert [request.n for request in backend.requests] == [4] * 6
    assert [next(i for i, p in enumerate(problems) if p.text in text) for text in backend.arrived] == list(range(6))
    assert backend.most == concurrency


def test_sync_facade_reuses_one_loop_across_calls():
    backend = Scripted(["1"])
    first = rz.solve("a", Greedy(), backend)
    second = rz.solve("b", Greedy(), backend)
    assert first.answer == second.answer == "1"


def test_registry_builds_strategies_by_name_and_reports_bad_ones():
    assert isinstance(create("self-consistency", n=3), SelfConsistency)
    with pytest.raises(rz.ConfigError, match="unknown strategy"):
        create("no-such-strategy")
    with pytest.raises(rz.ConfigError, match="n must be"):
        create("self-consistency", n=0)


def test_a_recorded_trace_replays_without_a_model():
    strategy = BestOfN(n=4, verifier=LLMJudge(), sampler=None)
    original = solve(strategy, judge_backend())
    replayed = solve(strategy, rz.backends.Replay(rz.Trace.from_list(original.trace.to_list())))
    assert replayed.answer == original.answer
    assert replayed.usage.tokens == original.usage.tokens and replayed.usage.calls == original.usage.calls
    with pytest.raises(rz.BackendError, match="no recorded call"):
        solve(SelfConsistency(n=3), rz.backends.Replay(original.trace))


def test_a_replayed_completion_keeps_the_stop_string_that_ended_it():
    request = rz.GenerationRequest(messages=(rz.Message("user", "Go."),), n=2, max_tokens=50, stop=("\n\n",))
    recorded = asyncio.run(Scripted(responder=lambda req, i: "Step one.\n\nStep two.").generate(request))
    trace = rz.Trace()
    node = trace.add("generate", "generate", None, request=request.to_dict())
    node.completions, node.usage = [c.to_dict() for c in recorded.completions], {"prompt_tokens": 5, "calls": 1}
    replayed = asyncio.run(rz.backends.Replay(trace).generate(request))
    assert [c.stop_reason for c in replayed.completions] == [c.stop_reason for c in recorded.completions] == ["\n\n"] * 2


def test_a_replayed_fan_out_priced_call_is_charged_as_recorded_not_flagged():
    original = solve(SelfConsistency(n=3), Scripted(["7"], native_n=False, usd_per_token=(1e-6, 2e-6)))
    replayed = solve(SelfConsistency(n=3), rz.backends.Replay(original.trace))
    assert replayed.usage.to_dict() | {"seconds": 0} == original.usage.to_dict() | {"seconds": 0}
    assert original.usage.calls == 3 and original.usage.usd > 0
    assert not any("usage_anomaly" in node.info for node in replayed.trace.calls())


def test_every_option_is_typed_documented_and_described(capsys, monkeypatch):
    from reasoning.benchmarks.cli import main

    monkeypatch.setenv("COLUMNS", "400")  # one table row per option
    from reasoning.strategies import available

    for name, cls in available().items():
        options = cls.options()
        assert options and all(o.help for o in options.values()), name
        assert set(cls().describe()) >= {"strategy", *options}, name  # (compute-optimal adds its bins)
        if cls.size_option is not None:
            assert cls.size_option in options, name
        assert main(["strategies", name]) == 0
        shown = capsys.readouterr().out
        for option in options.values():
            assert option.name in shown and option.help[:20] in shown.replace("\n", " "), (name, option.name)


def test_options_validate_in_one_place_and_accept_positional_order():
    from reasoning.strategies import SelfConsistency, SummarizationLoop

    assert SummarizationLoop(30, 12, max_rounds=3).describe()["summary_tokens"] == 12
    for bad in ({"n": 0}, {"n": True}, {"n": "8"}, {"temperature": float("nan")}, {"bogus": 1}):
        with pytest.raises(ValueError):
            SelfConsistency(**bad)
    with pytest.raises(rz.ConfigError, match="n must be >= 1 \\(got 0\\)"):
        create("self-consistency", n=0)


class _ScoresByAnswer(rz.Verifier):
    """A verifier whose score of a sample is fixed by its answer (no model calls)."""

    name = "by-answer"

    def __init__(self, scores):
        self.scores = scores

    async def score(self, ctx, samples):
        return [self.scores.get(s.answer, 0.0) for s in samples]


def test_best_of_n_max_keeps_the_best_sample_and_sum_the_best_answer():
    from reasoning.strategies import BestOfN

    verifier = _ScoresByAnswer({"1": 0.9, "2": 0.5})
    backend = Scripted(["1", "2", "2"])
    assert rz.solve("q", BestOfN(n=3, verifier=verifier, aggregate="max"), backend).answer == "1"
    backend = Scripted(["1", "2", "2"])
    result = rz.solve("q", BestOfN(n=3, verifier=verifier, aggregate="sum"), backend)
    assert result.answer == "2" and result.info["scores"] == [0.9, 0.5, 0.5]  # 0.5 + 0.5 > 0.9
    # The same samples where the two votes for 2 score less together than the one for 1: the
    # scores decide, not the count (a plain majority would say 2).
    weak = _ScoresByAnswer({"1": 0.9, "2": 0.3})
    assert rz.solve("q", BestOfN(n=3, verifier=weak, aggregate="sum"), Scripted(["1", "2", "2"])).answer == "1"


def test_confidence_scores_higher_mean_logprob_higher():
    import asyncio

    from reasoning.budget import Ledger
    from reasoning.context import Sample
    from reasoning.trace import Trace
    from reasoning.types import Completion
    from reasoning.verifiers import Confidence

    sure = Sample("a", "1", Completion("a", 3, token_logprobs=[-0.01, -0.02, -0.01]))
    unsure = Sample("b", "2", Completion("b", 3, token_logprobs=[-2.0, -1.5, -3.0]))
    ctx = rz.Context(rz.Problem("q"), Scripted(), Ledger(), Trace(), messages=(), extract=lambda t: None)
    high, low = asyncio.run(Confidence().score(ctx, [sure, unsure]))
    assert high > low and high == pytest.approx(math.exp(-0.04 / 3)) and low == pytest.approx(math.exp(-6.5 / 3))
