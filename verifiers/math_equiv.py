"""Is a predicted answer mathematically equal to the gold answer?

Two stages:
1. In-process fast path, pure python: equal voting keys (`normalize_answer`), or
   both answers plain numbers compared by value (percent-aware, see
   `_numbers_match`). Most comparisons end here.
2. Otherwise math_verify + sympy in a worker process under a hard time limit,
   because sympy can run for ever and math_verify's own timeout uses signals,
   which only work in the main thread.

Results: True / False, or None when undecidable (an answer does not parse, the
worker overran ``timeout``, or the gold answer is empty). Never raises for bad input.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

from reasoning.verifiers.worker_pool import WorkerFailed, WorkerPool

from reasoning.answers.normalize import (
    PlainNumber,
    normalize_answer,
    parse_decimal_comma,
    parse_plain_number,
    prepare_for_parsing,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
WORKER_COUNT = int(os.environ.get("VERIFIERS_MATH_WORKERS", "2"))
# Digits kept when either number was written as a decimal (math_verify's float_rounding).
DECIMAL_PLACES = 6
# A rounded decimal must show this many significant digits to equal an exact value.
MIN_SIGNIFICANT_DIGITS = 2
_CACHE_SIZE = 8192

_UNDECIDED = object()
_EQUATION = re.compile(r"(?<![<>!=:\\])=(?!=)")
_pool: WorkerPool | None = None
_pool_lock = threading.Lock()
_verdict_cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
_cache_lock = threading.Lock()


def is_equivalent(
    gold: str, pred: str | None, timeout: float = DEFAULT_TIMEOUT, *, unordered: bool = False
) -> bool | None:
    """Whether ``pred`` is the same answer as ``gold``; None if that cannot be decided.

    Both may carry `$...$` / `\\boxed{}` wrappers. A missing or empty ``pred`` is
    False (no answer is a wrong answer). ``timeout`` bounds the sympy stage, in
    seconds, excluding time spent waiting for a free worker.

    Rules beyond math_verify's own (each documented where it is applied):

    - Numbers (`_quick_verdict`, `_numbers_match`): a decimal comma is read as a decimal
      point when the comma cannot be a thousands separator and the other answer is a
      single number (`1,22` = `1.22`, `1000,99` = `1000.99`, but `1,000` = `1000`,
      see `parse_decimal_comma`); a decimal with at least 2 significant digits equals
      an exact value it rounds to the places it shows (`\\frac{1}{3}` = `0.33` = `0.3333`,
      not `0.3`), also inside intervals, tuples and matrices (in the worker).
    - Bases: two numbers with a stated base (`204_6`, `A2_{16}`) are equal when their digits
      and bases are (`_quick_verdict`).
    - Relations, equations, matrices and order: see `_worker_main.compare`. In short,
      `\\geq`/`>=`, `\\neq`/`!=`, `\\lt`/`<`, `\\le`/`≤` are the same relation; a chain
      `-2 \\le x \\le 7` equals `x \\in [-2, 7]`; an equation equals its rearrangements
      (`2x+4y-3=0` = `y=-x/2+3/4`); `pmatrix`/`bmatrix`/`array` are alike; a gold written as a
      bare list (`10, 4, -2`) is a sequence, order matters, while a gold in braces
      (`\\{10, 4, -2\\}`) or a list of solutions `x=1, x=2` is a set.
      ``unordered=True`` says the caller knows the answer is a set (the problem asks for
      "all solutions", "the roots", "separated by commas"): a bare-list gold then
      compares as a set too; `answer_is_set(problem)` reads that from a problem's wording.
    """
    verdict = _quick_verdict(gold, pred)
    if verdict is _UNDECIDED:
        verdict = _worker_verdict(gold, pred, timeout, unordered)
    return verdict


async def ais_equivalent(
    gold: str, pred: str | None, timeout: float = DEFAULT_TIMEOUT, *, unordered: bool = False
) -> bool | None:
    """`is_equivalent` for asyncio code: the sympy stage runs off the event loop."""
    verdict = _quick_verdict(gold, pred)
    if verdict is _UNDECIDED:
        loop = asyncio.get_running_loop()
        verdict = await loop.run_in_executor(None, _worker_verdict, gold, pred, timeout, unordered)
    return verdict


def is_equivalent_many(
    pairs: Iterable[tuple[str, str | None]], timeout: float = DEFAULT_TIMEOUT, *, unordered: bool = False
) -> list[bool | None]:
    """`is_equivalent` over (gold, pred) pairs, keeping every worker busy; same order as given."""
    pairs = list(pairs)
    verdicts = [_quick_verdict(gold, pred) for gold, pred in pairs]
    pending = [index for index, verdict in enumerate(verdicts) if verdict is _UNDECIDED]
    if pending:
        with ThreadPoolExecutor(max_workers=min(len(pending), WORKER_COUNT)) as threads:
            slow = threads.map(lambda index: _worker_verdict(*pairs[index], timeout, unordered), pending)
            for index, verdict in zip(pending, slow, strict=True):
                verdicts[index] = verdict
    return verdicts


_SET_WORDING = re.compile(
    r"\ball\b[^.?!]{0,40}?\b(?:solutions?|roots?|zeros?|values?|integers?|numbers?|possibilities)\b"
    r"|\bseparated by commas\b|\bin any order\b|\bthe (?:real |complex |integer )?(?:roots|solutions|zeros)\b",
    re.IGNORECASE,
)
_ORDER_WORDING = re.compile(r"\bordered\b|\bin (?:increasing|decreasing|ascending|descending) order\b", re.IGNORECASE)


def answer_is_set(problem: str) -> bool:
    """Whether a problem's wording asks for a set of answers, for ``is_equivalent(..., unordered=...)``.

    True when it asks for "all" solutions / roots / values / integers / numbers, "the roots",
    "the real solutions", an answer "separated by commas" or "in any order"; False whenever
    it mentions an "ordered" pair/triple or an "increasing"/"decreasing" order.
    """
    return bool(_SET_WORDING.search(problem)) and not _ORDER_WORDING.search(problem)


_BASE_NUMBER = re.compile(r"^([0-9A-Za-z]+)_(?:(\d+)|\{(\d+)\})$")


def _quick_verdict(gold: object, pred: object) -> object:
    """True/False/None when decidable without sympy, else _UNDECIDED."""
    try:
        gold_key = normalize_answer("" if gold is None else str(gold))
        pred_key = normalize_answer("" if pred is None else str(pred))
        if not gold_key:
            return None
        if not pred_key:
            return False
        if gold_key == pred_key:
            return True
        if _is_choice_letter(gold_key) and _is_choice_letter(pred_key):
            return False
        # A number in a stated base (`204_6`, `A2_{16}`) against another: same digits, same
        # base (math_verify reads the subscript as a symbol's and called 204_6 = 204_5).
        gold_base, pred_base = _BASE_NUMBER.match(gold_key), _BASE_NUMBER.match(pred_key)
        if gold_base and pred_base:
            return (gold_base[1].upper() == pred_base[1].upper()
                    and int(gold_base[2] or gold_base[3]) == int(pred_base[2] or pred_base[3]))
        gold_number = parse_plain_number(str(gold))
        pred_number = parse_plain_number(str(pred))
        # A decimal comma (`1,22`) is read only against a single plain number.
        if gold_number is not None and pred_number is None:
            pred_number = parse_decimal_comma(str(pred))
        elif pred_number is not None and gold_number is None:
            gold_number = parse_decimal_comma(str(gold))
        if gold_number is not None and pred_number is not None:
            return _numbers_match(gold_number, pred_number)
    except Exception:  # never raise to callers for odd input; report "undecided"
        logger.debug("fast path failed for %r vs %r", gold, pred, exc_info=True)
        return None
    return _UNDECIDED


def _is_choice_letter(key: str) -> bool:
    return len(key) == 1 and "A" <= key <= "Z"


def _numbers_match(gold: PlainNumber, pred: PlainNumber) -> bool:
    """Equal values; a percent may be read as its value or its value / 100.

    So `10\\%` matches both `0.1` and `10`: datasets mix the two readings and a
    model is not wrong for picking the other one. If either number has a
    decimal point it may be rounded: compare to DECIMAL_PLACES (1/3 = 0.333333).
    Given precision: a decimal against an exact number (integer or fraction) also
    matches when it is that number rounded to the places it shows, see
    `_rounded_to_shown_digits`.
    """
    rounded = gold.is_decimal or pred.is_decimal
    return any(
        _values_match(gold_value, pred_value, rounded) or _rounded_to_shown_digits(gold, gold_value, pred, pred_value)
        for gold_value in _readings(gold)
        for pred_value in _readings(pred)
    )


def _rounded_to_shown_digits(gold: PlainNumber, gold_value: Fraction, pred: PlainNumber, pred_value: Fraction) -> bool:
    """One side exact, the other a decimal showing k places and at least 2 significant digits,
    within half a unit of its last place of the exact value (`\\frac{1}{3}` = `0.33` = `0.3333`,
    `\\frac{2}{3}` = `0.67`, `\\frac{1}{8}` = `0.12` or `0.13`; but `\\frac{1}{3}` != `0.3`, one
    digit says too little, and `\\frac{2}{3}` != `0.66`, truncation is not rounding).
    Two decimals are not rounded against each other (`1.22` != `1.2`): either may be exact.
    """
    if gold.is_decimal == pred.is_decimal:
        return False
    decimal, decimal_value, exact_value = (
        (gold, gold_value, pred_value) if gold.is_decimal else (pred, pred_value, gold_value)
    )
    if decimal.significant < MIN_SIGNIFICANT_DIGITS:
        return False
    return abs(decimal_value - exact_value) <= Fraction(1, 2 * 10**decimal.places)


def _readings(number: PlainNumber) -> tuple[Fraction, ...]:
    return (number.value, number.value / 100) if number.is_percent else (number.value,)


def _values_match(a: Fraction, b: Fraction, rounded: bool) -> bool:
    if rounded:
        return round(a, DECIMAL_PLACES) == round(b, DECIMAL_PLACES)
    return a == b


def _worker_verdict(gold: object, pred: object, timeout: float, unordered: bool = False) -> bool | None:
    try:
        job = (prepare_for_parsing(str(gold)), prepare_for_parsing(str(pred)))
        if _EQUATION.search(job[0]) or _EQUATION.search(job[1]):
            # One side is still an equation (`2x+4y-3=0`): keep `y =` on the other (`y=-x/2+3/4`).
            job = (
                prepare_for_parsing(str(gold), keep_variable=True),
                prepare_for_parsing(str(pred), keep_variable=True),
            )
        if unordered:
            job = (*job, True)
    except Exception:  # same contract as the fast path
        logger.debug("cannot prepare %r vs %r", gold, pred, exc_info=True)
        return None
    with _cache_lock:
        if job in _verdict_cache:
            _verdict_cache.move_to_end(job)
            return _verdict_cache[job]
    try:
        verdict = _get_pool().run("compare", job, timeout)
    except WorkerFailed as failure:
        logger.info("math_verify gave no verdict for %.200r vs %.200r: %s", job[0], job[1], failure)
        return None
    if verdict is not None:  # None may be a timeout under load: do not remember it
        with _cache_lock:
            _verdict_cache[job] = verdict
            if len(_verdict_cache) > _CACHE_SIZE:
                _verdict_cache.popitem(last=False)
    return verdict


def _get_pool() -> WorkerPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool(size=WORKER_COUNT)
        return _pool


def _run_in_worker(job_name: str, args: tuple, timeout: float) -> object:
    """Test hook: run any job of `verifiers._worker_main.JOBS`; None if it fails or overruns."""
    try:
        return _get_pool().run(job_name, args, timeout)
    except WorkerFailed:
        return None
