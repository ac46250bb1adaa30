"""The README's main job, shrunk: the real embedded model on CPU through the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_reasoning_bench_run_on_the_embedded_model(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "reasoning.benchmarks.cli", "run", "--dataset", "gsm8k", "--limit", "2",
           "--strategy", "self-consistency", "--n", "2", "--backend", "local", "--max-tokens", "192",
           "--budget", "completion_tokens=600", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["0", "1"]
    for row in rows:
        usage = row["usage"]
        assert usage["calls"] == 1 and usage["prompt_tokens"] > 20
        # Real token counts from the model, within the enforced per-problem budget.
        assert 0 < usage["completion_tokens"] <= 2 * 192 and usage["completion_tokens"] <= 600
        assert usage["usd"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_problems"] == 2 and summary["complete"]
    assert "accuracy" in summary and 0 <= summary["accuracy"] <= 1
    trace = json.loads((out / "traces.jsonl").read_text().splitlines()[0])["trace"]
    call = next(node for node in trace if node["kind"] == "generate")
    assert call["request"]["n"] == 2 and len(call["completions"]) == 2
