"""Grading speed: 10,000 (gold, response) pairs from a MATH-500-style distribution.

Not a timed test: a benchmark whose figure goes to RESULTS.md (issue 14's target: under a
minute for 10,000 pairs on the project's 2-core machine). The golds are MATH-500's answers
(``benchmarks/data/math500.jsonl`` via ``load_items``); the responses are synthesised, with a
fixed seed, in these shares:

- 30 % correct, boxed at the end of a few sentences of working;
- 15 % equivalent rewrites of the gold: fraction <-> decimal, ``\\dfrac``, ``x = ...``, an
  integer as ``12.0``, a unit in ``\\text{}``, spacing and ``\\left( \\right)`` changes;
- 25 % wrong: a number off by one, a sign flipped, a term added;
- 10 % answers stated in prose ("so the final answer is $...$.") with no box;
- 5 % non-English markers ("Réponse :", "答案是", "Antwort:", "Respuesta:");
- 10 % long responses (~6 KB of working with intermediate boxes, then the final box);
- 5 % no answer at all.

All of them go through ``verifiers.grade_many`` (extract, then ``is_equivalent_many``: the
fast path, then the sympy worker processes for what it cannot decide), from a cold start:
the worker processes' start-up is inside the time.

    python -m reasoning.benchmarks.grading_speed --out benchmarks/results/grading_speed_cpu_2026-11-29.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import time
from collections import Counter
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

from .datasets import load_items
from .provenance import command

KINDS = {  # kind -> share of the pairs
    "correct_boxed": 0.30,
    "equivalent_rewrite": 0.15,
    "wrong": 0.25,
    "prose": 0.10,
    "non_english": 0.05,
    "long": 0.10,
    "no_answer": 0.05,
}
FILLER = [
    "We first rewrite the condition in a more convenient form.",
    "Substituting $x = 3$ into the second equation gives $2x + 1 = 7$.",
    "By symmetry, it suffices to consider the case $a \\le b$.",
    "Multiplying both sides by $4$ we get $4y = 12$, so $y = 3$.",
    "The discriminant is $b^2 - 4ac = 25 - 24 = 1 > 0$, so there are two real roots.",
    "Now we count the arrangements: there are $\\binom{5}{2} = 10$ of them.",
    "Note that $\\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}$.",
    "Checking the boundary cases, none of them works.",
]
MARKERS = ["Réponse : {}", "所以答案是 ${}$。", "Antwort: ${}$", "Respuesta: ${}$", "最终答案：${}$"]
_INTEGER = re.compile(r"-?\d+")
_FRACTION = re.compile(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")


def working(rng: random.Random, sentences: int) -> str:
    return " ".join(rng.choice(FILLER) for _ in range(sentences))


def rewrite(gold: str, rng: random.Random) -> str:
    """An answer equal to ``gold`` written differently."""
    if _INTEGER.fullmatch(gold):
        return rng.choice([f"{gold}.0", f"x = {gold}", f"{gold}\\text{{ units}}", f"{int(gold):,}"])
    fraction = _FRACTION.fullmatch(gold)
    if fraction:
        sign, num, den = fraction.groups()
        value = Fraction(int(num), int(den)) * (-1 if sign else 1)
        return rng.choice([f"{float(value):.6f}".rstrip("0"), f"{sign}\\dfrac{{{num}}}{{{den}}}", f"{sign}{num}/{den}"])
    variants = [gold.replace("\\left", "").replace("\\right", ""), gold.replace(" ", ""), gold.replace("\\frac", "\\dfrac"),
                gold.replace(",", ", ") if "{,}" not in gold and ",\\!" not in gold else gold]  # not thousands
    return rng.choice([v for v in variants if v != gold] or [f" {gold} "])


def wrong(gold: str, rng: random.Random) -> str:
    """An answer that differs from ``gold``."""
    numbers = list(_INTEGER.finditer(gold))
    if numbers:
        pick = rng.choice(numbers)
        return gold[: pick.start()] + str(int(pick.group()) + rng.choice([1, 2, -1])) + gold[pick.end() :]
    return rng.choice([f"-{gold}", f"{gold} + 1", f"2{gold}"])


def response(kind: str, gold: str, rng: random.Random) -> str:
    if kind == "correct_boxed":
        return f"{working(rng, rng.randint(2, 6))}\nTherefore the answer is $\\boxed{{{gold}}}$."
    if kind == "equivalent_rewrite":
        return f"{working(rng, rng.randint(2, 6))}\nSo we get $\\boxed{{{rewrite(gold, rng)}}}$."
    if kind == "wrong":
        return f"{working(rng, rng.randint(2, 6))}\nHence $\\boxed{{{wrong(gold, rng)}}}$."
    if kind == "prose":
        return f"{working(rng, rng.randint(2, 6))} Putting this together, the final answer is ${gold}$."
    if kind == "non_english":
        return f"{working(rng, 3)}\n{rng.choice(MARKERS).format(gold)}"
    if kind == "long":
        parts = []
        while sum(len(p) for p in parts) < 6000:
            parts.append(working(rng, 5) + f" This step gives $\\boxed{{{rng.randint(1, 99)}}}$.\n")
        return "".join(parts) + f"\nFinally, the answer is $\\boxed{{{gold}}}$."
    return working(rng, rng.randint(2, 6)) + " We could not finish the computation."


def build_pairs(count: int, seed: int) -> list[tuple[str, str, str]]:
    """(kind, gold, response) triples; kinds in KINDS' shares, golds cycling through MATH-500."""
    rng = random.Random(seed)
    golds = [item.answer for item in load_items("math500")]
    kinds = [kind for kind, share in KINDS.items() for _ in range(round(share * count))][:count]
    kinds += ["correct_boxed"] * (count - len(kinds))
    rng.shuffle(kinds)
    return [(kind, golds[i % len(golds)], response(kind, golds[i % len(golds)], rng)) for i, kind in enumerate(kinds)]


def git_version() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--note", default="", help="a remark stored with the figures (e.g. machine load)")
    args = parser.parse_args(argv)

    from reasoning.answers.extract import extract_answer
    from reasoning.verifiers import grade_many

    triples = build_pairs(args.pairs, args.seed)
    pairs = [(gold, text) for _, gold, text in triples]
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    verdicts = grade_many(pairs)
    total = time.perf_counter() - start
    start = time.perf_counter()
    extracted = [extract_answer(text) for _, text in pairs]
    extraction = time.perf_counter() - start

    by_kind: dict[str, Counter] = {}
    for (kind, _, _), verdict in zip(triples, verdicts, strict=True):
        by_kind.setdefault(kind, Counter())[str(verdict)] += 1
    report = {
        "command": command("grading_speed", argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "code_version": git_version(),
        "load_average_1min_before": load_before,
        "note": args.note,
        "pairs": len(pairs),
        "seed": args.seed,
        "total_s": total,
        "items_per_s": len(pairs) / total,
        "extraction_only_s": extraction,
        "distinct_extracted_pairs": len({(gold, answer) for (gold, _), answer in zip(pairs, extracted, strict=True)}),
        "mean_response_chars": sum(len(text) for _, text in pairs) / len(pairs),
        "verdicts_by_kind": {kind: dict(counts) for kind, counts in sorted(by_kind.items())},
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
