"""Sleep-time compute (strategies/sleep_time.py) and its data set (stateful_gsm8k.jsonl): one
offline computation per context, accounted apart from the question's test-time compute and
amortised over the questions that share it."""

import asyncio
import hashlib
import json
import re

import pytest
from reasoning.benchmarks import make_stateful_gsm8k as make
from reasoning.benchmarks.datasets import DATA_DIR, load_items
from reasoning.benchmarks.run import RunConfig, run_benchmark
from reasoning.strategies import create
from reasoning.strategies.memory_store import MemoryStore
from reasoning.strategies.sleep_time import SleepTime, split_context

import reasoning as rz
from reasoning.backends import Scripted

CONTEXT = "Janet has 16 eggs. She eats 3 for breakfast."
QUERIES = ["How many eggs are left?", "How many did she eat?", "How many did she have?", "What is 16 + 3?"]


def is_thinking(request):
    return "Think about it now" in request.messages[-1].content


def backend(notes="1. Eggs left: 16 - 3 = 13", **kw):
    def respond(request, index):
        return notes if is_thinking(request) else "From the notes, \\boxed{13}"

    return Scripted(responder=respond, completion_tokens=lambda text: len(text.split()), **kw)


def questions(context=CONTEXT, queries=QUERIES, context_id="c1", shared=True):
    meta = {"context": context, "context_id": context_id, **({"context_questions": len(queries)} if shared else {})}
    return [rz.Problem(f"{context} {q}", f"{context_id}-{i}", {**meta, "query": q}) for i, q in enumerate(queries)]


def test_questions_sharing_a_context_compute_its_notes_once_and_answer_from_them():
    scripted = backend(latency=0.01)
    results = rz.solve_many(questions(), SleepTime(), scripted, concurrency=4)
    thinking = [r for r in scripted.requests if is_thinking(r)]
    answering = [r for r in scripted.requests if not is_thinking(r)]
    assert len(thinking) == 1 and len(answering) == 4  # four questions in flight, one offline computation
    assert CONTEXT in thinking[0].messages[-1].content and not any(q in thinking[0].messages[-1].content
                                                                   for q in QUERIES)
    asked = set()
    for request in answering:  # in whatever order the lock let them through
        text = request.messages[-1].content
        assert CONTEXT in text and "1. Eggs left: 16 - 3 = 13" in text
        asked.add(text.rsplit("QUESTION:\n", 1)[1])
        assert request.messages[0].role == "system"  # the run's system prompt kept
    assert asked == set(QUERIES)
    assert sum(r.info["notes_computed_here"] for r in results) == 1
    assert all(r.answer == "13" and r.info["notes"] == "1. Eggs left: 16 - 3 = 13" for r in results)


def test_offline_compute_is_accounted_apart_and_amortised_over_the_context():
    scripted = backend()
    results = rz.solve_many(questions(), SleepTime(max_tokens=64), scripted, concurrency=1,
                            budget=rz.Budget(tokens=60))  # enough to answer, not to think
    first, rest = results[0], results[1:]
    think = scripted.count_prompt_tokens(scripted.requests[0])
    sleep = {"prompt_tokens": think, "completion_tokens": 8, "calls": 1}
    assert {k: first.info["sleep_usage"][k] for k in sleep} == sleep
    assert all(r.info["sleep_usage"] == first.info["sleep_usage"] for r in rest)
    assert all(r.info["context_questions"] == 4 for r in results)
    assert all(r.info["sleep_usage_amortised"]["tokens"] == r.info["sleep_tokens_amortised"] == (think + 8) / 4
               for r in results)
    # The question's usage (and budget) is the answer alone; the sleep role holds the rest.
    for result, request in zip(results, scripted.requests[1:]):
        assert result.usage.calls == 1 and result.usage.prompt_tokens == scripted.count_prompt_tokens(request)
        assert result.usage.tokens <= 60 and result.stopped_by is None
    assert first.usage_by_role["sleep"].tokens == think + 8 and first.info["notes_computed_here"]
    assert all("sleep" not in r.usage_by_role and not r.info["notes_computed_here"] for r in rest)


