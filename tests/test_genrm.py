"""GenRM verification, GenRM best-of-N, pessimistic selection (Scripted backend; one slow Local test)."""

import asyncio
import math
import re

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.context import Sample
from reasoning.strategies import create
from reasoning.strategies.genrm_best_of_n import GenRMBestOfN, genrm_compute, sc_matched_n
from reasoning.strategies.pessimistic_best_of_n import PessimisticBestOfN
from reasoning.verifiers import VERIFIERS, GenRM, Pessimistic, make_verifier, parse_verdict, wilson_lower_bound
from reasoning.verifiers.genrm import chain_p_yes, verdict_token_index
from reasoning.verifiers.pessimistic import group_by_answer

_TOKEN = re.compile(r"\s*\S+")


class WordScripted(Scripted):
    """Scripted with one token per word: token ids, token texts and chosen logprobs.

    ``verdict_logprob`` maps "yes"/"no" to the logprob of a verdict-like token; every other
    token gets -0.05. Completion tokens = words, so the ledger and the logprobs agree.
    """

    def __init__(self, *args, verdict_logprob=None, **kw):
        super().__init__(*args, completion_tokens=lambda text: max(1, len(_TOKEN.findall(text))), **kw)
        self.verdict_logprob = verdict_logprob or {}
        self.vocab: dict[str, int] = {}

    def token_texts(self, ids):
        inverse = {i: t for t, i in self.vocab.items()}
        return [inverse[i] for i in ids]

    async def generate(self, request):
        response = await super().generate(request)
        for completion in response.completions:
            pieces = _TOKEN.findall(completion.text)
            completion.token_ids = [self.vocab.setdefault(p, len(self.vocab)) for p in pieces]
            if request.logprobs:
                completion.token_logprobs = [
                    self.verdict_logprob.get(re.sub(r"[^a-z]", "", p.lower()), -0.05) for p in pieces
                ]
        return response


def is_verification(request):
    return "Student's solution" in request.messages[-1].content


def verdict(yes: bool, tail: str = "") -> str:
    return f"Checking each step... Is the answer correct (Yes/No)? {'Yes' if yes else 'No'}{tail}"


def solve(strategy, backend, budget=None, **kw):
    return asyncio.run(rz.asolve("What is 6*7?", strategy, backend, budget, **kw))


async def score(verifier, backend, texts, problem="What is 6*7?"):
    from reasoning.budget import Ledger
    from reasoning.trace import Trace

    ctx = rz.Context(rz.Problem(problem), backend, Ledger(), Trace(), messages=(), extract=lambda t: None)
    samples = [Sample(t, None) for t in texts]
    return await verifier.score(ctx, samples), samples


# -- verdict parsing -----------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("blah. Is the answer correct (Yes/No)? Yes", True),
        ("Is the answer correct (Yes/No)? No.", False),
        ("is the answer correct (yes/no)? **Yes**", True),
        ("Is the answer correct (Yes/No)?\nNo", False),
        ("Is the answer correct (Yes/No)? Yes ... wait. Is the answer correct (Yes/No)? No", False),
        ("The answer is correct. Yes.", None),
        ("Is the answer correct (Yes/No)?", None),
    ],
)
def test_parse_verdict(text, expected):
    assert parse_verdict(text)[0] is expected


def test_verdict_token_is_located_past_later_yes_no_words():
    text = "Is the answer correct (Yes/No)? No. No doubt, yes really."
    _, end = parse_verdict(text)
    pieces = _TOKEN.findall(text)
    assert verdict_token_index(text, end, pieces) == pieces.index(" No.")


# -- GenRM scoring -------------------------------------------------------------


def test_genrm_without_logprobs_scores_the_fraction_of_yes_in_one_call_per_candidate():
    pattern = {0: [True, False, True, True], 1: [False, False, False, True]}

    def respond(request, index):
        which = 0 if "SOL-A" in request.messages[-1].content else 1
        return verdict(pattern[which][index % 4])

    backend = Scripted(responder=respond, logprobs=False)
    scores, samples = asyncio.run(score(GenRM(k=4), backend, ["SOL-A", "SOL-B"]))
    # index runs over both calls; each call draws 4 consecutive indices starting at a multiple of 4
    assert sorted(scores) == [0.25, 0.75]
    assert scores[0] == 0.75 and scores[1] == 0.25
    assert len(backend.requests) == 2 and all(r.n == 4 and not r.logprobs for r in backend.requests)
    assert samples[0].info["genrm"]["verdicts"] == [True, False, True, True]
    assert samples[0].info["genrm"]["sources"] == ["verdict"] * 4


