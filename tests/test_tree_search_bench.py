"""benchmarks/tree_search.py: strategies at one width on one backend, plus self-consistency at
matched uncached compute (run here on the scripted backend; the GPU run uses vLLM)."""

import json

from reasoning.benchmarks.tree_search import _spec, main


def test_options_parse_as_json_or_text():
    assert _spec("parallel-thinking:groups=2,hints=true,synthesis_prompt=mine") == (
        "parallel-thinking", {"groups": 2, "hints": True, "synthesis_prompt": "mine"})


def test_report_has_every_strategy_and_a_matched_self_consistency(tmp_path):
    out = tmp_path / "ts.json"
    assert main(["--backend", "scripted:4,4,5", "--dataset", "gsm8k:3", "--strategy", "self-consistency",
                 "--strategy", "greedy", "--width", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["datasets"]["gsm8k:3"]
    assert [r["strategy"] for r in rows][:2] == ["self-consistency", "greedy"]
    assert rows[0]["describe"]["n"] == 3 and rows[0]["total"]["calls"] == 3
    matched = rows[-1]
    assert matched["strategy"].startswith("self-consistency n=") and "(matched to self-consistency)" in matched["strategy"]
    ratio = matched["per_problem"]["uncached_tokens"] / rows[0]["per_problem"]["uncached_tokens"]
    assert 0.5 <= ratio <= 1.5  # about the same compute
    for row in rows:
        per = row["per_problem"]
        assert per["uncached_tokens"] == per["tokens"] - per["cached_prompt_tokens"]


def test_the_results_table_is_generated_from_the_report(tmp_path, capsys):
    out = tmp_path / "ts.json"
    main(["--backend", "scripted:4", "--dataset", "gsm8k:2", "--strategy", "greedy", "--no-sc-matched", "--out", str(out)])
    capsys.readouterr()
    assert main(["--table", str(out)]) == 0
    table = capsys.readouterr().out
    row = json.loads(out.read_text())["datasets"]["gsm8k:2"][0]
    assert f"| greedy | {row['accuracy']:.3f} |" in table
