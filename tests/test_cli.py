"""`reasoning-bench` end to end on the Scripted backend: outputs, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasoning.benchmarks.cli import main
from reasoning.benchmarks.run import read_done


def run_cli(*args):
    return main(list(args))


def test_run_writes_results_and_summary(tmp_path):
    out = tmp_path / "out"
    code = run_cli(
        "run", "--dataset", "gsm8k", "--limit", "4", "--strategy", "self-consistency", "--n", "3",
        "--backend", "scripted:18,18,7", "--budget", "tokens=20000", "--out", str(out),
    )
    assert code == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in sorted(rows, key=lambda r: int(r["id"]))] == ["0", "1", "2", "3"]
    assert all(r["answer"] == "18" for r in rows)
    # GSM8K test item 0 has gold 18: graded by the shared equivalence checker.
    assert next(r for r in rows if r["id"] == "0")["correct"] is True
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_problems"] == 4 and summary["complete"]
    assert summary["accuracy"] == sum(r["correct"] for r in rows) / 4
    assert summary["usage"]["calls"] == 4
    assert len((out / "traces.jsonl").read_text().splitlines()) == 4


def test_rerun_with_same_out_resumes_without_redoing(tmp_path):
    out = tmp_path / "out"
    common = ["--dataset", "gsm8k", "--strategy", "greedy", "--backend", "scripted:1", "--out", str(out)]
    assert run_cli("run", "--limit", "3", *common) == 0
    first = (out / "results.jsonl").read_text()
    first_wall = json.loads((out / "summary.json").read_text())["wall_seconds"]
    assert run_cli("run", "--limit", "5", *common) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert (out / "results.jsonl").read_text().startswith(first)
    assert sorted(json.loads(l)["id"] for l in lines) == ["0", "1", "2", "3", "4"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["usage"]["calls"] == 5
    assert summary["wall_seconds"] > first_wall  # the total over both attempts


def test_half_written_last_line_is_dropped_and_redone(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "0", "usage": {}}\n{"id": "1", "us')
    assert list(read_done(path)) == ["0"]
    assert path.read_text() == '{"id": "0", "usage": {}}\n'


def test_run_budget_spans_restarts(tmp_path):
    out = tmp_path / "out"
    common = ["--dataset", "gsm8k", "--strategy", "greedy", "--backend", "scripted:1", "--out", str(out),
              "--max-tokens", "100", "--run-budget", "calls=3"]
    assert run_cli("run", "--limit", "2", *common) == 0
    assert run_cli("run", "--limit", "6", *common) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["usage"]["calls"] == 3
    assert summary["stopped_by"] == {"run:calls": 3}


def test_resume_refuses_a_different_strategy(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("run", "--dataset", "gsm8k", "--limit", "1", "--strategy", "greedy", "--backend", "scripted", "--out", str(out)) == 0
    code = run_cli("run", "--dataset", "gsm8k", "--limit", "1", "--strategy", "self-consistency", "--backend", "scripted", "--out", str(out))
    assert code == 2
    assert "different strategy" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "nope"], "unknown dataset"),
        (["--dataset", "gsm8k", "--strategy", "nope"], "unknown strategy"),
        (["--dataset", "gsm8k", "--backend", "nope"], "unknown backend"),
        (["--dataset", "gsm8k", "--budget", "tokens=lots"], "not a number"),
        (["--dataset", "gsm8k", "--budget", "gpus=1"], "unknown budget limit"),
        (["--dataset", "gsm8k", "--verifier", "nope"], "unknown verifier"),
        (["--dataset", "gsm8k", "--backend", "litellm:openai/x", "--api-base", "http://127.0.0.1:9"], "cannot reach"),
    ],
)
def test_bad_input_gives_clear_error_and_nonzero_exit(tmp_path, capsys, args, message):
    code = run_cli("run", "--limit", "1", "--out", str(tmp_path / "o"), *args)
    assert code != 0
    assert message in capsys.readouterr().err


def test_malformed_jsonl_reports_file_and_line(tmp_path, capsys):
    data = tmp_path / "mine.jsonl"
    data.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "answer": \n')
    code = run_cli("run", "--dataset", str(data), "--backend", "scripted:2", "--out", str(tmp_path / "o"))
    assert code == 2
    assert f"{data}:2" in capsys.readouterr().err


def test_users_own_jsonl_with_question_field(tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text('{"question": "1+1", "answer": "2"}\n{"question": "2+3", "answer": "5", "id": "q2"}\n')
    out = tmp_path / "o"
    assert run_cli("run", "--dataset", str(data), "--strategy", "greedy", "--backend", "scripted:2", "--out", str(out)) == 0
    rows = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert rows["0"]["correct"] is True and rows["q2"]["correct"] is False


def test_killed_run_resumes_and_nothing_is_counted_twice(tmp_path):
    """A real SIGKILL mid-run, then a resume: every problem once, usage equal to a clean run."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "reasoning.benchmarks.cli", "run", "--dataset", "gsm8k", "--limit", "30",
           "--strategy", "greedy", "--backend", "scripted:1?latency=0.05", "--concurrency", "2", "--out", str(out)]
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).parent.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(read_done(results))
    assert 5 <= partial < 30
    assert subprocess.run(cmd, env=env, cwd=Path(__file__).parent.parent, capture_output=True).returncode == 0
    ids = [json.loads(l)["id"] for l in results.read_text().splitlines()]
    assert sorted(ids, key=int) == [str(i) for i in range(30)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["usage"]["calls"] == 30 and summary["n_problems"] == 30


def test_strategy_options_pass_through_and_unknown_ones_are_refused(tmp_path, capsys):
    out = tmp_path / "o"
    code = run_cli("run", "--dataset", "gsm8k", "--limit", "1", "--strategy", "genrm-best-of-n",
                   "--option", "n_solutions=2", "--option", "k_verifications=1", "--backend", "scripted:18",
                   "--out", str(out))
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["strategy_options"] == {"n_solutions": 2, "k_verifications": 1}
    trace = json.loads((out / "traces.jsonl").read_text().splitlines()[0])["trace"]
    assert [n["request"]["n"] for n in trace if n["kind"] == "generate"] == [2, 1, 1]
    code = run_cli("run", "--dataset", "gsm8k", "--limit", "1", "--strategy", "greedy", "--option", "k=3",
                   "--backend", "scripted", "--out", str(tmp_path / "p"))
    assert code == 2 and "has no option 'k'" in capsys.readouterr().err


@pytest.mark.parametrize("misreport", ["-100000", "50"])
def test_misreported_usage_is_clamped_and_counted_in_the_summary(tmp_path, capsys, misreport):
    """Issue 11: an upstream reporting negative usage let --run-budget tokens=400 serve 30 of 30
    problems and recorded -6,000,000 tokens; over-reported usage was recorded as is."""
    out = tmp_path / "out"
    code = run_cli("run", "--dataset", "gsm8k", "--limit", "30", "--strategy", "greedy", "--concurrency", "1",
                   "--backend", f"scripted:1?misreport={misreport}", "--max-tokens", "20",
                   "--run-budget", "tokens=400", "--out", str(out))
    assert code == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    served = [r for r in rows if r["usage"]["calls"]]
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["usage"]["tokens"] <= 400 and len(served) < 30
    assert summary["usage_anomalies"] == len(served) == sum(r["usage_anomalies"] for r in rows)
    assert "reported usage below zero or above" in capsys.readouterr().err


def test_usd_budget_on_an_unpriced_model_is_refused_unless_given_a_price(tmp_path, capsys):
    """Issue 11: a usd budget on a model with no known price was silently unlimited."""
    from reasoning.benchmarks.stub_server import StubServer

    with StubServer() as server:
        common = ["--dataset", "gsm8k", "--limit", "3", "--strategy", "greedy", "--backend", "openai:stub-model",
                  "--api-base", server.base_url, "--max-tokens", "50"]
        for budget in (["--budget", "usd=0.01"], ["--run-budget", "usd=0.01"]):
            assert run_cli("run", *common, *budget, "--out", str(tmp_path / "refused")) == 2
            assert "--price" in capsys.readouterr().err
        assert not (tmp_path / "refused").exists() and server.count == 0
        out = tmp_path / "priced"
        assert run_cli("run", *common, "--run-budget", "usd=0.01", "--price", "1e-6,4e-6", "--out", str(out)) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert 0 < summary["usage"]["usd"] <= 0.01 and summary["config"]["price"] == [1e-6, 4e-6]
    assert run_cli("run", *common, "--price", "cheap", "--out", str(tmp_path / "bad")) == 2
    assert "--price 'cheap'" in capsys.readouterr().err


def test_calls_in_flight_at_a_kill_are_charged_when_the_run_resumes(tmp_path):
    """Issue 11: after kill -9, calls that were in flight were not charged, so --run-budget
    calls=20 allowed 28. The journal records each reservation before its call; the resumed run
    charges the ones never committed at their reservation."""
    from reasoning.benchmarks.stub_server import StubServer

    out, root = tmp_path / "out", Path(__file__).parent.parent
    results = out / "results.jsonl"
    with StubServer(latency=0.5) as server:
        cmd = [sys.executable, "-m", main.__module__, "run", "--dataset", "gsm8k", "--limit", "40",
               "--strategy", "greedy", "--backend", "openai:stub-model", "--api-base", server.base_url,
               "--max-tokens", "64", "--concurrency", "4", "--run-budget", "calls=20", "--out", str(out)]
        proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and not (
            server.in_flight == 4 and results.exists() and len(results.read_text().splitlines()) >= 4
        ):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # with four calls in flight
        proc.wait()
        served_before = len(read_done(results))
        assert server.count - served_before >= 1  # calls made that no result accounts for
        resumed = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert server.count <= 20  # the cap holds across the kill
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_charged"]["calls"] == 20
    assert summary["n_problems"] == 40 and summary["stopped_by"]["run:calls"] >= 20


def test_problems_stopped_by_a_run_limit_are_retried_when_it_is_raised(tmp_path):
    out = tmp_path / "out"
    common = ["--dataset", "gsm8k", "--limit", "6", "--strategy", "greedy", "--backend", "scripted:1",
              "--max-tokens", "100", "--out", str(out)]
    assert run_cli("run", *common, "--run-budget", "calls=3") == 0
    assert json.loads((out / "summary.json").read_text())["stopped_by"] == {"run:calls": 3}
    assert run_cli("run", *common, "--run-budget", "calls=3") == 0  # not raised: nothing to retry
    assert json.loads((out / "summary.json").read_text())["run_charged"]["calls"] == 3
    assert run_cli("run", *common, "--run-budget", "calls=5") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == {"run:calls": 1} and summary["usage"]["calls"] == 5
    assert run_cli("run", *common, "--run-budget", "") == 0  # no run budget: every problem gets its go
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == {} and summary["usage"]["calls"] == 6 and summary["run_charged"]["calls"] == 6
    assert summary["n_problems"] == 6 and summary["complete"]


def test_run_help_lists_every_builtin_dataset_and_backend(capsys):
    from reasoning.benchmarks.datasets import BUILTIN

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert all(name in shown for name in BUILTIN) and "game24-all" in shown and "vllm[:PATH]" in shown


def test_a_budget_smaller_than_any_prompt_is_refused_up_front(tmp_path, capsys):
    code = main(["run", "--dataset", "gsm8k", "--limit", "2", "--backend", "scripted", "--budget", "tokens=20",
                 "--out", str(tmp_path / "small")])
    assert code == 2 and "shortest prompt alone is" in capsys.readouterr().err
    assert not (tmp_path / "small" / "results.jsonl").exists() or not (tmp_path / "small" / "results.jsonl").read_text()