def test_genrm_p_yes_from_the_verdict_token_logprob():
    answers = [verdict(True, tail=" No more to say."), verdict(False)]
    backend = WordScripted(
        responder=lambda request, index: answers[index % 2],
        verdict_logprob={"yes": math.log(0.8), "no": math.log(0.6)},
    )
    (value,), (sample,) = asyncio.run(score(GenRM(k=2), backend, ["x"]))
    # chain 1 sampled Yes with p=0.8 -> 0.8; chain 2 sampled No with p=0.6 -> 1-0.6 = 0.4
    assert value == pytest.approx((0.8 + 0.4) / 2)
    assert sample.info["genrm"]["p_yes"] == pytest.approx([0.8, 0.4])
    assert sample.info["genrm"]["sources"] == ["logprob", "logprob"]
    assert backend.requests[0].logprobs is True


def test_plain_scripted_logprobs_without_token_ids_fall_back_to_the_verdict():
    backend = Scripted(responder=lambda r, i: verdict(True))  # random logprobs, no token ids
    (value,), (sample,) = asyncio.run(score(GenRM(k=3), backend, ["x"]))
    assert value == 1.0 and sample.info["genrm"]["sources"] == ["verdict"] * 3


def test_chain_without_verdict_is_dropped_from_the_mean():
    # The paper's get_solution_score: unparseable verifications are NaN and left out of the mean.
    texts = [verdict(True), "I ran out of words", verdict(False), "Yes it is."]
    backend = Scripted(responder=lambda r, i: texts[i % 4], logprobs=False)
    (value,), (sample,) = asyncio.run(score(GenRM(k=4), backend, ["x"]))
    assert value == 0.5  # (1 + 0) / 2, not (1 + 0 + 0 + 0) / 4
    record = sample.info["genrm"]
    assert record["verdicts"] == [True, None, False, None] and record["p_yes"] == [1.0, None, 0.0, None]
    assert record["chains"] == 4 and record["judged"] == 2 and record["sources"][1] == "none"
    # no verdict at all: score 0
    backend = Scripted(responder=lambda r, i: "no verdict here", logprobs=False)
    (value,), (sample,) = asyncio.run(score(GenRM(k=2), backend, ["x"]))
    assert value == 0.0 and sample.info["genrm"]["judged"] == 0


def test_chain_p_yes_requires_the_located_token_to_agree_with_the_verdict():
    sample = Sample(verdict(True), None, rz.Completion(verdict(True), 3, token_logprobs=[-0.1] * 3, token_ids=[0, 1, 2]))

    class Pieces:
        def token_texts(self, ids):
            return ["x", "y", "z"]  # no yes/no token: cannot locate -> hard verdict

    assert chain_p_yes(sample, Pieces()) == (True, 1.0, "verdict")


def test_verifier_names_are_registered():
    assert {"genrm", "pessimistic", "prm"} <= set(VERIFIERS)
    assert isinstance(make_verifier("genrm"), GenRM)


# -- GenRM best-of-N -----------------------------------------------------------


def genrm_backend(solutions, good="42", **kw):
    """Solutions cycle through ``solutions``; verification says Yes iff the solution boxes ``good``."""

    def respond(request, index):
        if is_verification(request):
            return verdict(f"boxed{{{good}}}" in request.messages[-1].content)
        return f"Work. \\boxed{{{solutions[index % len(solutions)]}}}"

    return Scripted(responder=respond, **kw)


def test_genrm_best_of_n_picks_the_verified_candidate_over_the_majority():
    backend = genrm_backend(["41", "41", "41", "42"], logprobs=False)
    result = solve(GenRMBestOfN(n_solutions=4, k_verifications=3), backend)
    assert result.answer == "42"
    assert result.info["scores"] == [0.0, 0.0, 0.0, 1.0]
    assert result.info["chains"] == [3, 3, 3, 3]
    # one solution call + one verification call per candidate, all from one ledger
    assert [r.n for r in backend.requests] == [4, 3, 3, 3, 3]
    assert result.usage.calls == 5
    assert sum(c.usage.get("tokens", 0) for c in result.trace.calls()) == result.usage.tokens


