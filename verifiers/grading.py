"""Grade a whole response against a gold answer in one call: extract, then compare.

``grade(gold, response_text)`` is ``extract_answer`` (reasoning/answers/extract.py, whose
docstring lists the extraction rules: last box, answer markers in several languages, a trailing
matrix, ``#### N``, last number) followed by ``is_equivalent`` (verifiers/math_equiv.py: fast
path for plain numbers and equal voting keys, then math_verify + sympy in a worker process
under a time limit). Verdicts:

- True / False: the extracted answer is / is not the gold answer.
- False when the response states no answer at all (no answer is a wrong answer).
- None when undecidable: the gold answer is empty, an answer does not parse, or the
  comparison overran ``timeout``.

``agrade`` is the asyncio twin; ``grade_many`` grades many pairs keeping every comparison
worker busy (``is_equivalent_many``). None of them raises for odd input.
"""

from __future__ import annotations

from collections.abc import Iterable

from reasoning.answers.extract import extract_answer
from reasoning.verifiers.math_equiv import (
    DEFAULT_TIMEOUT,
    ais_equivalent,
    answer_is_set,
    is_equivalent,
    is_equivalent_many,
)

__all__ = ["agrade", "grade", "grade_many"]


def _extract(response_text: str | None) -> str | None:
    try:
        return extract_answer(response_text or "")
    except Exception:  # an extractor bug must not crash a whole grading run
        return None


def _unordered(problem: str | None) -> bool:
    return bool(problem) and answer_is_set(problem)


def grade(gold: str, response_text: str | None, timeout: float = DEFAULT_TIMEOUT, *,
          problem: str | None = None) -> bool | None:
    """Whether ``response_text`` ends with the gold answer; None when that cannot be decided.
    With the ``problem`` text, a list answer to a problem asking for a set ("all solutions",
    "separated by commas": ``answer_is_set``) compares in any order; without it, in order."""
    return is_equivalent(gold, _extract(response_text), timeout=timeout, unordered=_unordered(problem))


async def agrade(gold: str, response_text: str | None, timeout: float = DEFAULT_TIMEOUT, *,
                 problem: str | None = None) -> bool | None:
    """`grade` for asyncio code: the sympy stage runs off the event loop."""
    return await ais_equivalent(gold, _extract(response_text), timeout=timeout, unordered=_unordered(problem))


def grade_many(pairs: Iterable[tuple[str, str | None]], timeout: float = DEFAULT_TIMEOUT) -> list[bool | None]:
    """`grade` over (gold, response_text) pairs, same order; the slow comparisons run in parallel."""
    return is_equivalent_many(((gold, _extract(text)) for gold, text in pairs), timeout=timeout)
