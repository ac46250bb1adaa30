"""Issue 14's equivalence categories: numbers, relations, matrices, order.

One parametrized block per category, with equal and not-equal cases each, so a
rule that says "equal" (or "not equal") for everything fails. The rules are
documented in `verifiers.math_equiv` (fast path) and `verifiers._worker_main.compare`.
"""

from __future__ import annotations

import pytest
from reasoning.verifiers import is_equivalent, is_equivalent_many
from reasoning.verifiers.math_equiv import answer_is_set

from reasoning.answers.normalize import parse_decimal_comma

NUMBERS = [
    # decimal comma: a comma that cannot be a thousands separator is a decimal point
    ("2.75", "2,75", True),
    ("2,75", "2.75", True),
    ("5032.08", "5032,08", True),
    ("-0.4", "-0,4", True),
    ("3.1416", "3,1416", True),
    ("2.75", "2,76", False),
    ("2.75", "275", False),
    ("7500", "7,500", True),  # three digits after the comma: thousands
    ("7.5", "7,500", False),
    ("12,345,678", "12345678", True),
    # given precision: a decimal equals an exact value it rounds to the places it shows
    (r"\frac{2}{7}", "0.2857", True),
    (r"\frac{2}{7}", "0.29", True),
    (r"\frac{2}{7}", "0.3", False),  # one significant digit says too little
    (r"\frac{2}{7}", "0.2858", False),
    (r"\frac{2}{7}", "0.28", False),  # truncated, not rounded
    (r"\frac{5}{6}", "0.833", True),
    (r"\frac{5}{6}", "0.834", False),
    (r"\frac{1}{16}", "0.063", True),  # 0.0625 rounded half up
    (r"\frac{1}{16}", "0.062", True),  # ... or half to even
    (r"\frac{1}{16}", "0.064", False),
    (r"\frac{40}{3}", "13.33", True),
    (r"\frac{40}{3}", "13.3", True),
    (r"\frac{40}{3}", "13.4", False),
    (r"\frac{2}{7}", "0,2857", True),  # decimal comma and rounding together
    (r"\{\frac{2}{7}, 5\}", r"\{5, 0.286\}", True),
    (r"\{\frac{2}{7}, 5\}", r"\{5, 0.285\}", False),
    (r"y > \frac{5}{6}", "y > 0.8333", True),
    (r"y > \frac{5}{6}", "y > 0.8334", False),
    ("0.2857", r"\frac{2}{7}", True),  # a rounded gold against an exact prediction
    ("3.45", "3.4", False),  # two decimals are not rounded against each other
    ("3.45", "3.450", True),
    ("9", "8.99", False),
    (r"\sqrt{3}", "1.732", True),
    (r"\sqrt{3}", "1.733", False),
    (r"2\pi", "6.283", True),
    (r"2\pi", "6.28", True),
    (r"2\pi", "6.29", False),
    (r"[\frac{1}{7}, \frac{9}{4})", "[0.1429, 2.25)", True),
    (r"[\frac{1}{7}, \frac{9}{4})", "[0.1429, 2.25]", False),
    (r"[\frac{1}{7}, \frac{9}{4})", "[0.1428, 2.25)", False),
    (r"\left(\frac{4}{9}, -\frac{5}{3}\right)", "(0.444, -1.667)", True),
    (r"\left(\frac{4}{9}, -\frac{5}{3}\right)", "(0.444, 1.667)", False),
]