def test_genrm_best_of_n_ties_go_to_the_earlier_solution():
    backend = genrm_backend(["5", "9"], good="nothing", logprobs=False)
    result = solve(GenRMBestOfN(n_solutions=2, k_verifications=1), backend)
    assert result.answer == "5" and result.info["scores"] == [0.0, 0.0]


def test_no_verification_at_all_falls_back_to_the_majority_vote():
    backend = genrm_backend(["7", "8", "8"], logprobs=False)
    result = solve(GenRMBestOfN(n_solutions=3, k_verifications=2), backend, rz.Budget(calls=1))
    assert result.answer == "8" and result.info["fallback"] == "majority"
    assert result.info["chains"] == [0, 0, 0] and result.usage.calls == 1
    assert result.stopped_by == "calls"


def test_partly_verified_candidates_compete_on_the_chains_they_got():
    backend = genrm_backend(["41", "42", "41"], logprobs=False)
    # 1 solution call + 2 verification calls allowed: one candidate stays unverified (score 0)
    result = solve(GenRMBestOfN(n_solutions=3, k_verifications=2), backend, rz.Budget(calls=3))
    assert sorted(result.info["chains"]) == [0, 2, 2]
    assert "fallback" not in result.info
    assert result.usage.calls <= 3


def test_solution_share_splits_the_token_budget_and_usage_stays_within_it():
    backend = genrm_backend(["41", "42"], logprobs=False, completion_tokens=50)
    budget = rz.Budget(tokens=2000)
    sampling = rz.Sampling(max_tokens=100, min_tokens=16)
    result = solve(GenRMBestOfN(n_solutions=8, k_verifications=2, solution_share=0.25, verify_max_tokens=60),
                   backend, budget, sampling=sampling)
    assert result.usage.tokens <= 2000
    slices = [n for n in result.trace.nodes if n.kind == "span" and n.name == "solutions"]
    assert slices and slices[0].info["budget"] == {"tokens": 500}
    solutions = backend.requests[0]
    assert solutions.n < 8  # shrunk to fit its 25 % slice
    assert result.info["n_solutions"] == solutions.n
    verification_tokens = result.usage.tokens - sum(
        c.usage["tokens"] for c in result.trace.calls() if c.name == "solutions"
    )
    assert verification_tokens > 500  # the verifications got the larger share
    assert sum(c.usage.get("tokens", 0) for c in result.trace.calls()) == result.usage.tokens


def test_compute_helpers_match_the_paper_accounting():
    assert genrm_compute(4, 4, 0.5) == 12.0
    assert sc_matched_n(4, 4, 0.5) == 12
    assert genrm_compute(4, 2, 1.3) == pytest.approx(4 * (1 + 2.6))
    assert sc_matched_n(4, 2, 1.3) == 14  # floor: never more compute than GenRM
    assert sc_matched_n(1, 0, 0.0) == 1


def test_outcome_reports_observed_lambda_and_matched_sc_n():
    def respond(request, index):
        return verdict(True) if is_verification(request) else "s \\boxed{1}"

    backend = Scripted(responder=respond, logprobs=False, completion_tokens=lambda t: 30 if "Yes" in t else 10)
    result = solve(GenRMBestOfN(n_solutions=2, k_verifications=2), backend)
    assert result.info["lambda"] == pytest.approx(3.0)
    assert result.info["compute"] == pytest.approx(2 * (1 + 3.0 * 2))
    assert result.info["sc_matched_n"] == 14


def test_registry_creates_both_strategies_from_loose_options():
    s = create("genrm-best-of-n", n_solutions=2, k_verifications=3, n=9)
    assert isinstance(s, GenRMBestOfN) and s.verifier.k == 3
    p = create("pessimistic-best-of-n", z=1.0)
    assert isinstance(p, PessimisticBestOfN) and p.verifier.z == 1.0


# -- pessimistic ---------------------------------------------------------------


def test_wilson_lower_bound_values():
    assert wilson_lower_bound(0, 0) == 0.0
    assert wilson_lower_bound(1, 1) == pytest.approx(0.2065, abs=1e-4)
    assert wilson_lower_bound(6, 6) > wilson_lower_bound(2, 2) > wilson_lower_bound(1, 1)
    assert wilson_lower_bound(5, 10, z=0.0) == 0.5  # z = 0: the mean


