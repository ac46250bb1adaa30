"""SIFT on the Scripted backend: the sticker, the two predictions, forward and inverse
refinements until they agree, the fallback, the refinement count and the budget's stop."""

import asyncio

import pytest
from reasoning.strategies import create
from reasoning.strategies.sift import Sift

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.errors import ConfigError

PROBLEM = "Apples cost 10 dollars per kilo. Ann buys 3 kilos. How much does she pay?"


def kind(request):
    user = request.messages[-1].content
    system = request.messages[0].content if len(request.messages) > 1 else ""
    if "Extract the key facts" in user:
        return "sticker"
    if "Write an improved sticker" in user:
        return "forward"
    if "Reconstruct the sticker" in user:
        return "inverse"
    if "\\boxed" in system and user.startswith(PROBLEM) and "STICKER" in user:
        return "both"
    if "\\boxed" in system and "STICKER" in user:
        return "alone"
    if user == PROBLEM:
        return "query"
    raise AssertionError(f"unexpected call: {user[:80]!r}")


class Script:
    """Stickers are numbered STICKER-1, -2, ...; ``answers[stage]`` gives (alone, both) answers
    per consensus check; the plain query answers ``plain``."""

    def __init__(self, answers, plain="30"):
        self.answers, self.plain = list(answers), plain
        self.calls: list[tuple[str, str]] = []
        self.stickers = 0

    def __call__(self, request, index):
        what, user = kind(request), request.messages[-1].content
        self.calls.append((what, user))
        if what in ("sticker", "forward", "inverse"):
            self.stickers += 1
            return f"**Conditions:**\n1. fact\n\n**Question:**\nSTICKER-{self.stickers}"
        if what == "query":
            return f"Plainly, \\boxed{{{self.plain}}}"
        check = sum(1 for w, _ in self.calls if w == "both") - (what == "both")
        alone, both = self.answers[check]
        return f"Step by step. \\boxed{{{alone if what == 'alone' else both}}}"

    def kinds(self):
        return [k for k, _ in self.calls]


def solve(strategy, script, budget=None):
    backend = Scripted(responder=script)
    return asyncio.run(rz.asolve(PROBLEM, strategy, backend, budget)), backend


def test_agreement_at_once_needs_no_refinement():
    script = Script([("30", "30")])
    result, _ = solve(Sift(), script)
    assert script.kinds() == ["sticker", "alone", "both"]
    assert result.answer == "30" and result.info["route"] == "consensus"
    assert result.info["refinements"] == 0 and result.info["forward"] == 0 and result.info["inverse"] == 0
    assert result.info["stages"] == [{"kind": "sticker", "refinements": 0, "agree": True,
                                      "sticker_answer": "30", "query_answer": "30"}]
    # The sticker-alone prediction sees only the sticker; the other the query, then the sticker.
    alone, both = script.calls[1][1], script.calls[2][1]
    assert PROBLEM not in alone and "STICKER-1" in alone
    assert both.startswith(PROBLEM) and both.endswith("STICKER-1")


def test_forward_optimisation_counts_one_refinement_and_uses_the_new_sticker():
    script = Script([("13", "30"), ("30", "30")])
    result, _ = solve(Sift(), script)
    assert script.kinds() == ["sticker", "alone", "both", "forward", "alone", "both"]
    forward = script.calls[3][1]
    assert PROBLEM in forward and "STICKER-1" in forward  # the query and the sticker it refines
    assert "STICKER-2" in script.calls[4][1] and "STICKER-2" in script.calls[5][1]
    assert result.answer == "30" and result.info["route"] == "consensus"
    assert result.info["refinements"] == 1 and result.info["forward"] == 1 and result.info["inverse"] == 0
    assert [(s["kind"], s["agree"]) for s in result.info["stages"]] == [("sticker", False), ("forward", True)]
    stages = [n for n in result.trace.nodes if n.kind == "span" and n.name.startswith("stage-")]
    assert [(n.name, n.info["kind"], n.info["refinements"]) for n in stages] == [
        ("stage-1", "sticker", 0), ("stage-2", "forward", 0)]


def test_inverse_generation_starts_from_the_query_and_sticker_prediction():
    script = Script([("13", "30"), ("13", "31"), ("30", "30")])
    result, _ = solve(Sift(), script)
    assert script.kinds() == ["sticker", "alone", "both", "forward", "alone", "both",
                              "inverse", "forward", "alone", "both"]
    inverse = script.calls[6][1]
    assert "\\boxed{31}" in inverse and PROBLEM not in inverse  # the latest query+sticker prediction only
    assert "STICKER-3" in script.calls[7][1] and PROBLEM in script.calls[7][1]  # then refined forward
    assert "STICKER-4" in script.calls[8][1]
    assert result.answer == "30" and result.info["route"] == "consensus"
    assert (result.info["forward"], result.info["inverse"], result.info["refinements"]) == (2, 1, 3)
    assert [s["kind"] for s in result.info["stages"]] == ["sticker", "forward", "inverse"]


def test_no_agreement_falls_back_to_the_plain_prediction():
    script = Script([("13", "30"), ("13", "31"), ("12", "30")], plain="30")
    result, backend = solve(Sift(), script)
    assert script.kinds()[-1] == "query" and len(script.calls) == 11
    assert result.answer == "30" and result.info["route"] == "fallback"
    assert result.info["refinements"] == 3 and result.usage.calls == 11
    assert backend.requests[-1].messages[-1].content == PROBLEM  # the problem's own prompt

    script = Script([("13", "30"), ("13", "31"), ("12", "33")])
    result, _ = solve(Sift(fallback=False), script)
    assert "query" not in script.kinds() and result.answer == "33" and result.info["route"] == "no-fallback"


