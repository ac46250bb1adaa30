"""benchmarks/multi_model.py: every role's backend built once, each strategy calibrated on the
held-out split once (its file reused on resume), each run resumed from its rows, a deadline that
keeps what is done, and the summary (per role) and table from disk. Scripted backends per role
pin the exact calls: small votes "7","3" (agreement 0.5, right), large always "7"."""

import asyncio
import json
import re

import pytest

from reasoning.backends import Scripted
from reasoning.benchmarks import multi_model
from reasoning.benchmarks.multi_model import main

EVAL, HELD_OUT = 3, 2


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"problem": f"Problem {i}: what is it?", "answer": "7"}) + "\n"
                            for i in range(EVAL + HELD_OUT)))
    return path


SMALL = {"0": "777", "1": "733", "2": "733", "3": "337", "4": "777"}  # per problem, its 3 samples


def small_says(request, index):
    problem = str(request.messages).split("Problem ")[1][0]
    return f"So \\boxed{{{SMALL[problem][index % 3]}}}."  # every call here draws n=3


def models(small_cls=Scripted):
    # the small model is the cheap one (FLOPs: parameters), or the cascade would skip it
    small = small_cls(responder=small_says, name="small", params=100)
    large = Scripted(["7"], name="large", params=1000)
    return small, large, ({"small": small, "large": large}, {"small": "scripted:small", "large": "scripted:7"})


def args(data, out, *extra):
    return ["--models", "small,large", "--strategies", "cascade", "--dataset", f"{data}:{EVAL}",
            "--calibrate-limit", str(HELD_OUT), "--strategy-n", "3", "--n", "3", "--out", str(out), *extra]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_second_run_reuses_the_calibration_and_the_rows_and_calls_no_model(data, tmp_path, capsys):
    out = tmp_path / "out"
    small, large, roles = models()
    assert main(args(data, out), roles) == 0
    calibration = json.loads((out / "problems" / "calibration" / "cascade.json").read_text())
    assert calibration["thresholds"] == [1.0] and calibration["notes"]["problems"] == HELD_OUT
    # calibration: each model once per held-out problem; cascade: small on every problem, large
    # on the two it escalates; each model alone: one call of n=3 per problem
    assert (small.calls, large.calls) == (HELD_OUT + EVAL + EVAL, HELD_OUT + 2 + EVAL)
    for label in ("cascade", "sc-small-n3", "sc-large-n3"):
        assert sorted(r["id"] for r in rows(out / "problems" / label / "results.jsonl")) == ["0", "1", "2"]
    first = (out / "summary.json").read_text()

    small, large, roles = models()
    assert main(args(data, out), roles) == 0
    assert (small.calls, large.calls) == (0, 0)
    assert (out / "summary.json").read_text() == first

    # a row lost: that problem alone is solved again (by large too unless it is problem 0)
    results = out / "problems" / "cascade" / "results.jsonl"
    *kept, lost = rows(results)
    results.write_text("".join(json.dumps(r) + "\n" for r in kept))
    small, large, roles = models()
    assert main(args(data, out), roles) == 0
    assert (small.calls, large.calls) == (1, int(lost["id"] != "0")) and len(rows(results)) == EVAL