def test_groups_pool_chains_and_many_consistent_yes_beat_one_lucky_score():
    samples = [Sample("a", "7", info={"genrm": {"p_yes": [1.0], "chains": 1}})]
    samples += [Sample("b", "8", info={"genrm": {"p_yes": [0.9, 0.85], "chains": 2}}) for _ in range(3)]
    groups = group_by_answer(samples, [1.0, 0.875, 0.875, 0.875], rule="wilson")
    assert [g.key for g in groups] == ["7", "8"]
    assert groups[1].chains == 6 and groups[1].members == [1, 2, 3]
    assert groups[1].lower > groups[0].lower


def test_pessimistic_best_of_n_prefers_the_consistently_verified_answer():
    # 7 once, verified Yes twice; 8 three times, every chain Yes.
    def respond(request, index):
        if is_verification(request):
            return verdict(True)
        return f"Work. \\boxed{{{['7', '8', '8', '8'][index % 4]}}}"

    backend = Scripted(responder=respond, logprobs=False)
    mean = solve(GenRMBestOfN(n_solutions=4, k_verifications=2), backend)
    assert mean.answer == "7"  # all means tie at 1.0: the earliest wins
    backend = Scripted(responder=respond, logprobs=False)
    pessimistic = solve(PessimisticBestOfN(n_solutions=4, k_verifications=2, rule="wilson"), backend)
    assert pessimistic.answer == "8"
    assert pessimistic.info["scores"][1] == pytest.approx(wilson_lower_bound(6, 6))
    assert pessimistic.info["scores"][0] == pytest.approx(wilson_lower_bound(2, 2))


def test_pessimistic_verifier_wraps_any_base_verifier():
    class Fixed(GenRM):
        async def score(self, ctx, samples):
            return [0.9, 1.0]

    async def go():
        from reasoning.budget import Ledger
        from reasoning.trace import Trace

        ctx = rz.Context(rz.Problem("p"), Scripted(), Ledger(), Trace(), messages=(), extract=lambda t: None)
        samples = [Sample("a", "1"), Sample("b", "1")]
        return await Pessimistic(Fixed(), z=0.0, rule="wilson").score(ctx, samples), samples

    scores, samples = asyncio.run(go())
    assert scores == [pytest.approx(0.95)] * 2 and samples[0].info["pessimistic"]["chains"] == 2


# -- one real GenRM call ---------------------------------------------------------


@pytest.mark.slow
def test_genrm_on_the_local_model():
    """One real GenRM call: two GSM8K solutions (right, wrong), k=2 chains each, logprobs on."""
    from reasoning.budget import Ledger
    from reasoning.trace import Trace

    problem = (
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?"
    )
    solutions = [
        "In May she sold 48 / 2 = 24 clips. Altogether 48 + 24 = 72. The answer is \\boxed{72}.",
        "In May she sold 48 * 2 = 96 clips. Altogether 48 + 96 = 144. The answer is \\boxed{144}.",
    ]
    backend = rz.backends.Local()
    ledger, trace = Ledger(rz.Budget(tokens=4000)), Trace()
    ctx = rz.Context(rz.Problem(problem), backend, ledger, trace, messages=(), extract=lambda t: None)
    samples = [Sample(t, None) for t in solutions]
    scores = asyncio.run(GenRM(k=2, max_tokens=96).score(ctx, samples))
    calls = trace.calls()
    assert len(calls) == 2 and all(c.request["logprobs"] and c.request["n"] == 2 for c in calls)
    assert sum(c.usage["tokens"] for c in calls) == ledger.usage().tokens <= 4000
    # Each score recomputed from its own call's recorded chains: the verdicts parsed again, each
    # chain's P(Yes) as its source says, the score the mean over the chains that count.
    for sample, score in zip(samples, scores):
        record = sample.info["genrm"]
        [call] = [c for c in calls if any(sample.text in m["content"] for m in c.request["messages"])]
        assert record["chains"] == 2 and record["tokens"] == [c["completion_tokens"] for c in call.completions]
        assert record["verdicts"] == [parse_verdict(c["text"])[0] for c in call.completions]
        for verdict, p, source in zip(record["verdicts"], record["p_yes"], record["sources"]):
            if source == "none":
                assert verdict is None and not p  # no verdict: P(Yes) 0 (or None where it is left out)
            elif source == "verdict":
                assert p == (1.0 if verdict else 0.0)
            else:
                assert source == "logprob" and verdict is not None and 0.0 <= p <= 1.0
        counted = [p for p in record["p_yes"] if p is not None]
        assert score == pytest.approx(sum(counted) / len(counted) if counted else 0.0)
    print({i: s.info["genrm"] for i, s in enumerate(samples)}, scores)
