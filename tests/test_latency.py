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
    assert report["parallel_thinking_over_sc"] == {"median": 2.0, "mean": 2.0, "problems": 3}
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
    assert timed["self-consistency n=2"]["vs_sc"] == {"p50": 1.0, "p95": 1.0, "problems": 2}
    assert timed["best-of-n n=2"]["options"]["n"] == 2 and timed["early-stop-sc max_n=2"]["options"]["max_n"] == 2
    assert timed["atts n=2"]["status"].startswith("error: ConfigError") and "roles" in timed["atts n=2"]["status"]
    # Why there is no figure, in plain words (the table's note).
    assert timed["atts n=2"]["reason"] == "not run: needs the roles draft, target (--role NAME=SPEC), not given"
    assert timed["cascade n=2"]["reason"] == "not run: needs the roles small, large (--role NAME=SPEC), not given"
    # The scripted backend stops traces while they run: deepconf is measured online.
    assert timed["deepconf n=2"]["status"] == "done" and timed["deepconf n=2"]["options"]["mode"] == "online"


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
                 "--max-seconds-per-strategy", "self-consistency=2.5", "--out", str(out)]) == 0
    sc = json.loads(out.read_text())["strategies"]["self-consistency n=2"]
    assert sc["problems"] == 2 and sc["status"] == "cut at 2.5 s after 2 of 3 problems"
    assert sc["ids"] == ["0", "1"]  # the problems timed, in order