class Counted(Scripted):
    """A scripted model that says whether it was loaded (an engine start on the GPU; later
    loads of a loaded backend cost nothing)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loads = 0

    async def load(self):
        self.loads = 1


def test_a_resumed_call_loads_only_the_models_of_the_runs_left(data, tmp_path):
    """Resuming after one run was lost (e.g. re-running ATTS in a stored folder) loaded every
    engine; now only the models that run still calls, and none once everything is on disk."""
    out = tmp_path / "out"

    def counted():
        small = Counted(responder=small_says, name="small", params=100)
        large = Counted(["7"], name="large", params=1000)
        return small, large, ({"small": small, "large": large}, {"small": "scripted:small", "large": "scripted:7"})

    small, large, roles = counted()
    assert main(args(data, out), roles) == 0
    assert (small.loads, large.loads) == (1, 1)

    small, large, roles = counted()
    assert main(args(data, out), roles) == 0
    assert (small.loads, large.loads, small.calls, large.calls) == (0, 0, 0, 0)

    for lost in ("sc-large-n3", "cascade"):  # one model's run, then the run using both
        (out / "problems" / lost / "results.jsonl").unlink()
        small, large, roles = counted()
        assert main(args(data, out), roles) == 0
        expected = (0, 1) if lost == "sc-large-n3" else (1, 1)
        assert (small.loads, large.loads) == expected and len(rows(out / "problems" / lost / "results.jsonl")) == EVAL
        assert (small.calls > 0, large.calls > 0) == (bool(expected[0]), True)


def test_the_summary_gives_usage_per_problem_overall_and_per_role_and_who_answered(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(args(data, out), models()[2]) == 0
    summary = json.loads((out / "summary.json").read_text())["problems"]
    assert set(summary) == {"cascade", "sc-small-n3", "sc-large-n3"}
    cascade = summary["cascade"]
    assert cascade["problems"] == EVAL and cascade["accuracy"] == 1.0
    assert cascade["answered_share"] == pytest.approx({"small": 1 / 3, "large": 2 / 3})
    small, large = cascade["by_role"]["small"], cascade["by_role"]["large"]
    assert (small["calls"], large["calls"], cascade["calls"]) == pytest.approx((1, 2 / 3, 5 / 3))
    assert (small["completion_tokens"], large["completion_tokens"]) == pytest.approx((3 * 20, 2 / 3 * 3 * 20))
    assert cascade["tokens"] == pytest.approx(small["tokens"] + large["tokens"])
    assert summary["sc-small-n3"]["accuracy"] == pytest.approx(1 / 3) and summary["sc-large-n3"]["accuracy"] == 1
    # a model alone ran as the generator role; its usage is named by the model
    assert set(summary["sc-small-n3"]["by_role"]) == {"small"} and set(summary["sc-large-n3"]["by_role"]) == {"large"}
    # a stored copy keeps each trace's {id, text, info} (info.jsonl) instead of the traces (too big
    # to keep) and no journals: it still summarises, who answered included
    cascade_dir = out / "problems" / "cascade"
    kept = [{k: t[k] for k in ("id", "text", "info")}
            for t in map(json.loads, (cascade_dir / "traces.jsonl").read_text().splitlines())]
    (cascade_dir / "info.jsonl").write_text("".join(json.dumps(t) + "\n" for t in kept))
    for name in ("traces.jsonl", "journal.jsonl"):
        for path in (out / "problems").glob(f"*/{name}"):
            path.unlink()
    assert main(["--table", str(out)]) == 0
    stored = json.loads((out / "summary.json").read_text())["problems"]["cascade"]
    assert stored["answered_share"] == pytest.approx({"small": 1 / 3, "large": 2 / 3})
    # without that either, who answered is unknown; and it resumes: nothing is solved again
    (cascade_dir / "info.jsonl").unlink()
    assert main(["--table", str(out)]) == 0
    assert "answered_share" not in json.loads((out / "summary.json").read_text())["problems"]["cascade"]
    small, large, roles = models()
    assert main(args(data, out), roles) == 0 and (small.calls, large.calls) == (0, 0)
    printed = capsys.readouterr().out
    assert "| cascade | 3 | 1.000 | " in printed and "| small 33%, large 67% |" in printed


def test_the_table_is_printed_again_from_disk(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(args(data, out), models()[2]) == 0
    printed = capsys.readouterr().out
    (out / "summary.json").unlink()
    assert main(["--table", str(out)]) == 0
    assert capsys.readouterr().out == printed and (out / "summary.json").exists()


class HangsOnProblem2(Scripted):
    async def generate(self, request):
        if "Problem 2" in str(request.messages):
            await asyncio.Event().wait()  # never answers: only the deadline ends the run
        return await super().generate(request)


def test_the_deadline_cancels_what_runs_keeps_what_is_done_and_still_summarises(data, tmp_path, capsys,
                                                                               monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(multi_model, "STARTED", multi_model.time.monotonic())
    small, large, roles = models(HangsOnProblem2)
    assert main(args(data, out, "--deadline-s", "3", "--sc-models", "small"), roles) == 0
    assert "deadline: 3 s reached" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())["problems"]
    assert summary["cascade"]["problems"] == summary["sc-small-n3"]["problems"] == 2
    assert sorted(r["id"] for r in rows(out / "problems" / "cascade" / "results.jsonl")) == ["0", "1"]
    # the run folder's own summary was written too (run_benchmark's, on cancellation)
    assert json.loads((out / "problems" / "cascade" / "summary.json").read_text())["n_problems"] == 2


@pytest.mark.parametrize("extra, message", [
    (["--calibrate-offset", "1"], "--calibrate-offset 1 overlaps the 3 evaluation problems"),
    (["--strategies", "cascade,debate"], r"--strategies \['debate'\]: choose among cascade"),
    (["--chat-models", "small,medium"], r"\['medium'\] are not roles"),
    (["--option", "cascade:turns=4"], "strategy 'cascade' has no option 'turns'"),
    (["--option", "atts:turns=4"], "--option 'atts:turns=4': expected STRATEGY:KEY=VALUE, STRATEGY one of cascade"),
])
def test_a_bad_plan_is_refused_before_any_model_is_called(data, tmp_path, capsys, extra, message):
    small, large, roles = models()
    assert main(args(data, tmp_path / "out", *extra), roles) == 2
    assert re.search(message, capsys.readouterr().err)
    assert (small.calls, large.calls) == (0, 0)


def test_an_option_reaches_the_strategy_at_evaluation_only(data, tmp_path):
    small, large, roles = models()
    assert main(args(data, tmp_path / "out", "--option", "cascade:max_tokens=5", "--sc-models", "large"), roles) == 0
    config = json.loads((tmp_path / "out" / "problems" / "cascade" / "config.json").read_text())
    assert config["strategy_options"]["max_tokens"] == 5
    # small is called by the calibration (its sampling's 512) and the cascade (5), nothing else
    assert sorted(r.max_tokens for r in small.requests) == [5] * EVAL + [512] * HELD_OUT


def test_a_failing_strategy_is_reported_and_the_other_runs_finish(data, tmp_path, capsys):
    small = Scripted(responder=small_says, name="small")
    large = Scripted(["7"], name="large", logprobs=False)  # cannot score: atts' calibration fails
    roles = ({"small": small, "large": large}, {"small": "scripted:small", "large": "scripted:7"})
    assert main(args(data, tmp_path / "out", "--strategies", "cascade,atts"), roles) == 1
    assert "error: " in (err := capsys.readouterr().err) and " atts: " in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["problems"]
    assert set(summary) == {"cascade", "sc-small-n3", "sc-large-n3"}
    assert all(s["problems"] == EVAL for s in summary.values())
