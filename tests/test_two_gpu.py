"""benchmarks/two_gpu.py (issue 16): the figures it derives and its plumbing on the scripted
model. The GPU run itself is in benchmarks/RESULTS.md."""

import json

from reasoning.benchmarks.two_gpu import figures, main


def _entry(config, gpus, tokens, solve, charged_tokens, budget="tokens=1000"):
    return {"config": config, "gpus": gpus, "complete": True, "run_budget": budget, "solve_seconds": solve,
            "wall_seconds": solve + 30, "usage": {"completion_tokens": tokens},
            "run_charged": {"tokens": charged_tokens, "calls": 3}}


def test_scaling_is_throughput_over_one_gpus_and_efficiency_per_gpu():
    runs = [_entry("one_gpu", 1, 1000, 10.0, 900), _entry("dp2", 2, 1000, 5.5, 900),
            _entry("ray2_binding", 2, 300, 1.0, 990)]
    figures(runs)
    assert runs[0]["tokens_per_s"] == 100.0 and runs[0]["scaling"] == 1.0
    assert abs(runs[1]["scaling"] - 10 / 5.5) < 1e-9 and abs(runs[1]["efficiency"] - 10 / 11) < 1e-9
    assert runs[1]["end_to_end_tokens_per_s"] == 1000 / 35.5
    assert "scaling" not in runs[2]  # a run its budget stopped is no throughput figure


def test_budget_held_compares_what_the_run_charged_with_its_limit():
    runs = [_entry("one_gpu", 1, 10, 1.0, 1000), _entry("tp2", 2, 10, 1.0, 1001),
            _entry("dp2", 2, 10, 1.0, 5, budget="calls=2")]
    figures(runs)
    assert [r["budget_held"] for r in runs] == [True, False, False]


def test_runs_the_real_command_per_config_and_reports_each(tmp_path):
    out = tmp_path / "two.json"
    assert main(["--backend", "scripted:18,3", "--configs", "one_gpu", "dp2", "--limit", "3", "--n", "2",
                 "--run-budget", "tokens=100000", "--root", str(tmp_path / "runs"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["config"] for r in report["runs"]] == ["one_gpu", "dp2"]
    for run in report["runs"]:
        assert run["returncode"] == 0 and run["n_problems"] == 3 and run["complete"]
        assert run["budget_held"] and 0 < run["solve_seconds"] <= run["wall_seconds"]
        assert run["usage"]["completion_tokens"] > 0 and run["tokens_per_s"] > 0
        summary = json.loads((tmp_path / "runs" / run["config"] / "summary.json").read_text())
        assert summary["usage"] == run["usage"]
