"""Extraction from whole responses (issue 14) and ``verifiers.grade`` end to end.

Cases written for this project: answer markers in prose and in other languages, several boxes
in one response, units and ``\\text{}`` kept by the extractor, a matrix closing an explanation.
"""

from __future__ import annotations

import asyncio

import pytest

from reasoning.verifiers import agrade, extract_answer, grade, grade_many

MARKER_CASES = [
    # English prose
    ("After simplifying we see that the final answer is 64, which we double-check below.", "64"),
    ("Putting it together, Answer: $x^2+2x$", "x^2+2x"),
    # French
    ("On additionne les deux aires.\nRéponse : 27 (vérifié à l'étape 2)", "27"),
    (r"Donc la réponse est $\frac{5}{8}$ avec 2 dés.", r"\frac{5}{8}"),
    ("La réponse finale est 3,25. On a fait 4 essais.", "3,25"),
    # Chinese
    ("我们把两边相加，得到 x = 9。答案：9，第 3 步已验证。", "9"),
    (r"化简后可得，答案是 $2\sqrt{6}$。共 4 步。", r"2\sqrt{6}"),
    ("经过计算，最终答案为 -14，一共用了 5 步。", "-14"),
    ("因此答案为 x+1，验证了 3 次", "x+1"),
    # German, Spanish, Russian
    ("Wir setzen ein und erhalten 11.\nAntwort: 11 (nach 2 Schritten)", "11"),
    ("Die Antwort ist $\\pi/4$, Schritt 6.", "\\pi/4"),
    ("Die Antwort lautet 250, gerechnet in 3 Schritten.", "250"),
    ("Sumando ambos lados obtenemos 35.\nRespuesta: 35 (paso 4)", "35"),
    ("Entonces la respuesta final es 0.125 tras 3 pasos.", "0.125"),
    ("Ответ: 13 (2 способа)", "13"),
    # a list after a marker is the whole list, not its first number
    ("Réponse : 1,-2", "1,-2"),
    ("The answer is 4, 9.", "4, 9"),
    # a marker followed by prose, not an answer, is skipped for the last number
    ("答案是我们需要重新考虑这个问题 but the value is 8", "8"),
]


@pytest.mark.parametrize(("text", "expected"), MARKER_CASES)
def test_answer_markers_in_prose(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


BOXED_CASES = [
    # the last box counts: earlier boxes are intermediate results or corrections
    (r"The area is $\boxed{12}$ square units, so the height is $\boxed{3}$.", "3"),
    (r"Step 1 gives \boxed{x=2}. Step 2 uses it: \boxed{17}. Hence we report that.", "17"),
    # boxes ending the response together are one several-part answer
    (r"The solutions are $x = \boxed{-1}$ or $x = \boxed{6}$.", "-1, 6"),
    (r"So $\boxed{2}$ and $\boxed{5}$.", "2, 5"),
    # ... but not across a line break or a sentence, and repeats count once
    ("First guess \\boxed{8}\n\\boxed{9}", "9"),
    (r"$\boxed{7}$, that is, $\boxed{7}$", "7"),
    # units and \text / \mbox are kept for the comparer
    (r"The rope is $\boxed{14\text{ m}}$ long.", r"14\text{ m}"),
    (r"\boxed{45 \mbox{ degrees}}", r"45 \mbox{ degrees}"),
    (r"Total: \boxed{\text{Monday}}", r"\text{Monday}"),
    (r"The answer is $6\,\text{cm}^2$.", r"6\,\text{cm}^2"),
]


@pytest.mark.parametrize(("text", "expected"), BOXED_CASES)
def test_several_boxes_and_units(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


MATRIX_CASES = [
    (
        "Multiplying row by column we obtain\n$$\\begin{pmatrix} 2 & 0 \\\\ 1 & 3 \\end{pmatrix}.$$",
        r"\begin{pmatrix} 2 & 0 \\ 1 & 3 \end{pmatrix}",
    ),
    (
        "The inverse is therefore $\\left[\\begin{array}{cc} 1 & -2 \\\\ 0 & 1 \\end{array}\\right]$ as claimed.",
        r"\left[\begin{array}{cc} 1 & -2 \\ 0 & 1 \end{array}\right]",
    ),
    (
        "so the projection is\n\\[\n\\begin{bmatrix} 3/5 \\\\ 4/5 \\end{bmatrix}\n\\]",
        r"\begin{bmatrix} 3/5 \\ 4/5 \end{bmatrix}",
    ),
    ("The answer is \\begin{pmatrix} 1 \\\\ 9 \\end{pmatrix}, as computed.", r"\begin{pmatrix} 1 \\ 9 \end{pmatrix}"),
    # a number after the matrix: the matrix was not the final answer
    ("With $\\begin{pmatrix} 1 & 2 \\end{pmatrix}$ the determinant comes out as 5.", "5"),
]


@pytest.mark.parametrize(("text", "expected"), MATRIX_CASES)
def test_trailing_matrix(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("gold", "response", "verdict"),
    [
        ("17", r"We count the cases one by one, and the total is $\boxed{17}$.", True),
        (r"\frac{3}{4}", "Dividing, the final answer is 0.75.", True),
        ("12", "Réponse : 12", True),
        ("-1, 6", r"The solutions are $x = \boxed{-1}$ or $x = \boxed{6}$.", True),
        (r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}", "Hence we get $$\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}$$", True),
        ("17", r"First \boxed{17}, but correcting the count: \boxed{18}.", False),
        ("9", "答案：8", False),
        ("9", "I cannot solve this.", False),  # no answer is a wrong answer
        ("", r"\boxed{4}", None),  # empty gold: undecidable
    ],
)
def test_grade_end_to_end(gold: str, response: str, verdict: bool | None) -> None:
    assert grade(gold, response) is verdict
    assert asyncio.run(agrade(gold, response)) is verdict


def test_grade_many_keeps_order() -> None:
    pairs = [("3", r"\boxed{3}"), ("3", r"\boxed{4}"), ("", "5"), (r"\frac{1}{2}", "The answer is 0.5")]
    assert grade_many(pairs) == [True, False, None, True]


def test_grade_is_reexported_from_the_package() -> None:
    import reasoning

    assert reasoning.grade is grade


def test_grade_compares_a_list_in_any_order_only_when_the_problem_asks_for_a_set():
    import asyncio

    from reasoning.benchmarks.run import grade as grade_final_answer

    problem = "Find all real solutions. Enter them separated by commas."
    assert grade("1,-2", r"so \boxed{-2, 1}") is False  # a plain list is a sequence
    assert grade("1,-2", r"so \boxed{-2, 1}", problem=problem) is True
    assert grade("1,-2", r"so \boxed{-2, 3}", problem=problem) is False
    assert asyncio.run(grade_final_answer("1,-2", "-2, 1")) is False
    assert asyncio.run(grade_final_answer("1,-2", "-2, 1", problem)) is True  # how runs grade MATH-500