RELATIONS = [
    (r"t \geq -3", "t >= -3", True),
    (r"t \geq -3", "t > -3", False),
    (r"x \ge -3", r"-3 \le x", True),
    (r"a \neq 4", "a != 4", True),
    (r"a \neq 4", "a != 3", False),
    (r"n \lt 12", "n < 12", True),
    (r"n \gt 12", "n > 12", True),
    (r"n \gt 12", "n < 12", False),
    (r"z \leq 0", "z ≤ 0", True),
    (r"z \le 0", r"z \leq 0", True),
    (r"z \le 0", r"z \geq 0", False),
    (r"z \geq 0", "z ⩾ 0", True),
    (r"z \leq 0", "z ⩽ 0", True),
    (r"z \leq 0", "z ⩾ 0", False),
    (r"-3 \le t", r"t \ge -3", True),  # `t` is the variable here, not tonnes
    (r"-3 \le t", r"t \le -3", False),
    ("3x-6y+9=0", "y=x/2+3/2", True),  # the same line, rearranged
    ("3x-6y+9=0", "y=x/2-3/2", False),
    ("y=5-2x", "4x+2y=10", True),
    ("y=5-2x", "4x+2y=12", False),
    ("a+b=7", "2a+2b-14=0", True),
    ("x^2=9", "x=3", False),  # not the same solution set
    # a chain of inequalities is the interval it describes
    (r"-4 \le t \le 1", r"t \in [-4, 1]", True),
    (r"-4 \le t \le 1", "[-4, 1]", True),
    (r"-4 \le t \le 1", r"t \in (-4, 1]", False),
    (r"-4 < t \le 1", r"t \in (-4, 1]", True),
]

MATRICES = [
    (r"\begin{pmatrix} 3 \\ -1 \\ 0 \end{pmatrix}", r"\begin{bmatrix} 3 \\ -1 \\ 0 \end{bmatrix}", True),
    (r"\begin{pmatrix} 3 \\ -1 \\ 0 \end{pmatrix}", r"\begin{bmatrix} 3 \\ 1 \\ 0 \end{bmatrix}", False),
    (
        r"\begin{pmatrix} 5 & 0 \\ -2 & 1 \end{pmatrix}",
        r"\left[\begin{array}{cc} 5 & 0 \\ -2 & 1 \end{array}\right]",
        True,
    ),
    (
        r"\begin{pmatrix} 5 & 0 \\ -2 & 1 \end{pmatrix}",
        r"\left[\begin{array}{cc} 5 & -2 \\ 0 & 1 \end{array}\right]",
        False,
    ),
    (
        r"\begin{pmatrix} \frac{2}{7} & 1 \\ 0 & \frac{5}{6} \end{pmatrix}",
        r"\begin{pmatrix} 0.2857 & 1 \\ 0 & 0.833 \end{pmatrix}",
        True,
    ),
    (
        r"\begin{pmatrix} \frac{2}{7} & 1 \\ 0 & \frac{5}{6} \end{pmatrix}",
        r"\begin{pmatrix} 0.2857 & 1 \\ 0 & 0.834 \end{pmatrix}",
        False,
    ),
    (r"\begin{pmatrix} \frac{1}{2} \\ 4 \end{pmatrix}", r"\begin{bmatrix} 0.5 \\ 4 \end{bmatrix}", True),
    (r"\begin{pmatrix} 1 \\ 4 \end{pmatrix}", r"\begin{pmatrix} 4 \\ 1 \end{pmatrix}", False),
    # a one-row or one-column matrix is the tuple of its entries
    (r"\begin{pmatrix} 6 \\ -2 \end{pmatrix}", "(6, -2)", True),
    (r"\begin{pmatrix} 6 \\ -2 \end{pmatrix}", "(-2, 6)", False),
    (r"\begin{pmatrix} 6 & -2 & 1 \end{pmatrix}", "(6, -2, 1)", True),
    (r"\begin{pmatrix} 6 \\ -2 \\ 1 \end{pmatrix}", "(6, 1, -2)", False),
    ("(6, -2)", r"\begin{bmatrix} 6 \\ -2 \end{bmatrix}", True),
    ("(6, -2)", r"\begin{pmatrix} 6 & 0 \\ -2 & 0 \end{pmatrix}", False),
    (r"\begin{pmatrix} 6 \\ -2 \end{pmatrix}", r"\langle 6, -2 \rangle", True),
    (r"\begin{pmatrix} 6 \\ -2 \end{pmatrix}", r"\left\langle 6, 2 \right\rangle", False),
    (r"\langle 3, 0, -1 \rangle", "(3, 0, -1)", True),
    (r"\langle 3, 0, -1 \rangle", "(3, -1, 0)", False),
]

