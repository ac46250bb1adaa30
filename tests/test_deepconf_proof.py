"""The analysis of benchmarks/deepconf_proof.py: every figure it reports is recomputed from the
per-trace JSON, so its arithmetic is pinned here on hand-made traces."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasoning.benchmarks.deepconf_proof import _vote, auroc, histogram, offline_at, online_at, replay_at, sc_at, summarize


def problem(keys, correct, tokens, min_conf, stopped=None, threshold=None, replay=None, replay_threshold=None):
    row = {"keys": keys, "correct": correct, "tokens": tokens, "min_conf": min_conf,
           "stopped": stopped or [False] * len(keys), "threshold": threshold}
    if replay is not None:
        row["replay"] = {"10": {"stop_tokens": replay, "threshold": replay_threshold}}
    return row


@given(st.lists(st.integers(0, 5), min_size=1, max_size=8), st.lists(st.integers(0, 5), min_size=1, max_size=8))
def test_auroc_is_the_share_of_right_wrong_pairs_ordered_right_ties_half(right, wrong):
    pairs = list(itertools.product(right, wrong))
    expected = sum(1.0 if r > w else 0.5 if r == w else 0.0 for r, w in pairs) / len(pairs)
    assert auroc(right, wrong) == pytest.approx(expected)


def test_auroc_needs_both_kinds():
    assert auroc([1.0], []) is None and auroc([], [1.0]) is None


def test_histogram_puts_the_top_edge_in_the_last_bin():
    assert histogram([0.0, 0.5, 1.0, 1.0], [0.0, 0.5, 1.0]) == [1, 3]


P = problem(keys=["7", "8", "8", "7", None], correct=[True, False, False, True, False],
            tokens=[10, 20, 30, 40, 50], min_conf=[5.0, 1.0, 1.0, 4.0, 2.0],
            stopped=[False, False, False, True, False], threshold=3.0,
            replay=[None, None, None, 12, None], replay_threshold=3.0)


def test_self_consistency_at_k_votes_the_first_k_traces():
    assert sc_at(P, 1) == (True, 10)
    assert sc_at(P, 3) == (False, 60)  # 8 leads 2-1
    assert sc_at(P, 4) == (True, 100)  # 2-2: the first seen (7) wins


def test_online_at_k_drops_warmup_below_the_threshold_and_stopped_traces_and_weights_by_confidence():
    # warmup 2: trace 0 (7, conf 5 >= 3) votes, trace 1 (8, conf 1 < 3) does not; trace 2 (online,
    # not stopped) votes 8 with weight 1; trace 3 was stopped.
    assert online_at(P, 3, warmup=2) == (True, 60)  # 7: 5.0 vs 8: 1.0
    assert online_at(P, 4, warmup=2) == (True, 100)
    assert online_at(P, 3, warmup=3) == (True, 60)  # all warm-up; 8s are below the threshold


def test_replay_charges_a_cut_trace_its_tokens_up_to_the_cut():
    ok, tokens = replay_at(P, 5, warmup=2, keep_percent=10.0)
    assert tokens == 10 + 20 + 30 + 12 + 50 and ok


def test_offline_keeps_the_top_percent_and_weights():
    # keep 50 %: the bar is the median of [5, 1, 1, 4] = 2.5 -> traces 0 and 3 (both 7) vote.
    assert offline_at(P, 4, keep_percent=50) == (True, 100)


def test_summary_counts_stopped_online_traces_beyond_the_warmup():
    pool = {"label": "pool", "wall_s": 2.0, "generated_tokens": 150, "problems": [P]}
    online = {"label": "online-10", "wall_s": 1.0, "generated_tokens": 100, "problems": [P]}
    summary = summarize({"rounds": [pool, online]}, [4], warmup=2, keep_percents=[10.0])
    assert summary["stopped_share"] == {"10": pytest.approx(1 / 3)}  # 1 of the 3 online traces
    assert summary["rows"][0]["sc"] == {"accuracy": 1.0, "tokens": 100.0}
    assert summary["rows"][0]["replay-10"] == {"accuracy": 1.0, "tokens": 72.0}
    assert summary["wall_s"] == {"online-10": [1.0], "pool": [2.0]}
    assert summary["confidence"]["right_traces"] == 2 and summary["confidence"]["wrong_traces"] == 3


# -- shards: K engines on one GPU, merged into one report ------------------------------------
def _shard_report(shard, problems_by_label, walls, options):
    rounds = [{"label": label, "describe": {}, "round": 0, "wall_s": walls[label],
               "generated_tokens": sum(sum(p["tokens"]) for p in problems), "problems": problems}
              for label, problems in problems_by_label.items()]
    return {"date": "d", "machine": "m", "backend": {}, "options": options, "command": f"shard {shard}",
            "shard": shard, "datasets": {"gsm8k:4": {"rounds": rounds}}}


def test_merge_is_the_union_of_the_shards_problems_summed_tokens_and_the_slowest_wall():
    from reasoning.benchmarks.deepconf_proof import merge

    options = {"window": 4, "warmup": 2, "n": 5, "ks": [3, 5], "keep_percent": [10.0]}
    q = problem(keys=["8", "8", "7", "8", "8"], correct=[False, False, True, False, False],
                tokens=[1, 2, 3, 4, 5], min_conf=[1.0, 2.0, 3.0, 4.0, 5.0], threshold=2.5,
                stopped=[False, False, True, False, False], replay=[None, None, 2, None, None], replay_threshold=2.5)
    first = _shard_report("0/2", {"pool": [P], "online-10": [P]}, {"pool": 3.0, "online-10": 2.0}, options)
    second = _shard_report("1/2", {"pool": [q], "online-10": [q]}, {"pool": 5.0, "online-10": 1.0}, options)
    merged = merge([second, first])  # any order
    data = merged["datasets"]["gsm8k:4"]
    pool = next(r for r in data["rounds"] if r["label"] == "pool")
    assert pool["wall_s"] == 5.0 and pool["generated_tokens"] == 150 + 15 and len(pool["problems"]) == 2
    whole = {"rounds": [{"label": "pool", "round": 0, "wall_s": 5.0, "generated_tokens": 165, "problems": [q, P]},
                        {"label": "online-10", "round": 0, "wall_s": 2.0, "generated_tokens": 165,
                         "problems": [q, P]}]}
    assert data["summary"]["rows"] == summarize(whole, [3, 5], 2, [10.0])["rows"]
    assert merged["shards"] == 2 and merged["command"] == ["shard 1/2", "shard 0/2"]


def test_merge_refuses_a_missing_shard_or_different_options_and_drops_a_phase_one_shard_lacks():
    from reasoning.benchmarks.deepconf_proof import merge

    options = {"window": 4, "warmup": 2, "n": 5, "ks": [5], "keep_percent": [10.0]}
    first = _shard_report("0/3", {"pool": [P]}, {"pool": 1.0}, options)
    second = _shard_report("1/3", {"pool": [P]}, {"pool": 1.0}, options)
    with pytest.raises(ValueError, match="shards 0/K"):
        merge([first, second])
    third = _shard_report("2/3", {"pool": [P], "online-10": [P]}, {"pool": 1.0, "online-10": 1.0}, options)
    assert [r["label"] for r in merge([first, second, third])["datasets"]["gsm8k:4"]["rounds"]] == ["pool"]
    other = _shard_report("2/3", {"pool": [P]}, {"pool": 1.0}, {**options, "window": 8})
    with pytest.raises(ValueError, match="different options"):
        merge([first, second, other])


def test_shards_split_the_problems_between_them_once_each(tmp_path):
    import json

    from reasoning.benchmarks.deepconf_proof import main

    common = ["--backend", "scripted:18,3", "--dataset", "gsm8k:5", "--n", "4", "--ks", "4", "--warmup", "2",
              "--window", "4", "--keep-percent", "10"]
    for index in range(2):
        assert main([*common, "--shard", f"{index}/2", "--out", str(tmp_path / f"s{index}.json")]) == 0
    ids = [[p["id"] for p in json.loads((tmp_path / f"s{i}.json").read_text())["datasets"]["gsm8k:5"]["rounds"][0]["problems"]]
           for i in range(2)]
    from reasoning.benchmarks.datasets import load_items

    every = [item.id for item in load_items("gsm8k", 5)]
    assert ids == [every[0::2], every[1::2]]
    assert main(["--merge", str(tmp_path / "m.json"), str(tmp_path / "s0.json"), str(tmp_path / "s1.json")]) == 0
    merged = json.loads((tmp_path / "m.json").read_text())
    assert sorted(p["id"] for p in merged["datasets"]["gsm8k:5"]["rounds"][0]["problems"]) == sorted(every)
    with pytest.raises(SystemExit):
        main([*common, "--shard", "2/2"])


def test_pool_only_runs_the_pool_and_still_summarises_it(tmp_path):
    import json

    from reasoning.benchmarks.deepconf_proof import main

    out = tmp_path / "p.json"
    assert main(["--backend", "scripted:18,3", "--dataset", "gsm8k:3", "--n", "4", "--ks", "4", "--warmup", "2",
                 "--window", "4", "--keep-percent", "10", "90", "--pool-only", "--out", str(out)]) == 0
    data = json.loads(out.read_text())["datasets"]["gsm8k:3"]
    assert [r["label"] for r in data["rounds"]] == ["pool"]
    assert data["summary"]["rows"]  # SC, offline and replayed online from the pool alone


def test_the_replay_votes_as_the_strategies_vote():
    """deepconf_proof replays votes over stored keys; they must pick what voting.majority picks
    over samples with those answers (weights, ties to the first seen, no-answer samples)."""
    import random

    from reasoning.context import Sample
    from reasoning.strategies.voting import majority

    rng = random.Random(7)
    for _ in range(300):
        size = rng.randint(1, 9)
        keys = [rng.choice([None, "1", "2", "3"]) for _ in range(size)]
        weights = [rng.choice([0.5, 1.0, 2.0]) for _ in range(size)] if rng.random() < 0.5 else None
        samples = [Sample(f"so {k}", k, info={"vote_key": k} if k else {}) for k in keys]
        vote = majority(samples, weights)
        right = [k == "2" for k in keys]
        assert _vote(keys, right, weights) == (vote.answer == "2")


# -- alternating rounds: the wall-time comparison --------------------------------------------
def test_paired_rounds_pairs_each_rounds_own_pool_and_online_run_and_drops_a_cut_round():
    from reasoning.benchmarks.deepconf_proof import paired_rounds

    wrong = problem(keys=["8"] * 5, correct=[False] * 5, tokens=[10, 20, 30, 40, 50], min_conf=[5.0] * 5,
                    stopped=[False, False, True, True, False], threshold=3.0,
                    replay=[None, None, None, 12, None], replay_threshold=3.0)

    def phase(label, index, wall, problems):
        return {"label": label, "round": index, "wall_s": wall,
                "generated_tokens": sum(sum(p["tokens"]) for p in problems), "problems": problems}

    # ABBA: round 0 pool first, round 1 online first; round 2 lost its online run to the deadline.
    dataset = {"rounds": [phase("pool", 0, 10.0, [P]), phase("online-10", 0, 5.0, [P]),
                          phase("online-10", 1, 12.0, [wrong]), phase("pool", 1, 8.0, [wrong]),
                          phase("pool", 2, 9.0, [P])]}
    shards = [[{"label": "pool", "round": 0, "wall_s": 10.0}, {"label": "online-10", "round": 0, "wall_s": 5.0},
               {"label": "online-10", "round": 1, "wall_s": 12.0}, {"label": "pool", "round": 1, "wall_s": 8.0}],
              [{"label": "pool", "round": 0, "wall_s": 6.0}, {"label": "online-10", "round": 0, "wall_s": 3.0},
               {"label": "online-10", "round": 1, "wall_s": 4.0}, {"label": "pool", "round": 1, "wall_s": 8.0}]]
    report = paired_rounds(dataset, 5, warmup=2, keep_percent=10.0, shards=shards)
    first, second = report["rounds"]
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    assert (first["first"], second["first"]) == ("pool", "online-10")
    assert first["ratio"] == 0.5 and second["ratio"] == 1.5
    assert first["sc"] == {"accuracy": 1.0, "tokens": 150.0} and first["online"]["accuracy"] == 1.0
    assert second["sc"]["accuracy"] == 0.0 and second["online"]["accuracy"] == 0.0  # round 1's own runs
    assert second["replay"]["tokens"] == 10 + 20 + 30 + 12 + 50
    assert first["stopped_share"] == pytest.approx(1 / 3) and second["stopped_share"] == pytest.approx(2 / 3)
    assert (first["pool_shard_mean_s"], first["online_shard_mean_s"]) == (8.0, 4.0)
    assert second["shard_mean_ratio"] == 1.0
    pairing = report["pairing"]
    assert pairing["ratios"] == [0.5, 1.5] and pairing["mean"] == 1.0 and pairing["rounds"] == 2
    assert pairing["interval"][0] >= 0.5 and pairing["interval"][1] <= 1.5
    assert "target" not in pairing and "order" not in pairing  # issue 19's framework / raw naming left out
    assert report["shard_pairing"]["ratios"] == [0.5, 1.0]


def test_paired_rounds_needs_a_round_with_both_runs():
    from reasoning.benchmarks.deepconf_proof import paired_rounds

    pool_only = {"rounds": [{"label": "pool", "round": 0, "wall_s": 1.0, "generated_tokens": 150, "problems": [P]}]}
    with pytest.raises(ValueError, match="no round has both"):
        paired_rounds(pool_only, 4, warmup=2)
