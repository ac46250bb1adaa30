"""Dynamic Cheatsheet (strategies/cheatsheet.py): what is retrieved into which prompt, what the
memory file holds (never a gold answer), resume without duplicates, several writers at once."""

import asyncio
import json
import multiprocessing
import re
import sqlite3

import numpy as np
import pytest
from reasoning.benchmarks.run import RunConfig, run_benchmark
from reasoning.strategies import create
from reasoning.strategies.cheatsheet import EMPTY, Cheatsheet, curated_entry
from reasoning.strategies.embeddings import HashedNgrams
from reasoning.strategies.memory_store import MemoryStore

import reasoning as rz
from reasoning.backends import Scripted

APPLES_A = "Ann buys 3 red apples and 4 green apples. How many apples does Ann have?"
TRAINS = "A train travels at 60 miles per hour for 2 hours. How far does the train go?"
APPLES_B = "Bob buys 5 red apples and 2 green apples. How many apples does Bob have?"


def is_curation(request):
    return "You curate a cheatsheet" in request.messages[-1].content


def cheatsheet_of(request):
    """The cheatsheet block of a solve prompt."""
    return re.search(r"'''\n(.*?)\n'''", request.messages[-1].content, re.DOTALL).group(1)


def backend(answers=None, entry=lambda problem: f"tip for: {problem[:12]}", **kw):
    """Solves with \\boxed{answer} (per problem text, default 7); curates one memory item naming
    the problem it saw."""
    answers = answers or {}

    def respond(request, index):
        text = request.messages[-1].content
        if is_curation(request):
            problem = text.split("PROBLEM\n", 1)[1].split("\n\nMODEL SOLUTION", 1)[0]
            body = entry(problem)
            return body if body.startswith("no item") else \
                f"Judging it.\n<memory_item>\n<description>{body}</description>\n<example>add</example>\n</memory_item>"
        problem = text.split("PROBLEM:\n", 1)[1]
        return f"Work. So \\boxed{{{answers.get(problem, 7)}}}"

    return Scripted(responder=respond, **kw)


def run(problems, strategy, scripted, concurrency=1, **kw):
    return rz.solve_many([rz.Problem(text, pid) for pid, text in problems], strategy, scripted,
                         concurrency=concurrency, **kw)


def test_each_problem_retrieves_the_most_similar_earlier_entries_into_its_prompt(tmp_path):
    scripted = backend()
    strategy = Cheatsheet(memory=str(tmp_path / "m.sqlite"), top_k=2, embedder="ngrams")
    results = run([("a", APPLES_A), ("t", TRAINS), ("b", APPLES_B)], strategy, scripted)
    solves = [r for r in scripted.requests if not is_curation(r)]
    curations = [r for r in scripted.requests if is_curation(r)]
    assert len(solves) == len(curations) == 3  # solve, curate; one problem after the other
    assert [cheatsheet_of(r) for r in solves[:1]] == [EMPTY]
    assert [r.info["visible"] for r in results] == [0, 1, 2]
    assert [r.info["retrieved"] for r in results] == [[], ["a"], ["a", "t"]]  # most similar first
    # The prompt lists them least similar first, the most similar nearest the problem.
    embed = HashedNgrams().embed
    sim = lambda x, y: float(embed([x])[0].astype(np.float32) @ embed([y])[0].astype(np.float32))
    item = lambda text: (f"<memory_item>\n<description>tip for: {text[:12]}</description>\n"
                         "<example>add</example>\n</memory_item>")
    assert cheatsheet_of(solves[2]) == (f"(from problem t, similarity {sim(TRAINS, APPLES_B):.2f})\n{item(TRAINS)}\n\n"
                                        f"(from problem a, similarity {sim(APPLES_A, APPLES_B):.2f})\n{item(APPLES_A)}")
    assert sim(APPLES_A, APPLES_B) > sim(TRAINS, APPLES_B)
    assert results[2].info["similarity"] == [round(sim(APPLES_A, APPLES_B), 4), round(sim(TRAINS, APPLES_B), 4)]
    # The curator saw the problem, the chosen solution and the same retrieved entries.
    assert APPLES_B in curations[2].messages[-1].content and "So \\boxed{7}" in curations[2].messages[-1].content
    assert cheatsheet_of(curations[2]) == cheatsheet_of(solves[2])
    # The run's system prompt stays; the problem is the last thing in the prompt.
    assert solves[0].messages[0].role == "system" and solves[0].messages[-1].content.endswith(APPLES_A)
    assert all(r.answer == "7" for r in results)
    assert results[0].info["entry"] == item(APPLES_A)