def test_more_rounds_refine_more_and_rounds_zero_refines_never():
    disagree = [("1", "2")] * 5 + [("7", "7")]
    script = Script(disagree)
    result, _ = solve(Sift(rounds=2), script)
    # Round 1: forward, inverse; round 2: forward, inverse (agrees at the 6th check).
    assert [s["kind"] for s in result.info["stages"]] == ["sticker", "forward", "inverse", "forward", "inverse"]
    assert result.info["route"] == "fallback" and result.info["refinements"] == 6

    script = Script(disagree[:3] + [("7", "7")])
    result, _ = solve(Sift(rounds=2), script)
    assert [s["kind"] for s in result.info["stages"]] == ["sticker", "forward", "inverse", "forward"]
    assert result.answer == "7" and result.info["refinements"] == 4

    script = Script([("1", "2")])
    result, _ = solve(Sift(rounds=0), script)
    assert script.kinds() == ["sticker", "alone", "both", "query"] and result.info["refinements"] == 0

    script = Script([("1", "2"), ("1", "3")])
    result, _ = solve(Sift(inverse=False), script)
    assert script.kinds() == ["sticker", "alone", "both", "forward", "alone", "both", "query"]
    assert (result.info["forward"], result.info["inverse"]) == (1, 0)


def test_answers_agree_after_normalisation():
    script = Script([("30.0", "30")])
    result, _ = solve(Sift(), script)
    assert result.info["route"] == "consensus" and result.answer == "30.0"


def test_budget_stops_mid_way_with_the_latest_query_and_sticker_answer():
    # Calls: sticker, alone, both (disagree), forward, alone, both -> the 7th (inverse) is refused.
    script = Script([("13", "30"), ("14", "31"), ("30", "30")])
    result, _ = solve(Sift(), script, rz.Budget(calls=6))
    assert script.kinds() == ["sticker", "alone", "both", "forward", "alone", "both"]
    assert result.stopped_by == "calls" and result.info["route"] == "budget"
    assert result.answer == "31" and result.info["refinements"] == 1

    # Only the sticker fits: no prediction, no answer.
    script = Script([("1", "1")])
    result, _ = solve(Sift(), script, rz.Budget(calls=1))
    assert script.kinds() == ["sticker"] and result.answer is None and result.info["route"] == "budget"

    # The fallback refused: the latest query+sticker prediction is the answer.
    script = Script([("1", "2"), ("1", "3"), ("1", "4")])
    result, _ = solve(Sift(), script, rz.Budget(calls=10))
    assert len(script.calls) == 10 and result.answer == "4" and result.info["route"] == "budget"


def test_one_refused_prediction_is_not_a_consensus():
    # The 5th call (the second check's sticker-alone prediction) fits, the 6th does not.
    script = Script([("13", "30"), ("30", "30")])
    result, _ = solve(Sift(), script, rz.Budget(calls=5))
    assert script.kinds() == ["sticker", "alone", "both", "forward", "alone"]
    assert result.info["route"] == "budget" and result.answer == "30"  # the first check's query+sticker answer
    assert result.info["stages"][-1]["agree"] is False


def test_bad_options_are_config_errors_naming_them():
    with pytest.raises(ConfigError, match="rounds"):
        create("sift", rounds=-1)
    with pytest.raises(ConfigError, match="sticker_tokens"):
        create("sift", sticker_tokens=0)
    assert isinstance(create("sift", n=8), Sift)  # no size option: --n is ignored


@pytest.mark.slow
def test_sift_on_the_embedded_model(local_backend):
    """Tiny settings (one forward refinement at most, short outputs); whatever the model writes,
    the calls made are the stages recorded."""
    strategy = Sift(rounds=1, inverse=False, sticker_tokens=64, max_tokens=128, temperature=0.0)
    result = asyncio.run(rz.asolve("Tom has 3 apples and buys 2 more. How many apples does he have now?",
                                   strategy, local_backend, rz.Budget(tokens=6000)))
    info = result.info
    stages = info["stages"]
    assert [s["kind"] for s in stages] in (["sticker"], ["sticker", "forward"])
    assert info["refinements"] == info["forward"] == len(stages) - 1 and info["inverse"] == 0
    assert result.usage.calls == 1 + 2 * len(stages) + info["refinements"] + (info["route"] == "fallback")
    if info["route"] == "consensus":
        assert stages[-1]["agree"] and result.answer == stages[-1]["sticker_answer"]
    else:
        assert info["route"] == "fallback" and not any(s["agree"] for s in stages)
    assert isinstance(info["sticker"], str) and info["sticker"].strip()  # the last sticker is kept


def test_the_sweep_config_compares_sift_variants_with_self_consistency():
    from pathlib import Path

    from reasoning.benchmarks.sweep import SweepConfig

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "sweeps" / "sift_gsm8k.yaml"
    assert "Run on 2026-11-29 (complete)" in path.read_text()  # the header says what was published
    config = SweepConfig.from_file(path, out="unused")
    assert config.x_axis == "tokens" and config.n == [1, 2, 4, 8, 16]
    variants = {s.key: (s.options.get("rounds", 1), config.points(s.key)) for s in config.strategies if s.name == "sift"}
    assert variants == {"sift": (1, [{"n": 1}]), "sift rounds=0": (0, [{"n": 1}]), "sift rounds=2": (2, [{"n": 1}])}
    for spec in config.strategies:
        create(spec.name, **spec.options)  # every variant's options are valid
