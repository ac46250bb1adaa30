"""Calibration of cascade's thresholds and ATTS's conformal scores on a held-out split
(benchmarks/calibrate_thresholds.py): the exact selection rule on hand-made records, the records
and files the command writes on scripted models, and the strategies loading those files."""

import asyncio
import json
import math

import pytest

import reasoning as rz
from reasoning.backends import Scripted
from reasoning.benchmarks.calibrate_thresholds import (calibrate_atts, calibrate_cascade, main, replay,
                                                       select_thresholds)
from reasoning.benchmarks.datasets import load_items
from reasoning.strategies.atts import ATTS
from reasoning.strategies.cascade import Cascade


def stage(signal, correct, tokens):
    return {"n": 4, "answer": "x", "signal": signal, "correct": correct, "tokens": tokens, "flops": 0.0}


RECORDS = [
    {"id": "1", "stages": {"small": stage(1.0, True, 10), "large": stage(1.0, True, 100)}},
    {"id": "2", "stages": {"small": stage(0.5, False, 10), "large": stage(1.0, True, 100)}},
    {"id": "3", "stages": {"small": stage(0.75, True, 10), "large": stage(1.0, False, 100)}},
    {"id": "4", "stages": {"small": stage(0.5, True, 10), "large": stage(1.0, True, 100)}},
]
MODELS = ["small", "large"]


def test_replay_stops_at_the_first_stage_that_reaches_its_threshold():
    assert replay(RECORDS[1], MODELS, [0.75]) == {"ran": ["small", "large"], "answered_by": "large",
                                                  "correct": True, "tokens": 110, "flops": 0.0}
    assert replay(RECORDS[2], MODELS, [0.75])["ran"] == ["small"]
    # None: never sure, so the stage is skipped (as Cascade.run does): neither run nor paid.
    assert replay(RECORDS[2], MODELS, [None]) == {"ran": ["large"], "answered_by": "large", "correct": False,
                                                  "tokens": 100, "flops": 0.0}


def test_a_stage_that_cannot_help_is_skipped_so_the_cascade_never_costs_more_than_the_largest_model():
    # small is sure (1.0) and wrong on every problem: any threshold that lets it answer loses accuracy,
    # so reaching the large model's accuracy means skipping small; a skipped stage costs nothing.
    useless = [{"id": str(i), "stages": {"small": stage(1.0, False, 10), "large": stage(1.0, True, 100)}}
               for i in range(3)]
    made = select_thresholds(useless, MODELS, target_accuracy=1.0, relative=True)
    assert made["thresholds"] == [None] and made["notes"]["target_met"]
    assert made["notes"]["mean_cost"] == 100.0 and made["notes"]["cost_saved"] == 0.0
    assert made["notes"]["answered_share"] == {"small": 0.0, "large": 1.0}


def test_the_cheapest_thresholds_that_reach_the_target_accuracy_are_chosen():
    # small at 0.5 stops everything (3/4 right, 10 tokens); 0.75 escalates 2 and 4 (4/4, 60 tokens);
    # 1.0 escalates three (3/4, 85); skipping small is the large model alone (3/4, 100).
    made = select_thresholds(RECORDS, MODELS, target_accuracy=1.0)
    notes = made["notes"]
    assert made["thresholds"] == [0.75] and made["kind"] == "cascade" and made["models"] == MODELS
    assert (notes["accuracy"], notes["mean_cost"], notes["cost"]) == (1.0, 60.0, "tokens")
    assert notes["always_largest_cost"] == 100.0 and notes["cost_saved"] == pytest.approx(0.4)
    assert notes["answered_share"] == {"small": 0.5, "large": 0.5} and notes["target_met"]
    cheap = select_thresholds(RECORDS, MODELS, target_accuracy=0.75)
    assert cheap["thresholds"] == [0.5] and cheap["notes"]["cost_saved"] == pytest.approx(0.9)
    # relative: 100 % of the large model's own accuracy (3/4) is the same target as 0.75.
    assert select_thresholds(RECORDS, MODELS, target_accuracy=1.0, relative=True)["thresholds"] == [0.5]


def test_an_unreachable_target_keeps_the_most_accurate_thresholds_and_says_so():
    worse = [{**r, "stages": {**r["stages"], "large": {**r["stages"]["large"], "correct": False}}} for r in RECORDS]
    made = select_thresholds(worse, MODELS, target_accuracy=0.9)
    assert made["thresholds"] == [0.5] and made["notes"]["accuracy"] == 0.75 and not made["notes"]["target_met"]
    with pytest.raises(rz.ConfigError, match="target-accuracy must be in"):
        select_thresholds(RECORDS, MODELS, target_accuracy=0)
    with pytest.raises(rz.ConfigError, match="at least two models"):
        select_thresholds(RECORDS, ["small"], target_accuracy=0.5)


def write_problems(tmp_path, golds):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"problem": f"Problem {i}: what is it?", "answer": g}) + "\n"
                            for i, g in enumerate(golds)))
    return load_items(str(path), len(golds))


