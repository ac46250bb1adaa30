"""benchmarks.latency: per-problem wall time, one problem at a time."""

import json
from types import SimpleNamespace

from reasoning.benchmarks import latency
from reasoning.benchmarks.latency import main


def test_latency_report_times_each_strategy_and_the_synthesis_costs_a_second_call(tmp_path, monkeypatch):
    # A logical clock instead of the wall clock: it reads the number of backend calls made so far,
    # so a problem's "seconds" is its number of calls and nothing depends on the machine's speed.
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
    out = tmp_path / "latency.json"
    assert main(["--backend", "scripted:18", "--limit", "3", "--paths", "4", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    timed = report["strategies"]
    assert set(timed) == {"greedy", "self-consistency n=4", "parallel-thinking paths=4"}
    # Greedy and SC: one call per problem; parallel thinking: the paths' call, then the synthesis.
    # The first problem of each is solved twice (warm-up) and only its second solve is timed.
    assert timed["greedy"]["seconds"] == timed["self-consistency n=4"]["seconds"] == [1.0, 1.0, 1.0]
    assert timed["parallel-thinking paths=4"]["seconds"] == [2.0, 2.0, 2.0]
    assert calls == [1] * 4 + [4] * 4 + [4, 1] * 4
    assert timed["self-consistency n=4"]["mean_completion_tokens"] == 4 * timed["greedy"]["mean_completion_tokens"]
    assert report["parallel_thinking_over_sc"] == {"median": 2.0, "mean": 2.0}
