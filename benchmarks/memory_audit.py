"""What a Dynamic Cheatsheet memory holds: an audit of its curated entries.

The halves of a run (``halves``) say whether a memory helped; this says what was in it. For each
entry of a ``cheatsheet`` memory file (read-only): whether it still carries the curation
template's placeholder text (``[the method, formula or code snippet]``, ``[when this applies...]``:
the curator copied the format instead of filling it in), whether it holds code (a fenced block,
a ``def`` or an ``import``: what the paper's Game-of-24 gain is built from), and, for a dataset
graded as an arithmetic expression (Game of 24, Countdown), whether its ``<example>`` is an
expression and whether it solves the entry's own problem (``verifiers.check_expression`` on that
problem's numbers): an entry that shows a wrong solution as the worked method teaches the error.

    python -m reasoning.benchmarks.memory_audit MEMORY.sqlite [--dataset game24] [--json]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasoning.strategies.memory_store import Entry, read_entries
from reasoning.verifiers.expression import check_expression, normalize_expression

from .datasets import load_items

PLACEHOLDERS = ("[the method, formula or code snippet]", "[when this applies")
_EXAMPLE = re.compile(r"<example>(.*?)(?:</example>|$)", re.DOTALL)
_CODE = re.compile(r"```|^\s*def |^\s*import |^\s*from \S+ import ", re.MULTILINE)


def _parses(expression: str) -> bool:
    """Whether ``expression`` is Python expression syntax (arithmetic or not; nothing is run)."""
    try:
        ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return bool(expression)


def audit_entry(entry: Entry, numbers: Sequence[Any] | None = None, target: Any = None) -> dict[str, Any]:
    """One entry: placeholder, code and (with the problem's numbers) its example's verdict."""
    text = entry.entry
    found = {"problem_id": entry.problem_id,
             "placeholder": any(p in text.lower() for p in PLACEHOLDERS),
             "code": bool(_CODE.search(text))}
    if numbers is not None:
        example = _EXAMPLE.search(text)
        shown = example.group(1).strip() if example else ""
        found["expression"] = _parses(normalize_expression(shown)) if shown else False
        found["solves_its_problem"] = check_expression(shown or None, numbers, target).valid
    return found


def audit(path: Path, dataset: str | None = None) -> dict[str, Any]:
    """Counts over every entry of the memory file at ``path`` (and the entries themselves)."""
    entries = read_entries(path)
    items = {item.id: item for item in load_items(dataset)} if dataset else {}
    rows = []
    for entry in entries:
        item = items.get(entry.problem_id)
        meta = item.metadata if item is not None and item.kind == "expression" else None
        rows.append(audit_entry(entry, meta["numbers"] if meta else None, meta["target"] if meta else None))
    counts = {"entries": len(rows), "placeholder": sum(r["placeholder"] for r in rows),
              "code": sum(r["code"] for r in rows)}
    if any("expression" in r for r in rows):
        counts["checked"] = sum("expression" in r for r in rows)
        counts["expression"] = sum(r.get("expression", False) for r in rows)
        counts["solves_its_problem"] = sum(r.get("solves_its_problem", False) for r in rows)
    return {"memory": str(path), "dataset": dataset, **counts, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("memory", type=Path, help="a cheatsheet memory file (SQLite)")
    parser.add_argument("--dataset", help="the dataset the run solved (checks an expression dataset's examples)")
    parser.add_argument("--json", action="store_true", help="print the audit as JSON, every entry included")
    args = parser.parse_args(argv)
    found = audit(args.memory, args.dataset)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    line = (f"{found['memory']}: {found['entries']} entries, {found['placeholder']} with the template's placeholder, "
            f"{found['code']} with code")
    if "checked" in found:
        line += (f"; of {found['checked']} checked, {found['expression']} show an expression, "
                 f"{found['solves_its_problem']} solving their own problem")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
