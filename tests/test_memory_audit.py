"""memory_audit: what a stored cheatsheet memory holds, read without touching the file."""

import hashlib

import numpy as np
import pytest
from reasoning.benchmarks import memory_audit
from reasoning.strategies.memory_store import MemoryStore, read_entries

from reasoning.errors import ConfigError

ITEM = "<memory_item>\n<description>{}</description>\n<example>{}</example>\n</memory_item>"


def memory(path, entries):
    """A memory file with ``entries`` ({problem id: entry text}) committed in that order."""
    store = MemoryStore(path)
    for problem_id, entry in entries.items():
        store.put_entry(problem_id, f"problem {problem_id}", entry, "ngrams", np.ones(4, dtype=np.float32))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # the last close folded the WAL in
    return path


def test_game24_entries_are_sorted_into_placeholder_code_wrong_and_right(tmp_path):
    # Problem 900 of the Game-of-24 test set is 4 5 6 10; 901 is 1 2 4 7.
    path = memory(tmp_path / "m.sqlite", {
        "900": ITEM.format("numbers 4 5 6 10", "(5 * 6) - (10 - 4)"),            # solves it
        "901": ITEM.format("numbers 1 2 4 7", "((1 + 2) * 4) + 7"),             # 19, not 24
        "902": ITEM.format("[when this applies]", "[the method, formula or code snippet]"),
        "903": ITEM.format("search all orders", "```python\nfrom itertools import permutations\n```"),
    })
    found = memory_audit.audit(path, "game24")
    assert {k: found[k] for k in ("entries", "placeholder", "code", "checked", "expression",
                                  "solves_its_problem")} == {
        "entries": 4, "placeholder": 1, "code": 1, "checked": 4, "expression": 2, "solves_its_problem": 1}
    by_id = {row["problem_id"]: row for row in found["rows"]}
    assert by_id["900"]["solves_its_problem"] and not by_id["901"]["solves_its_problem"]
    assert by_id["901"]["expression"] and not by_id["902"]["expression"]


def test_an_example_that_solves_another_problem_does_not_count_for_this_one(tmp_path):
    # (5 * 6) - (10 - 4) solves 900 (4 5 6 10), but problem 901 gives 1 2 4 7.
    path = memory(tmp_path / "m.sqlite", {"901": ITEM.format("x", "(5 * 6) - (10 - 4)")})
    assert memory_audit.audit(path, "game24")["solves_its_problem"] == 0


def test_a_dataset_not_graded_as_an_expression_checks_no_examples(tmp_path):
    path = memory(tmp_path / "m.sqlite", {"0": ITEM.format("rates", "distance = speed * time")})
    found = memory_audit.audit(path, "gsm8k")
    assert found["entries"] == 1 and "checked" not in found


def test_the_audit_leaves_the_stored_file_as_it_was(tmp_path):
    path = memory(tmp_path / "m.sqlite", {"900": ITEM.format("a", "b")})
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert [e.problem_id for e in read_entries(path)] == ["900"]
    memory_audit.main([str(path), "--dataset", "game24"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.sqlite"]  # no -wal / -shm beside it


def test_a_missing_or_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no memory file"):
        read_entries(tmp_path / "absent.sqlite")
    (tmp_path / "notes.txt").write_text("not a database")
    with pytest.raises(ConfigError, match="not a cheatsheet memory file"):
        read_entries(tmp_path / "notes.txt")


def test_the_printout_counts_what_the_json_lists(tmp_path, capsys):
    path = memory(tmp_path / "m.sqlite", {"900": ITEM.format("numbers", "(5 * 6) - (10 - 4)")})
    memory_audit.main([str(path), "--dataset", "game24"])
    assert "1 entries, 0 with the template's placeholder, 0 with code; of 1 checked, 1 show an expression, " \
           "1 solving their own problem" in capsys.readouterr().out