def test_the_run_budget_and_sleep_tokens_bound_the_offline_compute():
    scripted = backend()
    # The run budget counts the offline call: with one call in all, the answer is refused.
    results = rz.solve_many(questions(queries=QUERIES[:1]), SleepTime(), scripted, concurrency=1,
                            run_budget=rz.Budget(calls=1))
    assert results[0].answer is None and results[0].stopped_by == "run:calls"
    assert [is_thinking(r) for r in scripted.requests] == [True] and results[0].info["sleep_usage"]["calls"] == 1
    # An offline budget smaller than the offline prompt: refused, nothing stored, the question answered anyway.
    scripted = backend()
    results = rz.solve_many(questions(queries=QUERIES[:2]), SleepTime(sleep_tokens=20), scripted, concurrency=1)
    assert [r.answer for r in results] == ["13", "13"] and [is_thinking(r) for r in scripted.requests] == [False] * 2
    assert all(r.info["notes"] == "" and r.info["sleep_usage"]["calls"] == 0 for r in results)
    assert all("NOTES" in r.messages[-1].content and "(none)" in r.messages[-1].content for r in scripted.requests)
    # sleep_tokens shrinks the offline generation to what fits (prompt + completion).
    scripted = backend(notes="word " * 500)
    capped = SleepTime(sleep_tokens=120, sleep_max_tokens=1000)
    result = rz.solve(questions(queries=QUERIES[:1])[0], capped, scripted)
    assert result.info["sleep_usage"]["tokens"] <= 120 and result.info["sleep_usage"]["completion_tokens"] > 0
    assert scripted.requests[0].max_tokens == 120 - scripted.count_prompt_tokens(scripted.requests[0])


def test_notes_are_reused_from_the_memory_file_across_runs(tmp_path):
    memory = str(tmp_path / "notes.sqlite")
    rz.solve_many(questions(queries=QUERIES[:2]), SleepTime(memory=memory), backend(), concurrency=1)
    again = backend(notes="different notes")
    results = rz.solve_many(questions(queries=QUERIES[2:]), SleepTime(memory=memory), again, concurrency=2)
    assert not any(is_thinking(r) for r in again.requests)  # a resumed run pays nothing offline again
    assert all(not r.info["notes_computed_here"] and r.info["notes"].startswith("1. Eggs left") for r in results)
    stored = MemoryStore(memory).notes("c1")
    assert stored.uses == 4 and results[0].info["sleep_usage"] == stored.usage
    # Without a dataset count the notes are amortised over the questions that read them so far.
    counted = rz.solve_many(questions(context="Tom has 2 cats. He buys 3 more.", context_id="c2", shared=False),
                            SleepTime(memory=memory), backend(), concurrency=1)
    assert [r.info["context_questions"] for r in counted] == [1, 2, 3, 4]


def test_contexts_split_as_the_paper_does_when_the_data_does_not_say():
    assert split_context("A has 3. B has 4.  How many in all?") == ("A has 3. B has 4.", "How many in all?")
    assert split_context("It costs $1.50 each. What do 2 cost?") == ("It costs $1.50 each.", "What do 2 cost?")
    with pytest.raises(rz.ConfigError, match="context"):
        split_context("What is 2 + 2?")
    scripted = backend()
    plain = [rz.Problem("Janet has 16 eggs. She eats 3. How many are left?"),
             rz.Problem("Janet has 16 eggs. She eats 3. How many did she eat?")]
    results = rz.solve_many(plain, SleepTime(), scripted, concurrency=1)
    assert sum(is_thinking(r) for r in scripted.requests) == 1
    assert results[0].info["context_id"] == results[1].info["context_id"]


