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
    # Recomputed from the files: each row's answer is the vote over its call's two samples, its
    # gold the dataset's, its grade the grader's; the summary is the rows' mean and sums.
    from reasoning.answers import extract_answer
    from reasoning.benchmarks.datasets import load_items
    from reasoning.context import Sample
    from reasoning.strategies.voting import majority
    from reasoning.verifiers import is_equivalent

    golds = {item.id: item.answer for item in load_items("gsm8k", 2)}
    traces = {t["id"]: t["trace"] for t in map(json.loads, (out / "traces.jsonl").read_text().splitlines())}
    for row in rows:
        [call] = [node for node in traces[row["id"]] if node["kind"] == "generate"]
        assert call["request"]["n"] == 2 and len(call["completions"]) == 2
        assert call["usage"]["completion_tokens"] == row["usage"]["completion_tokens"] == sum(
            c["completion_tokens"] for c in call["completions"])
        votes = [Sample(c["text"], extract_answer(c["text"])) for c in call["completions"]]
        assert row["answer"] == majority(votes).answer and row["gold"] == golds[row["id"]]
        assert row["correct"] == (is_equivalent(row["gold"], row["answer"]) is True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_problems"] == 2 and summary["complete"]
    assert summary["n_correct"] == sum(row["correct"] for row in rows)
    assert summary["accuracy"] == summary["n_correct"] / 2
    assert summary["usage"]["tokens"] == sum(row["usage"]["tokens"] for row in rows)
