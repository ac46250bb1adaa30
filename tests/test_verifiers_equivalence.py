"""Table-driven tests of is_equivalent, its async / batch forms and its time limit."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import pytest

from reasoning.verifiers import ais_equivalent, extract_answer, is_equivalent, is_equivalent_many, math_equiv, normalize_answer

MATH500 = Path("/work/shared/data/math500.jsonl")
# Makes sympy compute 9**387420489: far longer than any test timeout.
PATHOLOGICAL = r"9^{9^{9}}"

EQUIVALENT = [
    (r"\frac{1}{2}", "0.5"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\pi/2)"),
    (r"x \in [1, 2)", "[1,2)"),
    (r"10\%", "0.1"),
    (r"10\%", "10"),
    (r"12.5\%", "0.125"),
    (r"\$18", "18"),
    ("18 dollars", "18"),
    (r"18 \text{ dollars}", "18"),
    (r"5\text{ cm}", "5"),
    ("B", "(B)"),
    ("B", r"\text{(B)}"),
    (r"\text{(B)}", "B"),
    (r"\{1,2,3\}", r"\{3,2,1\}"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
    (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}"),
    (r"2\sqrt{3}", r"\sqrt{12}"),
    ("1,234", "1234"),
    ("x=5", "5"),
    (r"\infty", r"\infty"),
    (r"30^\circ", "30"),
    (r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}"),
    ("p - q", "-q + p"),
    ("x^2+2x+1", "(x+1)^2"),
    ("6 - 5i", "-5i+6"),
    ("1/3", "0.333333"),
    (r"-\frac{1}{2}", "-0.5"),
    (r"10,\!080", "10080"),
    (r"\text{Evelyn}", "Evelyn"),
    ("[1,2]", r"1 \le x \le 2"),
    (r"(-\infty, 3)", "x < 3"),
    (r"\{3, 5, 7\}", "7, 5, 3"),  # a bare-list gold is ordered: tests/test_equivalence_categories.py
    (r"\frac{\pi}{2}", "1.570796"),
    (r"$\boxed{\frac{3}{4}}$", "$0.75$"),
    (r"y = 2x + 3", "y=3+2x"),
]

NOT_EQUIVALENT = [
    ("(1,2)", "(2,1)"),
    ("(1,2]", "[1,2]"),
    ("-3", "3"),
    (r"\pi", "3.14158"),  # rounded decimals equal (issue 14), wrongly rounded ones do not
    ("B", "C"),
    (r"\text{(A)}", "(B)"),
    ("1/3", "0.3"),  # one significant digit is too few
    (r"\frac{14}{3}", "4.66"),  # truncated, not rounded
    ("p - q", "q - p"),
    ("10", "10.5"),
    (r"10\%", "1"),
    (r"\sqrt{2}", r"\sqrt{3}"),
    (r"(-\infty, 3]", "x < 3"),
    (r"\text{Evelyn}", "Alice"),
    ("18", None),
    ("18", ""),
    (r"\frac{1}{0}", "1"),
]

UNDECIDABLE = [
    ("", "1"),  # no gold answer
    (r"\frac{1}{", "0.5"),  # gold does not parse
    ("7", r"\frac{1}{"),  # prediction does not parse
]


@pytest.mark.parametrize(("gold", "pred"), EQUIVALENT)
def test_equivalent(gold: str, pred: str) -> None:
    assert is_equivalent(gold, pred) is True


@pytest.mark.parametrize(("gold", "pred"), NOT_EQUIVALENT)
def test_not_equivalent(gold: str, pred: str | None) -> None:
    assert is_equivalent(gold, pred) is False


@pytest.mark.parametrize(("gold", "pred"), UNDECIDABLE)
def test_undecidable(gold: str, pred: str) -> None:
    assert is_equivalent(gold, pred) is None


@pytest.mark.parametrize("bad_input", [object(), 12, "\\" * 1000, "{" * 5000, "1" * 5000, "\x00"])
def test_bad_input_never_raises(bad_input: object) -> None:
    assert is_equivalent(bad_input, "1", timeout=1) in (True, False, None)  # type: ignore[arg-type]
    assert is_equivalent("1", bad_input, timeout=1) in (True, False, None)  # type: ignore[arg-type]


def _warm_pool() -> None:
    assert is_equivalent(r"2\sqrt{2}", r"\sqrt{8}") is True


def test_pathological_input_times_out_and_pool_recovers(caplog) -> None:
    _warm_pool()
    with caplog.at_level(logging.INFO, logger=math_equiv.logger.name):
        assert is_equivalent(PATHOLOGICAL, "5", timeout=1.0) is None
    # The worker was given up on at the configured timeout (not some other failure).
    assert [r.getMessage().rsplit(": ", 1)[-1] for r in caplog.records] == ["no answer within 1.0s"]
    assert is_equivalent(r"3\sqrt{2}", r"\sqrt{18}") is True  # a fresh worker took over


def test_worker_hook_that_sleeps_is_cut_off() -> None:
    _warm_pool()
    from reasoning.verifiers.worker_pool import WorkerFailed

    # Given up on at the configured timeout (the worker would sleep 60 s), and the hook says None.
    with pytest.raises(WorkerFailed, match=r"^no answer within 0\.5s$"):
        math_equiv._get_pool().run("sleep_then", (60, "finished"), 0.5)
    assert math_equiv._run_in_worker("sleep_then", (60, "finished"), timeout=0.5) is None
    assert math_equiv._run_in_worker("sleep_then", (0, "finished"), timeout=30) == "finished"


def test_concurrent_calls_from_eight_threads() -> None:
    math_equiv._verdict_cache.clear()
    # Each thread gets its own pairs, so the result cache cannot answer for the workers.
    cases_per_thread = [
        [
            (rf"\frac{{{k}}}{{\sqrt{{2}}}}", rf"\frac{{{k}\sqrt{{2}}}}{{2}}", True),
            (rf"{k}\sqrt{{3}}", rf"\sqrt{{{3 * k * k}}}", True),
            (rf"{k}\sqrt{{3}}", rf"\sqrt{{{3 * k * k + 1}}}", False),
            (f"({k},{k + 1})", f"({k + 1},{k})", False),
        ]
        for k in range(2, 10)
    ]
    cases_per_thread[0].append((PATHOLOGICAL, "5", None))  # one timeout must not disturb the others
    failures: list[str] = []

    def check(cases: list[tuple[str, str, bool | None]]) -> None:
        for gold, pred, expected in cases:
            verdict = is_equivalent(gold, pred, timeout=2.0 if expected is None else 20.0)
            if verdict is not expected:
                failures.append(f"{gold} vs {pred}: {verdict}, expected {expected}")

    threads = [threading.Thread(target=check, args=(cases,)) for cases in cases_per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []


def test_async_version_does_not_block_the_event_loop() -> None:
    async def scenario() -> tuple[list[bool | None], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        verdicts = await asyncio.gather(
            ais_equivalent(PATHOLOGICAL, "5", timeout=1.0),
            ais_equivalent(r"\frac{1}{2}", "0.5"),
            ais_equivalent(r"2\sqrt{5}", r"\sqrt{20}"),
            ais_equivalent("(1,2)", "(2,1)"),
        )
        ticking.cancel()
        return list(verdicts), ticks

    verdicts, ticks = asyncio.run(scenario())
    assert verdicts == [None, True, True, False]
    assert ticks >= 10  # the loop kept running during the ~1 s sympy timeout


def test_is_equivalent_many_keeps_order() -> None:
    pairs = [("1", "1.0"), (r"\sqrt{8}", r"2\sqrt{2}"), ("(1,2)", "(2,1)"), ("", "3"), ("4", "5")]
    assert is_equivalent_many(pairs) == [True, True, False, None, False]


def _math500_answers() -> list[str]:
    if not MATH500.exists():
        pytest.skip(f"{MATH500} not available")
    return [json.loads(line)["answer"] for line in MATH500.read_text().splitlines() if line.strip()]


def test_math500_gold_answers_survive_boxing_and_extraction() -> None:
    answers = _math500_answers()
    assert len(answers) == 500
    failures = []
    for answer in answers:
        extracted = extract_answer(f"Some reasoning first. So the answer is \\boxed{{{answer}}}.")
        if is_equivalent(answer, extracted) is not True:
            failures.append((answer, extracted))
    assert failures == []


def test_math500_gold_answers_equal_their_voting_key_under_sympy() -> None:
    """The voting key must not change an answer's meaning (checked by math_verify, not the fast path)."""
    failures = []
    for answer in _math500_answers():
        key = normalize_answer(answer)
        if math_equiv._worker_verdict(answer, key, timeout=10.0) is not True:
            failures.append((answer, key))
    assert failures == []
