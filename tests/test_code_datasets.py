"""HumanEval / MBPP: shipped data passes through the sandbox; pass@k; the CLI end to end."""

import asyncio
import json
import random
from math import comb

import pytest

from reasoning.benchmarks.cli import main
from reasoning.benchmarks.datasets import load_items
from reasoning.benchmarks.run import RunConfig, code_program, pass_at_k, pass_ks, run_benchmark
from reasoning.backends import Scripted
from reasoning.strategies import create
from reasoning.verifiers import arun_code_tests, extract_code

DATA = __import__("reasoning.benchmarks.datasets", fromlist=["DATA_DIR"]).DATA_DIR


def _rows(name):
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


async def _grade_all(pairs):
    return await asyncio.gather(*(arun_code_tests(**code_program(item, code), timeout=10) for item, code in pairs))


def test_builtin_code_datasets_load():
    humaneval = load_items("humaneval")
    assert len(humaneval) == 164 and all(item.kind == "code" for item in humaneval)
    assert humaneval[0].metadata["entry_point"] == "has_close_elements"
    mbpp = load_items("mbpp")
    assert len(mbpp) == 257 and {item.metadata["split"] for item in mbpp} == {"test"}
    assert load_items("gsm8k", 1)[0].kind == "math"


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass():
    items = {item.id: item for item in load_items("humaneval")}
    pairs = [(items[str(row["id"])], row["canonical_solution"]) for row in _rows("humaneval.jsonl")]
    verdicts = asyncio.run(_grade_all(pairs))
    failed = [(item.id, v.status, v.detail) for (item, _), v in zip(pairs, verdicts) if not v.passed]
    assert failed == []


def test_humaneval_sample_canonical_pass_and_wrong_fail():
    items = {item.id: item for item in load_items("humaneval")}
    rows = random.Random(0).sample(_rows("humaneval.jsonl"), 10)
    good = asyncio.run(_grade_all([(items[str(r["id"])], r["canonical_solution"]) for r in rows]))
    assert all(v.passed for v in good), [v for v in good if not v.passed]
    bad = asyncio.run(_grade_all([(items[str(r["id"])], "    return None\n") for r in rows]))
    assert not any(v.passed for v in bad)


def test_mbpp_reference_solutions_pass():
    items = {item.id: item for item in load_items("mbpp")}
    rows = [r for r in _rows("mbpp_sanitized.jsonl") if str(r["id"]) in items]
    sample = random.Random(0).sample(rows, 20)
    verdicts = asyncio.run(_grade_all([(items[str(r["id"])], r["code"]) for r in sample]))
    assert all(v.passed for v in verdicts), [(r["task_id"], v) for r, v in zip(sample, verdicts) if not v.passed]


@pytest.mark.slow
def test_all_mbpp_reference_solutions_pass():
    # The sandbox compares across processes: regex matches stay truthy, ``sum`` is the function
    # under test; every reference solution of the test split must still pass.
    items = {item.id: item for item in load_items("mbpp")}
    rows = [r for r in _rows("mbpp_sanitized.jsonl") if str(r["id"]) in items]
    verdicts = asyncio.run(_grade_all([(items[str(r["id"])], r["code"]) for r in rows]))
    assert [(r["task_id"], v.status) for r, v in zip(rows, verdicts) if not v.passed] == []