def test_top_k_and_the_character_budget_bound_what_a_prompt_holds(tmp_path):
    long_tip = "x" * 300
    scripted = backend(entry=lambda p: long_tip if p.startswith("Ann") else "short")
    strategy = Cheatsheet(memory=str(tmp_path / "m.sqlite"), top_k=2, memory_chars=200, embedder="ngrams")
    results = run([("a", APPLES_A), ("t", TRAINS), ("b", APPLES_B)], strategy, scripted)
    # For Bob, Ann's entry ranks first but does not fit in 200 characters: skipped, the next one kept.
    assert results[2].info["retrieved"] == ["t"]
    solves = [r for r in scripted.requests if not is_curation(r)]
    assert long_tip not in solves[2].messages[-1].content and "short" in solves[2].messages[-1].content
    one = Cheatsheet(memory=str(tmp_path / "m.sqlite"), top_k=1, embedder="ngrams")
    assert run([("c", "Ann buys 3 red apples and 5 green apples. How many apples does Ann have?")], one,
               backend())[0].info["retrieved"] == ["a"]  # top_k=1 and the budget is large enough


def test_entries_are_cut_and_a_reply_without_an_item_adds_nothing(tmp_path):
    assert curated_entry("<memory_item>abcdef</memory_item> <memory_item>2</memory_item>", 10) == "<memory_it"
    assert curated_entry("just prose", 100) is None
    scripted = backend(entry=lambda p: "no item here" if p.startswith("Ann") else "y" * 500)
    strategy = Cheatsheet(memory=str(tmp_path / "m.sqlite"), entry_chars=80, embedder="ngrams")
    results = run([("a", APPLES_A), ("t", TRAINS)], strategy, scripted)
    assert results[0].info["entry"] is None and len(results[1].info["entry"]) == 80
    assert [e.problem_id for e in MemoryStore(tmp_path / "m.sqlite").entries()] == ["t"]


def test_learn_false_is_the_baseline_prompt_with_no_memory(tmp_path):
    scripted = backend()
    strategy = Cheatsheet(memory=str(tmp_path / "m.sqlite"), learn=False)
    results = run([("a", APPLES_A), ("b", APPLES_B)], strategy, scripted)
    assert len(scripted.requests) == 2 and all(cheatsheet_of(r) == EMPTY for r in scripted.requests)
    assert not (tmp_path / "m.sqlite").exists() and results[1].info["visible"] == 0
    assert set(results[0].usage_by_role) == {"generator"}


def test_the_curator_is_its_own_role_and_a_refused_curation_keeps_the_answer(tmp_path):
    strategy = Cheatsheet(memory=str(tmp_path / "m.sqlite"), embedder="ngrams")
    result = run([("a", APPLES_A)], strategy, backend())[0]
    assert set(result.usage_by_role) == {"generator", "curator"} and result.usage.calls == 2
    assert result.usage_by_role["curator"].calls == 1
    # The solve call fits, the curation does not: the answer stands, nothing is committed.
    tight = Cheatsheet(memory=str(tmp_path / "n.sqlite"), embedder="ngrams")
    result = run([("a", APPLES_A)], tight, backend(), budget=rz.Budget(calls=1))[0]
    assert result.answer == "7" and result.info["entry"] is None and result.stopped_by == "calls"
    assert MemoryStore(tmp_path / "n.sqlite").entries() == []
    # Another model for the curator, by role.
    curator = backend(entry=lambda p: "from the curator")
    result = asyncio.run(rz.asolve(rz.Problem(APPLES_B, "b"), Cheatsheet(memory=str(tmp_path / "o.sqlite"),
                                                                           embedder="ngrams"),
                                   backends={"generator": backend(entry=lambda p: "wrong model"), "curator": curator}))
    assert "from the curator" in result.info["entry"] and len(curator.requests) == 1