def test_sleep_false_is_the_test_time_only_baseline():
    scripted = backend()
    results = rz.solve_many(questions(), SleepTime(sleep=False), scripted, concurrency=2)
    assert not any(is_thinking(r) for r in scripted.requests) and len(scripted.requests) == 4
    assert all("NOTES" in r.messages[-1].content and "(none)" in r.messages[-1].content for r in scripted.requests)
    assert all("sleep_usage" not in r.info for r in results)
    assert create("sleep-time", n=4).n == 4
    with pytest.raises(ValueError):
        SleepTime(sleep_samples=0)


def test_the_data_set_is_rebuilt_byte_for_byte_and_shares_contexts():
    rows = [json.loads(line) for line in make.SOURCE.read_text(encoding="utf-8").splitlines()]
    built = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in make.records(rows))
    shipped = (DATA_DIR / "stateful_gsm8k.jsonl").read_text(encoding="utf-8")
    assert built == shipped
    assert hashlib.sha256(shipped.encode()).hexdigest() in (DATA_DIR / "README.md").read_text()
    records = [json.loads(line) for line in shipped.splitlines()]
    by_context: dict[str, list] = {}
    for record in records:
        by_context.setdefault(record["context_id"], []).append(record)
    assert len(by_context) == make.CONTEXTS and [r["id"] for r in records] == list(range(len(records)))
    source = {r["id"]: r for r in rows}
    for group in by_context.values():
        original = source[group[0]["source_id"]]
        assert {r["context"] for r in group} == {group[0]["context"]} and len(group) == group[0]["context_questions"]
        assert [r["query_kind"] for r in group] == ["original"] + ["intermediate"] * (len(group) - 1)
        assert group[0]["answer"] == original["answer"] and group[0]["problem"] == f"{group[0]['context']} " \
            f"{group[0]['query']}"
        values = {make.number(value) for _, value in make._ANNOTATION.findall(original["solution"])}
        for record in group[1:]:
            assert record["answer"] in values  # a calculator value of the reference solution
            assert "___" in record["query"] and not re.search(rf"(?<![\d.]){re.escape(record['answer'])}(?!\d)",
                                                               record["query"].replace(",", ""))
    assert make.blank_question("So he runs 9*60=<<9*60=540>>540 meters") == \
        ("Fill in the blank with a number: So he runs ___ meters.", "540")
    assert make.blank_question("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.") is None  # 2 words
    assert make.blank_question("First find 200 GB * 40% = <<200*40*.01=80>>80 GB.") is None
    items = load_items("stateful-gsm8k", 4)
    assert items[1].metadata == {k: records[1][k] for k in ("context", "query", "context_id", "context_questions")}


