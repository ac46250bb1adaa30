"""benchmarks.latency: per-problem wall time, one problem at a time."""

import json

from reasoning.benchmarks.latency import main


def test_latency_report_times_each_strategy_and_the_synthesis_costs_a_second_call(tmp_path):
    out = tmp_path / "latency.json"
    # Every call takes 20 ms: greedy and SC make one call per problem, parallel thinking two.
    assert main(["--backend", "scripted:18?latency=0.02", "--limit", "3", "--paths", "4", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    timed = report["strategies"]
    assert set(timed) == {"greedy", "self-consistency n=4", "parallel-thinking paths=4"}
    assert all(len(entry["seconds"]) == 3 for entry in timed.values())
    assert timed["self-consistency n=4"]["mean_completion_tokens"] == 4 * timed["greedy"]["mean_completion_tokens"]
    assert 1.6 < report["parallel_thinking_over_sc"]["median"] < 3.0
