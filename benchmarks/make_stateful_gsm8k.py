"""Build ``benchmarks/data/stateful_gsm8k.jsonl``: several questions per shared context, for
``sleep-time`` (Lin et al. 2025), from the GSM8K test set shipped in ``benchmarks/data``.

Run ``python -m reasoning.benchmarks.make_stateful_gsm8k`` ; it rewrites the file and prints its SHA-256. Deterministic: the same
input gives the same bytes.

How (the paper's Stateful GSM-Symbolic split, plus questions about intermediate quantities in
place of its LLM-written Multi-Query questions):

- GSM8K test problems are read in order. The context is the problem without its last sentence,
  the query that last sentence (``strategies.sleep_time.split_context``, the paper's rule). A
  problem is used only when that last sentence is a question (ends with "?") holding no digit
  and no "if": a question that carries its own data (GSM8K id 4: "... if the size of Wendi's
  flock is 20 chickens?") would leave the context short of it.
- Further questions about the same context come from the reference solution's lines with
  exactly one calculator annotation ``<<expr=value>>``: the line with the arithmetic that leads
  to the annotation and the repeated value removed becomes a fill-in-the-blank ("So he runs ___
  meters."; gold 540). Lines whose blank sentence still shows the value or some of
  the arithmetic (an operator, or "200 GB" left of "* 40% ="), has fewer than three words
  before the blank, or whose value is the final answer or repeats an earlier
  question's are skipped.
- A context is kept when it yields at least ``MIN_EXTRA`` such questions; it gets the original
  question first, then up to ``MAX_EXTRA`` intermediate ones in solution order. The first
  ``CONTEXTS`` kept contexts make the file.

Each record: ``id`` (row), ``context_id`` ("gsm8k-<id>"), ``source_id`` (the GSM8K test id),
``context``, ``query``, ``problem`` (context + " " + query: what a strategy without the split
solves), ``answer``, ``query_kind`` ("original" | "intermediate"), ``context_questions``.

Source and license: GSM8K test set, openai/grade-school-math @3101c7d5
``grade_school_math/data/test.jsonl`` (MIT, (c) 2021 OpenAI), via ``benchmarks/data/gsm8k_test.jsonl``.
The intermediate questions are GSM8K's own solution text with numbers removed.
"""

from __future__ import annotations

import hashlib
import json
import re
from fractions import Fraction
from pathlib import Path

from reasoning.strategies.sleep_time import split_context

from reasoning.errors import ConfigError

DATA = Path(__file__).parent / "data"
SOURCE = DATA / "gsm8k_test.jsonl"
TARGET = DATA / "stateful_gsm8k.jsonl"
CONTEXTS = 50
MIN_EXTRA = 2
MAX_EXTRA = 3
_ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
_TRAILING_ARITHMETIC = re.compile(r"[\s\d.,+\-*/()x×=$%]*$")
_LEADING_VALUE = re.compile(r"^[\d.,]+")
_NUMBER_AND_UNIT = re.compile(r"\d[\d.,]*\s*[A-Za-z%]+$")


def number(text: str) -> str | None:
    """A calculator value as a plain number string (integers without '.0'), None if not one."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    decimal = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return decimal if Fraction(decimal) == value else None


def blank_question(line: str) -> tuple[str, str] | None:
    """(fill-in-the-blank sentence, gold) from a solution line with one annotation, or None."""
    found = list(_ANNOTATION.finditer(line))
    if len(found) != 1:
        return None
    match = found[0]
    gold = number(match.group(2))
    if gold is None:
        return None
    before = _TRAILING_ARITHMETIC.sub("", line[:match.start()]).rstrip()
    after = _LEADING_VALUE.sub("", line[match.end():]).rstrip()
    if len(before.split()) < 3 or re.search(r"[=*+×/]", before) or _NUMBER_AND_UNIT.search(before):
        return None  # arithmetic left in the sentence ("200 GB * 40% =" leaves "200 GB")
    sentence = f"{before} ___{after}".strip()
    if not sentence.endswith((".", "!", "?")):
        sentence += "."
    if re.search(rf"(?<![\d.]){re.escape(gold)}(?![\d])", sentence.replace(",", "")):
        return None  # the value is still written in the sentence
    return f"Fill in the blank with a number: {sentence}", gold


def records(rows: list[dict]) -> list[dict]:
    out: list[dict] = []
    kept = 0
    for row in rows:
        if kept == CONTEXTS:
            break
        try:
            context, query = split_context(row["question"])
        except ConfigError:  # a one-sentence problem has no context
            continue
        if not query.endswith("?") or re.search(r"\d", query) or re.search(r"\bif\b", query, re.IGNORECASE):
            continue
        extra, seen = [], {str(row["answer"])}
        for line in row["solution"].split("\n"):
            made = blank_question(line)
            if made is None or made[1] in seen:
                continue
            seen.add(made[1])
            extra.append(made)
        if len(extra) < MIN_EXTRA:
            continue
        kept += 1
        questions = [(query, str(row["answer"]), "original"), *((q, g, "intermediate") for q, g in extra[:MAX_EXTRA])]
        for text, gold, kind in questions:
            out.append({
                "id": len(out), "context_id": f"gsm8k-{row['id']}", "source_id": row["id"], "context": context,
                "query": text, "problem": f"{context} {text}", "answer": gold, "query_kind": kind,
                "context_questions": len(questions),
            })
    return out


def main() -> None:
    rows = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    made = records(rows)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in made)
    TARGET.write_text(text, encoding="utf-8")
    contexts = len({r["context_id"] for r in made})
    print(f"{TARGET}: {len(made)} questions about {contexts} contexts; "
          f"sha256 {hashlib.sha256(text.encode()).hexdigest()}")


if __name__ == "__main__":
    main()