def test_forged_pass_from_a_stub_model_scores_zero(tmp_path):
    # A model that always answers with a program that reports itself as passed (the attack
    # that made pass@1 = 1.0): every HumanEval problem must fail.
    forged = "```python\nimport __main__, os\n__main__.report('passed')\nprint('passed')\nos._exit(0)\n```"
    out = tmp_path / "run"
    code = main(["run", "--dataset", "humaneval", "--limit", "4", "--strategy", "greedy", "--backend",
                 f"scripted:{forged}", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == 0.0 and summary["n_problems"] == 4


@pytest.mark.parametrize("n, c, k, expected", [
    (1, 1, 1, 1.0), (1, 0, 1, 0.0), (4, 1, 1, 0.25), (4, 2, 2, 1 - 1 / 6), (4, 1, 4, 1.0),
    (10, 3, 1, 0.3), (10, 3, 2, 1 - 21 / 45), (10, 0, 8, 0.0), (5, 4, 2, 1.0),
])
def test_pass_at_k_matches_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_ks():
    assert pass_ks(1) == [1] and pass_ks(4) == [1, 2, 4] and pass_ks(6) == [1, 2, 4, 6]


def test_run_grades_every_sample_and_reports_pass_at_k(tmp_path):
    """Self-consistency over 4 samples, 2 of them correct: pass@1 = 0.5, pass@4 = 1."""
    item = load_items("humaneval", 1)[0]
    right = "```python\nfrom typing import List\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n" \
            "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```"
    wrong = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
    backend = Scripted(responder=lambda request, index: [right, wrong, right, "no code here"][index % 4])
    config = RunConfig(dataset="humaneval", limit=1, strategy="self-consistency", backend="scripted", out=str(tmp_path))
    summary = asyncio.run(run_benchmark(config, create("self-consistency", n=4), backend, items=[item]))
    row = json.loads((tmp_path / "results.jsonl").read_text())
    assert row["correct"] is True and row["status"] == "passed"
    assert row["answer"] == extract_code(right)
    assert sorted(row["sample_status"]) == ["failed", "no_code", "passed", "passed"]
    assert row["pass_at"] == {"1": 0.5, "2": pytest.approx(5 / 6), "4": 1.0}
    assert summary["pass_at"]["1"] == 0.5 and summary["accuracy"] == 1.0
    assert "```python" in backend.requests[0].messages[0].content


def test_cli_end_to_end_on_humaneval(tmp_path):
    out = tmp_path / "out"
    code = main(["run", "--dataset", "humaneval", "--limit", "2", "--strategy", "self-consistency", "--n", "4",
                 "--backend", "scripted:1", "--out", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["correct"] is False and r["pass_at"]["4"] == 0.0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass_at"] == {"1": 0.0, "2": 0.0, "4": 0.0} and summary["complete"]


def test_users_own_code_jsonl(tmp_path):
    data = tmp_path / "tasks.jsonl"
    data.write_text(json.dumps({"prompt": "def one():\n", "entry_point": "one", "test": "def check(f):\n    assert f() == 1\n"}) + "\n")
    out = tmp_path / "o"
    backend = "scripted"
    assert main(["run", "--dataset", str(data), "--strategy", "greedy", "--backend", backend, "--out", str(out)]) == 0
    row = json.loads((out / "results.jsonl").read_text())
    assert row["status"] == "no_code" and row["correct"] is False
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"entry_point": "one", "test": "x"}) + "\n")
    assert main(["run", "--dataset", str(bad), "--backend", "scripted", "--out", str(tmp_path / "b")]) == 2


def test_summary_names_the_sandbox_and_strict_refuses_without_isolation(tmp_path):
    answer = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
    out = tmp_path / "run"
    assert main(["run", "--dataset", "humaneval", "--limit", "1", "--strategy", "greedy", "--backend",
                 f"scripted:{answer}", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    from reasoning.verifiers.code_exec import sandbox_isolation
    assert summary["sandbox_isolation"] == [sandbox_isolation()[0]]
    # Strict mode on a machine without bubblewrap: refused up front, exit code 2.
    script = ("import sys\nfrom benchmarks.cli import main\nsys.exit(main(['run', '--dataset', 'humaneval', '--limit', '1', "
              f"'--strategy', 'greedy', '--backend', 'scripted:x', '--sandbox', 'strict', '--out', {str(tmp_path / 's')!r}]))\n")
    import os, subprocess, sys
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "REASONING_BWRAP": ""},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--sandbox strict" in done.stdout + done.stderr
    assert not (tmp_path / "s" / "results.jsonl").exists()
