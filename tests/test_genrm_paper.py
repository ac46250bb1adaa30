"""GenRM best-of-N and pessimistic best-of-N as their papers define them (issue 22), Scripted backend.

GenRM (Singhi et al. 2025, official sc-genrm-scaling): answerless solutions score 0 and never
win; the 2-shot paper prompt and 1,024 verification tokens as options; cost reported as generated
tokens beside prompt + completion. Heimdall (Shi & Jin 2025): r̄_k − α·sqrt(ln(N·M)/(N_k·M + 1)).
"""

import asyncio
import math
import re

import pytest
from reasoning.strategies import create
from reasoning.strategies.genrm_best_of_n import GenRMBestOfN
from reasoning.strategies.pessimistic_best_of_n import PessimisticBestOfN
from reasoning.verifiers import Pessimistic, wilson_lower_bound
from reasoning.verifiers.pessimistic import group_by_answer, heimdall_score

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.context import Sample


def solve(strategy, backend, budget=None, **kw):
    return asyncio.run(rz.asolve("What is 6*7?", strategy, backend, budget, **kw))


def draw(strategy, backend, n):
    """The strategy's candidates (scored) and its ledger, as a sweep draws a pool."""
    from reasoning.answers import extract_answer
    from reasoning.budget import Ledger
    from reasoning.trace import Trace

    ledger = Ledger()
    ctx = rz.Context(rz.Problem("What is 6*7?"), backend, ledger, Trace(),
                     messages=(rz.Message("user", "What is 6*7?"),), extract=extract_answer)
    return asyncio.run(strategy.draw(ctx, n)), ledger


def is_verification(request):
    content = request.messages[-1].content
    return "Student's solution" in content or "Teacher Verification:" in content


def verdict(yes: bool) -> str:
    return f"Checking each step... Verification: Is the answer correct (Yes/No)? {'Yes' if yes else 'No'}"


# -- GenRM: solutions without an answer ---------------------------------------------------------


@pytest.mark.parametrize("answerless", ["I am not sure how to go on.", "So the result is \\boxed{}."])
def test_a_solution_without_an_answer_scores_zero_and_never_wins(answerless):
    # The answerless solution is verified Yes, the answered one No: the answered one still wins.
    solutions = [answerless, "Work. \\boxed{41}"]

    def respond(request, index):
        if is_verification(request):
            return verdict("41" not in request.messages[-1].content)
        return solutions[index % 2]

    strategy = GenRMBestOfN(n_solutions=2, k_verifications=2)
    samples, _ = draw(strategy, Scripted(responder=respond, logprobs=False), 2)
    result = strategy.choose(samples)
    assert result.answer == "41"
    assert result.info["scores"] == [0.0, 0.0]
    assert samples[0].score == 1.0  # the verifier said Yes; the strategy zeroes it
    assert "fallback" not in result.info


def test_no_solution_with_an_answer_gives_no_answer():
    def respond(request, index):
        return verdict(True) if is_verification(request) else "I am not sure how to go on."

    result = solve(GenRMBestOfN(n_solutions=2, k_verifications=1), Scripted(responder=respond, logprobs=False))
    assert result.answer is None and result.info["scores"] == [0.0, 0.0]


def test_candidates_whose_chains_all_lack_a_verdict_fall_back_to_the_majority():
    solutions = ["a \\boxed{7}", "b \\boxed{8}", "c \\boxed{8}"]

    def respond(request, index):
        return "I ran out of words" if is_verification(request) else solutions[index % 3]

    result = solve(GenRMBestOfN(n_solutions=3, k_verifications=2), Scripted(responder=respond, logprobs=False))
    assert result.info["chains"] == [2, 2, 2] and result.info["fallback"] == "majority"
    assert result.answer == "8"


# -- GenRM: the paper's prompt and verification length ------------------------------------------