def test_a_run_charges_the_offline_compute_to_the_first_question_of_each_context(tmp_path):
    items = load_items("stateful-gsm8k", 8)  # two contexts of four questions
    memory = tmp_path / "notes.sqlite"
    config = RunConfig(dataset="stateful-gsm8k", limit=8, strategy="sleep-time",
                       strategy_options={"memory": str(memory)}, backend="scripted", concurrency=4,
                       budget="tokens=400", out=str(tmp_path / "run"))
    scripted = backend()
    asyncio.run(run_benchmark(config, SleepTime(memory=str(memory)), scripted, items=items))
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    traces = {t["id"]: t["info"] for t in map(json.loads, (tmp_path / "run" / "traces.jsonl").read_text().splitlines())}
    assert sum(is_thinking(r) for r in scripted.requests) == 2
    assert sum("sleep" in r["usage_by_role"] for r in rows) == 2
    for row in rows:
        info = traces[row["id"]]
        assert info["context_questions"] == 4 and row["usage"]["calls"] == 1
        assert ("sleep" in row["usage_by_role"]) == info["notes_computed_here"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    sleep_calls = sum(r["usage_by_role"].get("sleep", {}).get("calls", 0) for r in rows)
    assert sleep_calls == 2 and summary["usage"]["calls"] == 8  # test-time calls; the offline ones apart
    assert summary["run_charged"]["calls"] == 10  # the run budget saw both


@pytest.mark.slow
def test_sleep_time_on_the_embedded_model(local_backend):
    """Two questions about one GSM8K context on the embedded model: one offline generation, its
    notes in both answer prompts, its cost apart from the questions' and split between them."""
    seen = []
    generate = local_backend.generate

    async def recording(request):
        seen.append(request)
        return await generate(request)

    local_backend.generate = recording
    try:
        items = load_items("stateful-gsm8k", 2)
        problems = [rz.Problem(i.problem, i.id, i.metadata) for i in items]
        strategy = SleepTime(sleep_max_tokens=160, max_tokens=128, temperature=0.0)
        results = rz.solve_many(problems, strategy, local_backend, rz.Budget(tokens=1200), concurrency=2)
    finally:
        del local_backend.generate
    thinking = [r for r in seen if is_thinking(r)]
    assert len(thinking) == 1 and len(seen) == 3
    notes = results[0].info["notes"]
    assert notes and all(notes in r.messages[-1].content for r in seen if not is_thinking(r))
    sleep = results[0].info["sleep_usage"]
    assert 0 < sleep["completion_tokens"] <= 160 and sleep["calls"] == 1
    assert results[0].info["sleep_usage_amortised"]["tokens"] == sleep["tokens"] / 4
    assert all(r.usage.calls == 1 and r.usage.tokens <= 1200 for r in results)
    payer = [r for r in results if r.info["notes_computed_here"]]
    assert len(payer) == 1 and payer[0].usage_by_role["sleep"].tokens == sleep["tokens"]


def test_the_sweep_config_runs_sleep_time_against_self_consistency(tmp_path, monkeypatch):
    from pathlib import Path

    from reasoning.benchmarks.cli import main
    from reasoning.benchmarks.sweep import SweepConfig

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "sweeps" / "sleep_time_gsm8k.yaml"
    assert "resumed to completion" in path.read_text()  # the header says what was published
    config = SweepConfig.from_file(path, out="unused")
    assert config.datasets == ["stateful-gsm8k"] and config.budget_grid == {"tokens": [384, 768, 1536, 3072]}
    monkeypatch.chdir(tmp_path)  # the notes file is relative to the working directory
    assert main(["sweep", "--config", str(path), "--backend", "scripted:13", "--limit", "4", "--out", "st"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "st" / "problems.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"self-consistency", "sleep-time", "sleep-time-off"}
    sleepy = [r for r in rows if r["strategy"] == "sleep-time"]
    assert len(sleepy) == 16 and all(r["info"]["sleep_tokens_amortised"] > 0 for r in sleepy)
    assert sum(r["info"]["notes_computed_here"] for r in sleepy) == 1  # one context, one computation, four points
    assert all("sleep_tokens_amortised" not in r["info"] for r in rows if r["strategy"] == "sleep-time-off")


def test_the_generated_tokens_sweep_budgets_only_what_is_generated(tmp_path, monkeypatch):
    """sleep_time_gsm8k_generated.yaml: budgets of generated tokens (the prompt, context and
    notes, is not counted): every point's generated tokens stay within its budget."""
    from pathlib import Path

    from reasoning.benchmarks.cli import main
    from reasoning.benchmarks.sweep import SweepConfig

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "sweeps" / "sleep_time_gsm8k_generated.yaml"
    config = SweepConfig.from_file(path, out="unused")
    assert config.budget_grid == {"completion_tokens": [128, 256, 512, 1024, 2048]}
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--config", str(path), "--backend", "scripted:13", "--limit", "4", "--out", "st"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "st" / "problems.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"self-consistency", "sleep-time", "sleep-time-off"}
    for row in rows:
        budget = float(row["point"].split("=")[1])
        assert row["cost"]["completion_tokens"] <= budget
    sc = {r["point"]: r for r in rows if r["strategy"] == "self-consistency" and r["id"] == rows[0]["id"]}
    assert sc["completion_tokens=128"]["n"] < sc["completion_tokens=2048"]["n"]  # more budget, more samples