def _items(n):
    from reasoning.benchmarks.datasets import Item

    return [Item(str(i), f"Problem {i}: add {i} apples to {i + 1} apples. How many apples?", str(900000 + i))
            for i in range(n)]


def test_a_run_never_stores_gold_and_a_resumed_run_does_not_duplicate(tmp_path):
    memory, out = tmp_path / "m.sqlite", tmp_path / "run"
    items = _items(4)
    config = RunConfig(dataset="mine", strategy="cheatsheet", strategy_options={"memory": str(memory)},
                       backend="scripted", concurrency=1, out=str(out))
    scripted = backend()
    strategy = Cheatsheet(memory=str(memory), embedder="ngrams")
    summary = asyncio.run(run_benchmark(config, strategy, scripted, items=items))
    assert summary["n_problems"] == 4 and summary["accuracy"] == 0.0  # the model says 7, gold is 90000x
    raw = b"".join(f.read_bytes() for f in tmp_path.glob("m.sqlite*"))  # the file and its WAL
    assert all(item.answer.encode() not in raw for item in items) and b"tip for: Problem 0" in raw
    stored = MemoryStore(memory).entries()
    assert [e.problem_id for e in stored] == ["0", "1", "2", "3"] and [e.seq for e in stored] == [1, 2, 3, 4]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert [t["info"]["visible"] for t in traces] == [0, 1, 2, 3]
    assert all(set(r["usage_by_role"]) == {"generator", "curator"} for r in rows)

    # Killed after problem 3's entry was committed but before its row was written: rerun.
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    rerun = backend(entry=lambda p: "second thoughts")
    asyncio.run(run_benchmark(config, Cheatsheet(memory=str(memory), embedder="ngrams"), rerun, items=items))
    assert len([r for r in rerun.requests if not is_curation(r)]) == 1  # only problem 3 again
    again = MemoryStore(memory).entries()
    assert [e.problem_id for e in again] == ["0", "1", "2", "3"] and again[3].seq == 4  # replaced, not added
    assert "second thoughts" in again[3].entry
    last = json.loads((out / "traces.jsonl").read_text().splitlines()[-1])
    assert last["info"]["visible"] == 3 and "3" not in last["info"]["retrieved"]  # never its own entry


def test_concurrent_problems_see_only_committed_entries_and_none_is_lost(tmp_path):
    memory = tmp_path / "m.sqlite"
    scripted = backend(latency=0.01)
    strategy = Cheatsheet(memory=str(memory), top_k=16, embedder="ngrams")
    problems = [(str(i), f"Problem {i}: add {i} apples to {i + 1} apples. How many apples?") for i in range(16)]
    results = run(problems, strategy, scripted, concurrency=8)
    stored = {e.problem_id: e for e in MemoryStore(memory).entries()}
    assert sorted(stored, key=int) == [str(i) for i in range(16)]
    for pid, result in zip((p for p, _ in problems), results):
        assert pid not in result.info["retrieved"] and len(result.info["retrieved"]) == result.info["visible"] <= 15
        assert all(other in stored for other in result.info["retrieved"])
    # Sequential order: each problem saw exactly the ones before it.
    ordered = run(problems, Cheatsheet(memory=str(tmp_path / "s.sqlite"), top_k=16, embedder="ngrams"), backend())
    assert [r.info["visible"] for r in ordered] == list(range(16))


def _writer(path: str, worker: int, count: int) -> None:
    store = MemoryStore(path)
    for i in range(count):
        store.put_entry(f"w{worker}-{i}", f"problem {worker} {i}", f"entry {worker} {i} " + "z" * 2000, "ngrams",
                        np.full(8, worker + i, dtype=np.float32))
        store.entries()  # readers interleave with the writers