def test_the_papers_two_shot_prompt_and_1024_verification_tokens_are_options():
    def respond(request, index):
        if is_verification(request):
            return verdict("boxed{42}" in request.messages[-1].content)
        return f"Work. \\boxed{{{['41', '42'][index % 2]}}}"

    backend = Scripted(responder=respond, logprobs=False)
    strategy = create("genrm-best-of-n", n_solutions=2, k_verifications=2, verify_prompt="genrm_paper",
                      verify_max_tokens=1024)
    result = solve(strategy, backend, sampling=rz.Sampling(max_tokens=2048))
    assert result.answer == "42" and result.info["scores"] == [0.0, 1.0]
    verifications = [r for r in backend.requests if is_verification(r)]
    assert len(verifications) == 2 and all(r.max_tokens == 1024 and r.n == 2 for r in verifications)
    [message] = verifications[0].messages  # one user message, as the paper's template
    assert message.role == "user"
    text = message.content
    # two worked examples, graded No then Yes, then the solution to grade
    assert text.index("Example 1:") < text.index("(Yes/No)? No") < text.index("Example 2:") < text.index("(Yes/No)? Yes")
    assert text.count("Expected Solution:") == 2 and text.rstrip().endswith("Teacher Verification:")
    assert "What is 6*7?" in text and "Work. \\boxed{41}" in text
    # laid out as the official template's last lines: "Question: {}\n\nSolution: {}\n\nTeacher Verification:"
    assert re.search(r"\nQuestion: What is 6\*7\?\n\nSolution: Work\. \\boxed\{4[12]\}\n\nTeacher Verification:$",
                     text.rstrip())
    # the defaults stay this project's own zero-shot prompt at 512 tokens
    default = GenRMBestOfN()
    assert default.verifier.prompt == "genrm_verify" and default.verifier.max_tokens == 512


# -- GenRM: cost as the paper counts it, beside prompt + completion -----------------------------


def test_cost_reports_generated_tokens_beside_prompt_plus_completion():
    def respond(request, index):
        return verdict(True) if is_verification(request) else f"s{index} \\boxed{{{index}}}"

    # solutions 10 tokens each, verification chains 30 each
    backend = Scripted(responder=respond, logprobs=False, completion_tokens=lambda t: 30 if "Verification" in t else 10)
    result = solve(GenRMBestOfN(n_solutions=3, k_verifications=2), backend)
    info = result.info
    assert info["solution_tokens"] == 3 * 10 and info["verification_tokens"] == 3 * 2 * 30
    assert info["generated_tokens"] == 30 + 180 == result.usage.completion_tokens
    assert info["prompt_tokens"] == result.usage.prompt_tokens > 0  # one solution call + 3 verification calls
    assert info["tokens"] == info["generated_tokens"] + info["prompt_tokens"] == result.usage.tokens
    # A subset (as a sweep chooses among a pool's candidates) reports its own cost.
    strategy = GenRMBestOfN(n_solutions=3, k_verifications=2)
    samples, ledger = draw(strategy, backend, 3)
    assert strategy.choose(samples).info["tokens"] == ledger.usage().tokens
    solution_prompt = samples[0].info["call_prompt_tokens"]
    assert solution_prompt > 0 and all(s.info["call_prompt_tokens"] == solution_prompt for s in samples)
    subset = strategy.choose(samples[:2]).info
    assert subset["generated_tokens"] == 2 * 10 + 2 * 2 * 30
    assert subset["prompt_tokens"] == solution_prompt + sum(s.info["genrm"]["prompt_tokens"] for s in samples[:2])


# -- Heimdall's pessimistic verification ---------------------------------------------------------