def test_cascade_calibration_records_every_stage_and_its_file_drives_the_strategy(tmp_path):
    items = write_problems(tmp_path, ["7", "7"])
    small = Scripted(["7", "3"], name="small", completion_tokens=10, params=100)  # 0.5 agreement, right
    large = Scripted(["7"], name="large", completion_tokens=40, params=1000)
    roles = {"generator": small, "small": small, "large": large}
    made = asyncio.run(calibrate_cascade(items, roles, MODELS, target_accuracy=1.0, n=2,
                                         records_out=tmp_path / "records.jsonl"))
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["stages"]["small"]["signal"] for r in records] == [0.5, 0.5]
    assert all(r["stages"]["small"]["correct"] and r["stages"]["large"]["correct"] for r in records)
    assert made["thresholds"] == [0.5] and made["notes"]["cost"] == "flops"
    small_flops, large_flops = records[0]["stages"]["small"]["flops"], records[0]["stages"]["large"]["flops"]
    assert made["notes"]["cost_saved"] == pytest.approx(1 - small_flops / large_flops)
    path = tmp_path / "cascade.json"
    path.write_text(json.dumps(made))
    result = asyncio.run(rz.asolve("Problem 0: what is it?", Cascade(models="small,large", n=2,
                                                                       calibration=str(path)),
                                   backends={"generator": Scripted(["7", "3"]), "small": Scripted(["7", "3"]),
                                             "large": Scripted(["7"])}))
    assert result.info["answered_by"] == "small" and result.answer == "7"


def test_atts_calibration_scores_the_drafts_first_steps_with_the_target(tmp_path):
    items = write_problems(tmp_path, ["5", "5"])
    steps = ["one two\n\n", "one two three four\n\n"]
    draft = Scripted(responder=lambda request, index: steps[index % 2], name="draft")
    # the target's log-probability per word: -1 for a two-word step, -2 for a four-word one
    target = Scripted(scorer=lambda request: [-len(request.score.split()) / 2] * len(request.score.split()),
                      name="target")
    made = asyncio.run(calibrate_atts(items, {"generator": draft, "draft": draft, "target": target}, samples=2,
                                      alpha=0.4))
    assert made["scores"] == pytest.approx([math.e, math.e, math.e ** 2, math.e ** 2])
    assert made["threshold"] == pytest.approx(math.e ** 2)  # ceil(5 * 0.6) = 3rd smallest
    assert draft.calls == 2 and [r.n for r in draft.requests] == [2, 2]  # one request per problem
    assert sum(r.score is not None for r in target.requests) == 4
    path = tmp_path / "atts.json"
    path.write_text(json.dumps(made))
    assert ATTS(calibration=str(path))._scores == made["scores"]


def test_the_command_writes_both_files(tmp_path, capsys):
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i}+7-{i}?", "answer": "7"}) + "\n" for i in range(2)))
    out = tmp_path / "cascade.json"
    assert main(["cascade", "--dataset", str(data), "--limit", "2", "--backend", "scripted:7",
                 "--role", "small=scripted:7,3", "--role", "large=scripted:7", "--n", "2",
                 "--target-accuracy", "1.0", "--out", str(out)]) == 0
    made = json.loads(out.read_text())
    assert made["thresholds"] == [0.5] and made["notes"]["answered_share"] == {"small": 1.0, "large": 0.0}
    assert "--option calibration=" in capsys.readouterr().out
    out = tmp_path / "atts.json"
    assert main(["atts", "--dataset", str(data), "--limit", "2", "--backend", "scripted:7",
                 "--role", "draft=scripted:7", "--role", "target=scripted:7", "--samples", "3",
                 "--out", str(out)]) == 0
    made = json.loads(out.read_text())
    assert made["kind"] == "atts" and len(made["scores"]) == 6
    assert main(["cascade", "--dataset", str(data), "--limit", "2", "--role", "small=scripted:7",
                 "--models", "small,large", "--out", str(tmp_path / "x.json")]) == 2
    assert "--models ['large'] are not roles" in capsys.readouterr().err


def test_the_report_of_a_cascade_run_gives_who_answered_and_the_cost_saved(tmp_path, capsys):
    from reasoning.benchmarks.cli import main as bench

    data = tmp_path / "problems.jsonl"
    # small votes 7 and 3 (agreement 0.5 < 0.75): both problems escalate to large, which says 9.
    data.write_text("".join(json.dumps({"problem": f"What is {i}+7-{i}?", "answer": "7"}) + "\n" for i in range(2)))
    out = tmp_path / "run"
    assert bench(["run", "--dataset", str(data), "--strategy", "cascade", "--n", "2", "--option", "threshold=0.75",
                  "--backend", "scripted:7", "--role", "small=scripted:7,3", "--role", "large=scripted:9,9",
                  "--out", str(out)]) == 0
    made = main(["report", str(out)])
    assert made == 0
    printed = capsys.readouterr().out
    assert "2 problems, accuracy 0.000; answered: small 0%, large 100%" in printed
    from reasoning.benchmarks.calibrate_thresholds import cascade_report

    report = cascade_report(out)
    assert report["answered_share"] == {"small": 0.0, "large": 1.0} and report["cost"] == "tokens"
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    large = [s["tokens"] for t in traces for s in t["info"]["stages"] if s["role"] == "large"]
    total = sum(s["tokens"] for t in traces for s in t["info"]["stages"]) / 2
    assert report["always_largest_cost"] == sum(large) / 2 and report["mean_cost"] == total
    assert report["cost_saved"] == pytest.approx(1 - total / (sum(large) / 2)) and report["cost_saved"] < 0
    calibration = tmp_path / "cal.json"
    calibration.write_text(json.dumps({"notes": {"cost": "tokens", "always_largest_cost": 2 * total}}))
    assert cascade_report(out, calibration)["cost_saved"] == pytest.approx(0.5)
    assert main(["report", str(tmp_path)]) == 2