def test_several_processes_write_one_memory_file_at_once(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    MemoryStore(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w, 25)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    entries = MemoryStore(path).entries()
    assert len(entries) == 100 and len({e.problem_id for e in entries}) == 100
    assert all(e.entry.startswith(f"entry {e.problem_id[1]} ") and len(e.embedding) == 8 for e in entries)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_memory_settings_are_refused_naming_the_option(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(rz.ConfigError, match="memory="):
        run([("a", APPLES_A)], Cheatsheet(memory=str(tmp_path / "folder")), backend())
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("plain text, not a database " * 100)
    with pytest.raises(rz.ConfigError, match="memory="):
        run([("a", APPLES_A)], Cheatsheet(memory=str(not_sqlite)), backend())
    run([("a", APPLES_A)], Cheatsheet(memory=str(tmp_path / "m.sqlite"), embedder="ngrams"), backend())
    with pytest.raises(rz.ConfigError, match="embedded with ngrams"):
        run([("b", APPLES_B)], Cheatsheet(memory=str(tmp_path / "m.sqlite"), embedder="minilm"), backend())
    with pytest.raises(ValueError):
        Cheatsheet(top_k=0)
    assert create("cheatsheet", n=3).n == 3 and Cheatsheet().memory is None


def test_cli_memory_flag_sets_the_option_and_is_refused_elsewhere(tmp_path):
    from reasoning.benchmarks.cli import main

    out, memory = tmp_path / "run", tmp_path / "m.sqlite"
    assert main(["run", "--dataset", "gsm8k", "--limit", "2", "--strategy", "cheatsheet", "--option", "embedder=ngrams",
                 "--backend", "scripted:7", "--concurrency", "1", "--memory", str(memory), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["strategy_options"] == {"memory": str(memory), "embedder": "ngrams"}
    assert memory.exists()  # scripted:7's curator replies hold no memory item: the file exists, no entries
    assert MemoryStore(memory).entries() == []
    assert main(["run", "--dataset", "gsm8k", "--limit", "1", "--strategy", "greedy", "--backend", "scripted",
                 "--memory", str(memory), "--out", str(tmp_path / "bad")]) == 2
    assert main(["run", "--dataset", "gsm8k", "--limit", "1", "--strategy", "cheatsheet", "--backend", "scripted",
                 "--memory", str(memory), "--option", f"memory={memory}", "--out", str(tmp_path / "bad2")]) == 2


@pytest.mark.slow
def test_cheatsheet_on_the_embedded_model(local_backend, tmp_path):
    """Three problems in order on the embedded model: each curated entry is committed under its
    problem and the later problems' prompts hold the earlier entries."""
    memory = tmp_path / "m.sqlite"
    seen = []
    generate = local_backend.generate

    async def recording(request):
        seen.append(request)
        return await generate(request)

    local_backend.generate = recording
    try:
        problems = [("p1", "What is 12 + 30?"), ("p2", "What is 15 + 27?"), ("p3", "What is 21 + 21?")]
        strategy = Cheatsheet(memory=str(memory), max_tokens=96, curate_max_tokens=160, temperature=0.0)
        results = run(problems, strategy, local_backend, budget=rz.Budget(tokens=4000))
    finally:
        del local_backend.generate
    print([(r.answer, r.info["entry"]) for r in results])
    entries = MemoryStore(memory).entries()
    assert entries  # the 0.5B model does write <memory_item>s (all three, greedy, when this was written)
    assert [e.problem_id for e in entries] == [pid for (pid, _), r in zip(problems, results) if r.info["entry"]]
    assert all(e.entry == r.info["entry"] for e, r in zip(entries, (r for r in results if r.info["entry"])))
    solves = [r for r in seen if not is_curation(r)]
    assert len(solves) == 3 and cheatsheet_of(solves[0]) == EMPTY
    for result, request in zip(results, solves):
        committed_before = [e for e in entries if e.problem_id < (result.problem_id or "")]
        assert result.info["visible"] == len(committed_before)
        assert all(e.entry in request.messages[-1].content for e in committed_before)  # top_k=3 >= 2 earlier


def test_halves_compares_the_first_and_second_half_of_the_dataset_order(tmp_path, capsys):
    from reasoning.benchmarks import halves
    from reasoning.benchmarks.cli import main

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    rows = [{"dataset": "game24", "strategy": "cheatsheet", "point": "tokens=4096", "id": str(i), "correct": c}
            for i, c in zip((903, 901, 900, 902), (1.0, 0.0, 0.0, 1.0))]  # written in completion order
    (sweep / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert halves.report(sweep) == [{"dataset": "game24", "strategy": "cheatsheet", "point": "tokens=4096",
                                     "first": {"n": 2, "accuracy": 0.0}, "second": {"n": 2, "accuracy": 1.0},
                                     "gain": 1.0, "left_out": 0}]
    # a sweep cut short: the labels are compared on the problems both ran (900, 901), the first
    # label's 902 and 903 left out (split alone, its halves would be 900-901 against 902-903)
    rows += [{"dataset": "game24", "strategy": "cheatsheet-off", "point": "tokens=4096", "id": str(i), "correct": c}
             for i, c in ((901, 1.0), (900, 0.0))]
    (sweep / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    both = {line["strategy"]: line for line in halves.report(sweep)}
    assert both["cheatsheet"]["first"] == {"n": 1, "accuracy": 0.0} and both["cheatsheet"]["second"] == {
        "n": 1, "accuracy": 0.0} and both["cheatsheet"]["left_out"] == 2
    assert both["cheatsheet-off"]["first"] == {"n": 1, "accuracy": 0.0} and both["cheatsheet-off"]["gain"] == 1.0
    assert both["cheatsheet-off"]["left_out"] == 0
    run = tmp_path / "run"  # scripted:18 answers GSM8K's first problem (gold 18) and no other
    assert main(["run", "--dataset", "gsm8k", "--limit", "4", "--strategy", "cheatsheet", "--option",
                 "embedder=ngrams", "--backend", "scripted:18", "--concurrency", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert halves.main([str(run)]) == 0
    assert capsys.readouterr().out.strip() == ("gsm8k  cheatsheet    first 0.500 (n=2)  second 0.000 (n=2)  "
                                               "gain -0.500")


def test_the_sweep_config_runs_cheatsheet_in_order_against_self_consistency_and_no_memory(tmp_path, monkeypatch):
    from pathlib import Path

    from reasoning.benchmarks.cli import main
    from reasoning.benchmarks.sweep import SweepConfig

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "sweeps" / "cheatsheet_game24.yaml"
    assert "finished on\n# 2026-11-30" in path.read_text()  # the header says what was published
    config = SweepConfig.from_file(path, out="unused")
    assert config.concurrency == 1 and config.datasets == ["game24"] and config.budget_grid == {"tokens": [4096]}
    options = {s.key: s.options for s in config.strategies}
    assert options["cheatsheet-off"]["learn"] is False and options["cheatsheet"]["n"] == 1
    assert len({o.get("memory") for k, o in options.items() if k.startswith("cheatsheet") and k != "cheatsheet-off"}) == 2
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--config", str(path), "--backend", "scripted:13", "--limit", "3", "--out", "cs"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "cs" / "problems.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"self-consistency", "cheatsheet", "cheatsheet-n4", "cheatsheet-off"}
    # each row keeps what its problem retrieved (the memory's provenance), within what it saw
    for row in (r for r in rows if r["strategy"] in ("cheatsheet", "cheatsheet-n4")):
        assert isinstance(row["info"]["retrieved"], list) and len(row["info"]["retrieved"]) <= row["info"]["visible"]
    # a relative memory file lives in the sweep's out folder, with its rows, not in the working directory
    assert sorted(p.name for p in (tmp_path / "cs").glob("cheatsheet_game24_n*.sqlite")) == [
        "cheatsheet_game24_n1.sqlite", "cheatsheet_game24_n4.sqlite"]
    assert not list(tmp_path.glob("cheatsheet_game24_n*.sqlite"))
    # so a resume from another working directory continues that memory instead of starting an empty one
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["sweep", "--config", str(path), "--backend", "scripted:13", "--limit", "4",
                 "--out", str(tmp_path / "cs")]) == 0
    assert not list(elsewhere.glob("cheatsheet_game24_n*.sqlite"))


ASKS_TO_RUN = "Let me compute it.\n```python\nprint(6 * 4, 'from the sandbox')\n```\nEXECUTE CODE!"


def test_code_the_model_asks_to_run_is_run_in_the_sandbox_and_shown_to_it():
    from reasoning.strategies.cheatsheet import code_to_run

    def respond(request, index):
        if is_curation(request):
            return "no item"
        if request.messages[-1].role == "user" and "Proceed with any additional steps" in request.messages[-1].content:
            return "The program printed 24, so \\boxed{24}."
        return ASKS_TO_RUN

    scripted = Scripted(responder=respond)
    result = rz.solve(rz.Problem(APPLES_A, "a"), Cheatsheet(execute_code=True, embedder="ngrams"), scripted)
    first, second = scripted.requests[0], scripted.requests[1]
    assert "EXECUTE CODE!" in first.messages[-1].content  # the protocol is in the prompt
    turn = ASKS_TO_RUN + "\n\n24 from the sandbox"  # what the real sandbox printed, after the flag
    assert [m.role for m in second.messages[-3:]] == ["user", "assistant", "user"]
    assert second.messages[-2].content == turn and "last round" not in second.messages[-1].content
    assert result.text == turn + "\n\nThe program printed 24, so \\boxed{24}." and result.answer == "24"
    assert code_to_run("```python\nx = 1\n```\nsome words\nEXECUTE CODE!") is None  # the flag must follow the block
    assert code_to_run("no code EXECUTE CODE!") is None


def test_code_rounds_bound_the_continuations_and_the_last_one_is_announced():
    scripted = backend(entry=lambda p: "no item")
    scripted.responder = lambda request, index: "no item" if is_curation(request) else ASKS_TO_RUN
    result = rz.solve(rz.Problem(APPLES_A, "a"), Cheatsheet(execute_code=True, code_rounds=2, embedder="ngrams"),
                      scripted)
    solving = [r for r in scripted.requests if not is_curation(r)]
    assert len(solving) == 3  # the first answer and two continuations; the third execution ends it
    assert "last round" not in solving[1].messages[-1].content and "last round" in solving[2].messages[-1].content
    assert result.text.count("24 from the sandbox") == 3 and result.answer == "24"  # the last number printed
    assert result.usage.calls == 4  # three solving calls and the curator's
    plain = backend()
    plain.responder = lambda request, index: "no item" if is_curation(request) else ASKS_TO_RUN
    rz.solve(rz.Problem(APPLES_A, "a"), Cheatsheet(embedder="ngrams"), plain)  # execute_code off: never run
    assert len([r for r in plain.requests if not is_curation(r)]) == 1
    assert "EXECUTE CODE!" not in plain.requests[0].messages[-1].content


def test_run_python_returns_what_a_snippet_printed_or_why_it_did_not_finish():
    from reasoning.verifiers.code_exec import PRINTED_CHARS, arun_python

    assert asyncio.run(arun_python("print(sum(range(10)))")) == ("ok", "45\n")
    status, printed = asyncio.run(arun_python("print('x' * 2000)"))
    assert status == "ok" and printed == ("x" * 2000 + "\n")[-PRINTED_CHARS:]
    status, printed = asyncio.run(arun_python("1 / 0"))
    assert status == "ok" and printed.rstrip().endswith("ZeroDivisionError: division by zero")
    assert asyncio.run(arun_python("while True: pass", timeout=1))[0] == "timeout"