def test_heimdall_score_matches_the_formula_by_hand():
    # N = 4 solutions, M = 2 verifications: N·M = 8, ln 8 = 2.0794415.
    # Answer 7: N_k = 1, r̄ = 1.0 -> 1 - 0.1·sqrt(2.0794415 / 3) = 1 - 0.1·0.8325546 = 0.9167445
    # Answer 8: N_k = 3, r̄ = 5/6 -> 0.8333333 - 0.1·sqrt(2.0794415 / 7) = 0.8333333 - 0.0545035 = 0.7788298
    assert heimdall_score(1.0, 2, 8, 0.1) == pytest.approx(0.9167445, abs=1e-7)
    assert heimdall_score(5 / 6, 6, 8, 0.1) == pytest.approx(0.7788298, abs=1e-7)
    # alpha = 1: 1 - 0.8325546 = 0.1674454 and 0.8333333 - 0.5450349 = 0.2882984
    assert heimdall_score(1.0, 2, 8, 1.0) == pytest.approx(0.1674454, abs=1e-7)
    assert heimdall_score(5 / 6, 6, 8, 1.0) == pytest.approx(0.2882984, abs=1e-7)
    assert heimdall_score(0.4, 3, 1, 0.5) == pytest.approx(0.4)  # ln(1) = 0: no penalty
    assert heimdall_score(0.0, 0, 0, 0.1) == 0.0  # no verdict at all


def test_alpha_on_a_plus_minus_one_reward_scale_is_half_of_alpha_here():
    # The docstring's caveat (issue 22): if the paper's r_k is a mean of ±1 verdicts, 2·r̄ − 1,
    # its alpha ranks answers as alpha / 2 does on our 0/1 scale. By hand, N·M = 8:
    # ±1 scale, alpha 0.2: answer 7 (r̄ = 1, N_k·M = 2): 1 − 0.2·0.8325546 = 0.8334891;
    #                      answer 8 (r̄ = 5/6, N_k·M = 6): 2/3 − 0.2·0.5450349 = 0.5576597;
    # 0/1 scale, alpha 0.1: 0.9167445 and 0.7788298 (above), and 2·score − 1 gives the same.
    assert heimdall_score(1.0, 2, 8, 0.2) == pytest.approx(0.8334891, abs=1e-7)
    assert heimdall_score(2 / 3, 6, 8, 0.2) == pytest.approx(0.5576597, abs=1e-7)
    for mean, chains in [(1.0, 2), (5 / 6, 6), (0.5, 3), (0.0, 1)]:
        assert heimdall_score(2 * mean - 1, chains, 8, 0.2) == pytest.approx(
            2 * heimdall_score(mean, chains, 8, 0.1) - 1, abs=1e-12)


def test_groups_score_with_the_papers_counts():
    samples = [Sample("a", "7", info={"genrm": {"p_yes": [1.0, 1.0], "chains": 2}})]
    samples += [Sample("b", "8", info={"genrm": {"p_yes": p, "chains": 2}}) for p in ([1.0, 1.0], [1.0, 0.0], [1.0, 1.0])]
    groups = group_by_answer(samples, [1.0, 1.0, 0.5, 1.0])
    assert [(g.key, g.chains) for g in groups] == [("7", 2), ("8", 6)]
    assert groups[0].lower == pytest.approx(0.9167445, abs=1e-7)
    assert groups[1].lower == pytest.approx(0.7788298, abs=1e-7)
    wilson = group_by_answer(samples, [1.0, 1.0, 0.5, 1.0], rule="wilson")
    assert [g.lower for g in wilson] == [pytest.approx(wilson_lower_bound(2, 2)), pytest.approx(wilson_lower_bound(5, 6))]
    # a chain without a verdict (None) counts in neither the mean nor N·M
    samples[0].info["genrm"]["p_yes"] = [1.0, None]
    first, _ = group_by_answer(samples, [1.0] * 4)
    assert first.chains == 1 and first.lower == pytest.approx(1 - 0.1 * math.sqrt(math.log(7) / 2))
    with pytest.raises(ValueError):
        group_by_answer(samples, [1.0] * 4, rule="ucb")