ORDER = [
    ("7, -1, 3", "7, -1, 3", True),
    ("7, -1, 3", "7,-1,3", True),
    ("7, -1, 3", "-1, 7, 3", False),  # a bare list is a sequence
    ("7, -1, 3", "7, -1", False),
    ("7, -1, 3", r"\frac{14}{2}, -1, 3", True),
    ("7, -1, 3", r"\{-1, 3, 7\}", False),
    (r"\{7, -1, 3\}", "-1, 3, 7", True),  # a gold in braces is a set
    (r"\{7, -1, 3\}", r"\{3, 7, -1\}", True),
    (r"\{7, -1, 3\}", r"\{3, 7, 1\}", False),
    ("x=2, x=-5", "x=-5, x=2", True),  # solutions of one variable form a set
    ("x=2, x=-5", "x=-5, x=3", False),
    ("(2, 9)", "(9, 2)", False),
    ("(2, 9), (4, 1)", "(2, 9), (4, 1)", True),
    ("(2, 9), (4, 1)", "(4, 1), (2, 9)", False),
]


def _check(gold: str, pred: str, expected: bool) -> None:
    assert is_equivalent(gold, pred) is expected, (gold, pred)


@pytest.mark.parametrize(("gold", "pred", "expected"), NUMBERS)
def test_numbers(gold: str, pred: str, expected: bool) -> None:
    _check(gold, pred, expected)


@pytest.mark.parametrize(("gold", "pred", "expected"), RELATIONS)
def test_relations(gold: str, pred: str, expected: bool) -> None:
    _check(gold, pred, expected)


@pytest.mark.parametrize(("gold", "pred", "expected"), MATRICES)
def test_matrices(gold: str, pred: str, expected: bool) -> None:
    _check(gold, pred, expected)


@pytest.mark.parametrize(("gold", "pred", "expected"), ORDER)
def test_order(gold: str, pred: str, expected: bool) -> None:
    _check(gold, pred, expected)


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [("3, 5, 7", "7, 5, 3", True), ("3, 5, 7", "7, 5, 2", False), ("1,-2", "-2, 1", True), ("3, 5, 7", "3, 5", False)],
)
def test_unordered_keyword_makes_a_bare_list_a_set(gold: str, pred: str, expected: bool) -> None:
    assert is_equivalent(gold, pred, unordered=True) is expected
    assert is_equivalent_many([(gold, pred)], unordered=True) == [expected]
    if expected:
        assert is_equivalent(gold, pred) is False  # without it the list is a sequence


@pytest.mark.parametrize(
    ("text", "value"),
    [("1,22", 1.22), ("1000,99", 1000.99), ("-0,5", -0.5), ("1,000", None), ("1,2,3", None), ("x", None)],
)
def test_decimal_comma_reading(text: str, value: float | None) -> None:
    number = parse_decimal_comma(text)
    assert (None if number is None else float(number.value)) == value


@pytest.mark.parametrize(
    ("problem", "is_set"),
    [
        ("Find all real numbers $k$ such that the equation has a double root. Enter them separated by commas.", True),
        ("Find all values of $a$ for which the system has a solution.", True),
        ("What are the roots of $p(x)$?", True),
        ("Enter all the integer roots, separated by commas.", True),
        ("Find the ordered pair $(a,b)$. Enter your answer separated by commas.", False),
        ("List the first three terms of the sequence, separated by commas, in increasing order.", False),
        ("Compute the sum of the first ten terms.", False),
        ("What is the smallest positive value of $x$?", False),
    ],
)
def test_answer_is_set_reads_the_problem_wording(problem: str, is_set: bool) -> None:
    assert answer_is_set(problem) is is_set


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        ("204_6", "204_6", True),
        ("204_6", "204_{6}", True),
        (r"\text{A2}_{16}", "A2_16", True),
        ("204_6", "204_5", False),  # same digits, another base
        ("1011_2", "1010_2", False),
    ],
)
def test_numbers_in_a_stated_base_need_the_same_digits_and_base(gold, pred, expected):
    assert is_equivalent(gold, pred) is expected
