"""benchmarks.latency: per-problem wall time, one problem at a time, every strategy against SC."""

import json
from types import SimpleNamespace

import pytest

from reasoning.benchmarks import latency
from reasoning.benchmarks.latency import main, percentile
from reasoning.strategies import available


@pytest.fixture
def logical_clock(monkeypatch):
    """A logical clock instead of the wall clock: it reads the number of backend calls made so far,
    so a problem's "seconds" is its number of calls and nothing depends on the machine's speed."""
    calls = []
    real_from_spec = latency.from_spec

    def counting(spec):
        backend = real_from_spec(spec)
        generate = backend.generate

        async def counted(request):
            calls.append(request.n)
            return await generate(request)

        backend.generate = counted
        return backend

    monkeypatch.setattr(latency, "from_spec", counting)
    monkeypatch.setattr(latency, "time", SimpleNamespace(perf_counter=lambda: float(len(calls))))
    return calls


def test_latency_report_times_each_strategy_and_the_synthesis_costs_a_second_call(tmp_path, logical_clock):
    out = tmp_path / "latency.json"
    assert main(["--backend", "scripted:18", "--limit", "3", "--paths", "4", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    timed = report["strategies"]
    assert list(timed) == ["greedy", "self-consistency n=4", "parallel-thinking paths=4",
                           "parallel-thinking paths=4, default options"]
    # Greedy and SC: one call per problem; parallel thinking as published: the paths' batched
    # call, then the synthesis; with its defaults, one hinted call per path, then the synthesis.
    # The first problem of each is solved twice (warm-up) and only its second solve is timed.
    assert timed["greedy"]["seconds"] == timed["self-consistency n=4"]["seconds"] == [1.0, 1.0, 1.0]
    assert timed["parallel-thinking paths=4"]["seconds"] == [2.0, 2.0, 2.0]
    assert timed["parallel-thinking paths=4, default options"]["seconds"] == [5.0, 5.0, 5.0]
    assert logical_clock == [1] * 4 + [4] * 4 + [4, 1] * 4 + [1, 1, 1, 1, 1] * 4
    assert timed["self-consistency n=4"]["mean_completion_tokens"] == 4 * timed["greedy"]["mean_completion_tokens"]
    # The stored run's fields are still written (RESULTS.md's first latency run reads them).
    assert report["parallel_thinking_over_sc"] == {"median": 2.0, "mean": 2.0}
    assert {"median_s", "mean_s", "mean_completion_tokens", "seconds"} <= set(timed["greedy"])


def test_every_strategy_gets_p50_p95_tokens_calls_and_its_ratio_to_self_consistency(tmp_path, logical_clock, monkeypatch):
    snapshots = []
    real_write = latency.write

    def recording(report, out):
        snapshots.append(list(report["strategies"]))
        real_write(report, out)

    monkeypatch.setattr(latency, "write", recording)
    out = tmp_path / "all.json"
    assert main(["--backend", "scripted:18", "--limit", "2", "--paths", "2", "--strategies", "all",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    timed = report["strategies"]
    # Every registered strategy is in the report (parallel thinking twice), the three of the
    # stored run first; the JSON is written after each one, so a run cut off keeps what it measured.
    assert list(timed)[:3] == ["greedy", "self-consistency n=2", "parallel-thinking paths=2"]
    measured = {label.split(" ")[0] for label in timed}
    assert measured == set(available())
    assert [len(s) for s in snapshots[:-1]] == list(range(1, len(timed) + 1))
    for label, figures in timed.items():
        if figures["problems"] == 0:  # e.g. a strategy whose roles need a second model
            assert figures["status"].startswith("error: "), label
            continue
        assert figures["status"] == "done" and figures["problems"] == 2, label
        assert {"p50_s", "p95_s", "mean_tokens", "mean_completion_tokens", "mean_calls", "vs_sc", "options"} <= set(figures)
        assert figures["p50_s"] <= figures["p95_s"]
        assert figures["mean_calls"] >= 1 and figures["mean_tokens"] > figures["mean_completion_tokens"]
    assert timed["self-consistency n=2"]["vs_sc"] == {"p50": 1.0, "p95": 1.0}
    assert timed["best-of-n n=2"]["options"]["n"] == 2 and timed["early-stop-sc max_n=2"]["options"]["max_n"] == 2
    assert timed["atts n=2"]["status"].startswith("error: ConfigError") and "roles" in timed["atts n=2"]["status"]


def test_parallel_thinking_latency_is_split_into_paths_and_synthesis_from_its_trace(tmp_path):
    out = tmp_path / "pt.json"
    assert main(["--backend", "scripted:18", "--limit", "2", "--paths", "3", "--strategies", "parallel-thinking",
                 "--out", str(out)]) == 0
    timed = json.loads(out.read_text())["strategies"]
    for label in ("parallel-thinking paths=3", "parallel-thinking paths=3, default options"):
        phases = timed[label]["phases"]
        assert set(phases) == {"first_path_s", "last_path_s", "gap_s", "synthesis_s"}
        for first, last, gap, synthesis in zip(*(phases[k]["seconds"] for k in phases), strict=True):
            assert 0 <= first <= last and gap >= 0 and synthesis >= 0
    # One batched call of identical paths: the first and the last path end together.
    published = timed["parallel-thinking paths=3"]["phases"]
    assert published["first_path_s"]["seconds"] == published["last_path_s"]["seconds"]


def test_a_strategy_past_its_seconds_stops_and_says_so(tmp_path, logical_clock):
    out = tmp_path / "cut.json"
    # Logical seconds = calls: the warm-up problem spends 2, the second problem starts with 0.5
    # left and finishes, the third finds none left.
    assert main(["--backend", "scripted:18", "--limit", "3", "--paths", "2", "--strategies", "self-consistency",
                 "--max-seconds-per-strategy", "2.5", "--out", str(out)]) == 0
    sc = json.loads(out.read_text())["strategies"]["self-consistency n=2"]
    assert sc["problems"] == 2 and sc["status"] == "cut at 2.5 s after 2 of 3 problems"


def test_a_strategy_can_have_its_own_seconds(tmp_path, logical_clock):
    out = tmp_path / "own.json"
    assert main(["--backend", "scripted:18", "--limit", "3", "--paths", "2", "--strategies", "greedy,self-consistency",
                 "--max-seconds-per-strategy", "2.5", "--max-seconds-per-strategy", "greedy=10", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["max_seconds_per_strategy"] == {"*": 2.5, "greedy": 10.0}
    assert report["strategies"]["greedy"]["status"] == "done"
    assert report["strategies"]["self-consistency n=2"]["status"].startswith("cut at 2.5 s")
    with pytest.raises(SystemExit):
        main(["--strategies", "greedy", "--max-seconds-per-strategy", "no-such=3"])


def test_a_problem_still_running_at_the_strategy_deadline_is_cancelled_not_counted(tmp_path):
    out = tmp_path / "slow.json"
    assert main(["--backend", "scripted:18?latency=30", "--limit", "2", "--strategies", "greedy",
                 "--max-seconds-per-strategy", "0.2", "--out", str(out)]) == 0
    greedy = json.loads(out.read_text())["strategies"]["greedy"]
    assert greedy["problems"] == 0 and greedy["status"] == "cut at 0.2 s after 0 of 2 problems"


def test_percentiles_interpolate_between_order_statistics():
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile(list(map(float, range(1, 21))), 0.95) == pytest.approx(19.05)
    assert percentile([7.0], 0.95) == 7.0


def test_results_md_table_reads_what_the_benchmark_writes_and_says_when_no_run_is_stored(tmp_path):
    from reasoning.benchmarks.results_tables import latency_all

    out = tmp_path / "latency_all_h200.json"
    assert main(["--backend", "scripted:18", "--limit", "2", "--paths", "2",
                 "--strategies", "greedy,self-consistency,parallel-thinking,atts", "--out", str(out)]) == 0
    text = latency_all("latency_all_h200.json")(tmp_path)
    assert text.startswith("Command: `python -m reasoning.benchmarks.latency --backend scripted:18")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| strategy | problems timed | p50 s | p95 s | p50 / SC | p95 / SC |")
    assert any(r.startswith("| self-consistency n=2 | 2 |") and "**1.00×** | **1.00×**" in r for r in rows)
    assert any(r.startswith("| atts n=2 | 0 | – |") and "error: ConfigError" in r for r in rows)
    phases = [r for r in rows if r.startswith("| parallel-thinking paths=2, default options | ") and r.count(" | ") == 4]
    assert [r.split(" | ")[1] for r in phases] == ["first path's call ends", "last path's call ends",
                                                   "gap: last path to the synthesis call (vote, prompt)", "synthesis call"]
    assert latency_all("latency_all_h200.json")(tmp_path / "elsewhere").startswith("No run stored yet")