def pessimistic_backend(no_for_8=1, no_for_7=0):
    """7 once, 8 three times (4 solutions); 2 chains each: 7 gets ``no_for_7`` No verdicts, the
    8s' six chains ``no_for_8`` No verdicts (the first ones)."""
    said = {"7": 0, "8": 0}
    nos = {"7": no_for_7, "8": no_for_8}

    def respond(request, index):
        if is_verification(request):
            key = "7" if "boxed{7}" in request.messages[-1].content else "8"
            said[key] += 1
            return verdict(said[key] > nos[key])
        return f"Work. \\boxed{{{['7', '8', '8', '8'][index % 4]}}}"

    return Scripted(responder=respond, logprobs=False)


def test_heimdall_default_follows_the_mean_where_wilson_follows_the_count():
    # 7: r̄ = 1 over 2 chains; 8: r̄ = 5/6 over 6 chains (worked out above).
    heimdall = solve(PessimisticBestOfN(n_solutions=4, k_verifications=2), pessimistic_backend())
    assert heimdall.answer == "7"
    assert heimdall.info["scores"][0] == pytest.approx(0.9167445, abs=1e-7)
    assert heimdall.info["scores"][1:] == [pytest.approx(0.7788298, abs=1e-7)] * 3
    strategy = PessimisticBestOfN(n_solutions=4, k_verifications=2)
    samples, _ = draw(strategy, pessimistic_backend(), 4)
    assert samples[0].info["pessimistic"]["total_chains"] == 8 and samples[1].info["pessimistic"]["chains"] == 6
    wilson = solve(PessimisticBestOfN(n_solutions=4, k_verifications=2, rule="wilson"), pessimistic_backend())
    assert wilson.answer == "8"
    assert wilson.info["scores"][0] == pytest.approx(0.3423720, abs=1e-7)
    assert wilson.info["scores"][1] == pytest.approx(0.4364906, abs=1e-7)


def test_a_larger_alpha_weighs_the_count_more():
    result = solve(PessimisticBestOfN(n_solutions=4, k_verifications=2, alpha=1.0), pessimistic_backend())
    assert result.answer == "8"
    assert result.info["scores"][0] == pytest.approx(0.1674454, abs=1e-7)
    assert result.info["scores"][1] == pytest.approx(0.2882984, abs=1e-7)


def test_every_verdict_no_ranks_answers_by_their_solutions():
    result = solve(PessimisticBestOfN(n_solutions=4, k_verifications=2), pessimistic_backend(no_for_8=6, no_for_7=2))
    assert result.answer == "8"  # 0 - 0.0545 beats 0 - 0.0833: the majority
    assert result.info["scores"][0] == pytest.approx(-0.0832555, abs=1e-7)


def test_an_answerless_group_never_wins_the_pessimistic_choice():
    solutions = ["no idea", "Work. \\boxed{8}"]

    def respond(request, index):
        if is_verification(request):
            return verdict("boxed{8}" not in request.messages[-1].content)
        return solutions[index % 2]

    result = solve(PessimisticBestOfN(n_solutions=2, k_verifications=2), Scripted(responder=respond, logprobs=False))
    assert result.answer == "8" and result.info["scores"][0] == 0.0


def test_rule_alpha_and_z_reach_the_verifier_and_are_validated():
    default = create("pessimistic-best-of-n")
    assert default.rule == "heimdall" and default.verifier.rule == "heimdall" and default.verifier.alpha == 0.1
    wilson = create("pessimistic-best-of-n", rule="wilson", z=1.0)
    assert wilson.verifier.rule == "wilson" and wilson.verifier.z == 1.0
    assert create("pessimistic-best-of-n", alpha=0.5).verifier.alpha == 0.5
    for bad in [{"rule": "ucb"}, {"alpha": -0.1}]:
        with pytest.raises(ValueError):
            create("pessimistic-best-of-n", **bad)
    with pytest.raises(ValueError):
        Pessimistic(rule="ucb")
