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
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

from reasoning.answers.normalize import PlainNumber, normalize_answer, parse_plain_number, prepare_for_parsing
from reasoning.verifiers.worker_pool import WorkerFailed, WorkerPool

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
WORKER_COUNT = int(os.environ.get("VERIFIERS_MATH_WORKERS", "2"))
# Digits kept when either number was written as a decimal (math_verify's float_rounding).
DECIMAL_PLACES = 6
_CACHE_SIZE = 8192

_UNDECIDED = object()
_pool: WorkerPool | None = None
_pool_lock = threading.Lock()
_verdict_cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
_cache_lock = threading.Lock()


def is_equivalent(gold: str, pred: str | None, timeout: float = DEFAULT_TIMEOUT) -> bool | None:
    """Whether ``pred`` is the same answer as ``gold``; None if that cannot be decided.

    Both may carry `$...$` / `\\boxed{}` wrappers. A missing or empty ``pred`` is
    False (no answer is a wrong answer). ``timeout`` bounds the sympy stage, in
    seconds, excluding time spent waiting for a free worker.
    """
    verdict = _quick_verdict(gold, pred)
    if verdict is _UNDECIDED:
        verdict = _worker_verdict(gold, pred, timeout)
    return verdict


async def ais_equivalent(gold: str, pred: str | None, timeout: float = DEFAULT_TIMEOUT) -> bool | None:
    """`is_equivalent` for asyncio code: the sympy stage runs off the event loop."""
    verdict = _quick_verdict(gold, pred)
    if verdict is _UNDECIDED:
        loop = asyncio.get_running_loop()
        verdict = await loop.run_in_executor(None, _worker_verdict, gold, pred, timeout)
    return verdict


def is_equivalent_many(pairs: Iterable[tuple[str, str | None]], timeout: float = DEFAULT_TIMEOUT) -> list[bool | None]:
    """`is_equivalent` over (gold, pred) pairs, keeping every worker busy; same order as given."""
    pairs = list(pairs)
    verdicts = [_quick_verdict(gold, pred) for gold, pred in pairs]
    pending = [index for index, verdict in enumerate(verdicts) if verdict is _UNDECIDED]
    if pending:
        with ThreadPoolExecutor(max_workers=min(len(pending), WORKER_COUNT)) as threads:
            slow = threads.map(lambda index: _worker_verdict(*pairs[index], timeout), pending)
            for index, verdict in zip(pending, slow, strict=True):
                verdicts[index] = verdict
    return verdicts


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
        gold_number = parse_plain_number(str(gold))
        pred_number = parse_plain_number(str(pred))
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
    """
    rounded = gold.is_decimal or pred.is_decimal
    return any(
        _values_match(gold_value, pred_value, rounded)
        for gold_value in _readings(gold)
        for pred_value in _readings(pred)
    )


def _readings(number: PlainNumber) -> tuple[Fraction, ...]:
    return (number.value, number.value / 100) if number.is_percent else (number.value,)


def _values_match(a: Fraction, b: Fraction, rounded: bool) -> bool:
    if rounded:
        return round(a, DECIMAL_PLACES) == round(b, DECIMAL_PLACES)
    return a == b


def _worker_verdict(gold: object, pred: object, timeout: float) -> bool | None:
    try:
        job = (prepare_for_parsing(str(gold)), prepare_for_parsing(str(pred)))
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