def test_the_baselines_are_cut_only_by_their_own_seconds(tmp_path, logical_clock):
    out = tmp_path / "own.json"
    # The plain 2.5 s cuts parallel thinking (2 calls a problem: the warm-up alone spends 4) but
    # not greedy or self-consistency, whose times every ratio needs; greedy=2.5 cuts greedy.
    assert main(["--backend", "scripted:18", "--limit", "3", "--paths", "2",
                 "--strategies", "greedy,self-consistency,parallel-thinking",
                 "--max-seconds-per-strategy", "2.5", "--max-seconds-per-strategy", "greedy=2.5",
                 "--max-seconds-per-strategy", "parallel-thinking=10", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["max_seconds_per_strategy"] == {"*": 2.5, "greedy": 2.5, "parallel-thinking": 10.0}
    assert report["baselines_uncut"] == ["greedy", "self-consistency"]
    timed = report["strategies"]
    assert timed["self-consistency n=2"]["status"] == "done" and timed["self-consistency n=2"]["problems"] == 3
    assert timed["greedy"]["status"] == "cut at 2.5 s after 2 of 3 problems"
    assert timed["parallel-thinking paths=2"]["status"] == "done"
    assert timed["parallel-thinking paths=2, default options"]["status"] == "done"
    assert main(["--backend", "scripted:18", "--limit", "3", "--paths", "2", "--strategies", "greedy,best-of-n",
                 "--max-seconds-per-strategy", "2.5", "--out", str(out)]) == 0
    timed = json.loads(out.read_text())["strategies"]
    assert timed["greedy"]["status"] == "done"
    assert timed["best-of-n n=2"]["status"].startswith("cut at 2.5 s")
    with pytest.raises(SystemExit):
        main(["--strategies", "greedy", "--max-seconds-per-strategy", "no-such=3"])


def test_a_problem_still_running_at_the_strategy_deadline_is_cancelled_not_counted(tmp_path):
    out = tmp_path / "slow.json"
    assert main(["--backend", "scripted:18?latency=30", "--limit", "2", "--strategies", "greedy",
                 "--max-seconds-per-strategy", "greedy=0.2", "--out", str(out)]) == 0
    greedy = json.loads(out.read_text())["strategies"]["greedy"]
    assert greedy["problems"] == 0 and greedy["status"] == "cut at 0.2 s after 0 of 2 problems"
    assert greedy["reason"].startswith("cut: not one problem finished within its 0.2 s")


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
    assert rows[0].startswith("| strategy | problems timed | p50 s | p95 s | vs SC over | p50 / SC | p95 / SC |")
    assert any(r.startswith("| self-consistency n=2 | 2 |") and "| 2 | **1.00×** | **1.00×**" in r for r in rows)
    assert any(r.startswith("| atts n=2 | 0 | – |")
               and r.endswith("| not run: needs the roles draft, target (--role NAME=SPEC), not given |") for r in rows)
    phases = [r for r in rows if r.startswith("| parallel-thinking paths=2, default options | ") and r.count(" | ") == 4]
    assert [r.split(" | ")[1] for r in phases] == ["first path's call ends", "last path's call ends",
                                                   "gap: last path to the synthesis call (vote, prompt)", "synthesis call"]
    assert latency_all("latency_all_h200.json")(tmp_path / "elsewhere").startswith("No run stored yet")


def test_the_ratio_to_self_consistency_is_over_the_same_problems():
    from reasoning.benchmarks.latency import ratio_to_sc, same_problems

    sc = {"seconds": [1.0, 2.0, 10.0, 10.0, 10.0], "ids": ["a", "b", "c", "d", "e"]}
    cut = {"seconds": [2.0, 4.0], "ids": ["a", "b"]}  # cut after 2 problems: SC's first 2, not all 5
    assert same_problems(cut, sc) == ([2.0, 4.0], [1.0, 2.0])
    assert ratio_to_sc(cut, sc) == {"problems": 2, "p50": 2.0, "p95": pytest.approx(3.9 / 1.95)}
    # SC cut shorter than the strategy: the strategy's problems that SC timed too.
    long = {"seconds": [3.0, 3.0, 3.0, 9.0, 9.0, 9.0], "ids": ["a", "b", "c", "d", "e", "f"]}
    assert ratio_to_sc(long, sc)["problems"] == 5
    # A run stored without ids (the first 2026-11-29 one): problems are solved in order, so the first k.
    assert same_problems({"seconds": [2.0, 4.0]}, {"seconds": [1.0, 2.0, 10.0]}) == ([2.0, 4.0], [1.0, 2.0])
    assert ratio_to_sc({"seconds": [5.0]}, {"seconds": [1.0], "ids": ["z"]})["p50"] == 5.0
    assert ratio_to_sc({"seconds": [5.0], "ids": ["y"]}, {"seconds": [1.0], "ids": ["z"]}) is None


def test_the_table_compares_a_cut_strategy_with_self_consistency_on_its_problems_and_takes_a_second_call(tmp_path):
    from reasoning.benchmarks.results_tables import latency_all

    def run(strategies: dict) -> dict:
        return {"date": "d", "backend": {"backend": "vllm:model"}, "machine": "m", "dataset": "gsm8k", "problems": 5,
                "paths": 8, "max_tokens": 512, "command": "python -m reasoning.benchmarks.latency x",
                "strategies": strategies}

    first = run({"self-consistency n=8": {"seconds": [1.0, 2.0, 10.0, 10.0, 10.0], "status": "done"},
                 "beam-search n=8": {"seconds": [2.0, 4.0], "status": "cut at 7 s after 2 of 5 problems"},
                 "atts n=8": {"problems": 0, "status": "error: ConfigError: atts: draft/target names roles with no "
                              "backend: draft, target; give each as --role NAME=SPEC"},
                 "dvts n=8": {"problems": 0, "status": "cut at 7 s after 0 of 5 problems"}})
    def table() -> tuple[str, dict[str, str]]:  # the table of both calls, and its rows by strategy
        text = latency_all("one.json", "two.json")(tmp_path)
        return text, {r.split(" | ")[0][2:]: r for r in text.splitlines()
                      if r.startswith("| ") and not r.startswith("| strategy")}

    (tmp_path / "one.json").write_text(json.dumps(first))
    text, rows = table()
    # 2 problems each: beam search's p50 3.0 over SC's 1.5 on those problems (over all five SC's p50 is 10.0).
    assert "| 2 | 3.00 | 3.90 | 2 | **2.00×** | **2.00×** |" in rows["beam-search n=8"]
    assert rows["atts n=8"].endswith("not run: needs the roles draft, target (--role NAME=SPEC), not given |")
    assert "cut: not one problem finished within its 7 s" in rows["dvts n=8"]
    assert "Call 2 (the strategies that need roles: atts, cascade): no run stored yet" in text
    # A second call: atts takes its figure, against the second call's own self-consistency (shown too).
    second = run({"self-consistency n=8": {"seconds": [2.0, 2.0], "status": "done"},
                  "atts n=8": {"seconds": [4.0, 6.0], "status": "done"},
                  "deepconf n=8": {"seconds": [3.0, 3.0], "status": "done"}})
    (tmp_path / "two.json").write_text(json.dumps(second))
    text, rows = table()
    # Each call-2 row names its baseline: call 2's SC on call 2's --backend (here call 1's model).
    assert "| 2 | **2.50×** |" in rows["atts n=8"]
    assert rows["atts n=8"].endswith("| call 2, vs call 2's SC on vllm:model, call 1's model |")
    assert "| **1.50×** |" in rows["deepconf n=8"]
    assert rows["self-consistency n=8 (call 2)"].startswith("| self-consistency n=8 (call 2) | 2 | 2.00 |")
    assert "call 2's baseline" in rows["self-consistency n=8 (call 2)"]
    assert list(rows)[:5] == ["self-consistency n=8", "self-consistency n=8 (call 2)", "beam-search n=8", "atts n=8",
                              "dvts n=8"]


def test_roles_let_multi_model_strategies_run_and_a_spec_given_twice_is_one_backend(tmp_path, monkeypatch):
    built = []
    real_from_spec = latency.from_spec

    def counting(spec, **options):
        built.append(spec)
        return real_from_spec(spec, **options)

    monkeypatch.setattr(latency, "from_spec", counting)
    out = tmp_path / "roles.json"
    assert main(["--backend", "scripted:18", "--limit", "2", "--paths", "2", "--strategies", "self-consistency,atts,cascade",
                 "--role", "draft=scripted:18", "--role", "target=scripted:7", "--role", "small=scripted:3",
                 "--role", "large=scripted:7", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert built == ["scripted:18", "scripted:7", "scripted:3"]  # draft shares the generator, large the target
    assert set(report["roles"]) == {"draft", "target", "small", "large"}
    for label in ("atts n=2", "cascade n=2"):
        figures = report["strategies"][label]
        assert figures["status"] == "done" and figures["problems"] == 2 and figures["vs_sc"]["problems"] == 2, label


def test_deepconf_is_measured_offline_and_labelled_so_when_the_backend_cannot_stop_traces(tmp_path, monkeypatch):
    from reasoning.backends.scripted import Scripted

    monkeypatch.setattr(latency, "from_spec", lambda spec, **options: Scripted(["18"], confidence_stop=False))
    out = tmp_path / "deepconf.json"
    assert main(["--backend", "scripted:18", "--limit", "2", "--paths", "2", "--strategies", "self-consistency,deepconf",
                 "--out", str(out)]) == 0
    timed = json.loads(out.read_text())["strategies"]
    assert list(timed) == ["self-consistency n=2", "deepconf n=2, offline"]
    offline = timed["deepconf n=2, offline"]
    assert offline["status"] == "done" and offline["problems"] == 2 and offline["options"]["mode"] == "offline"
