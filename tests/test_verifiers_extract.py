"""Table-driven tests of answer extraction, wrapper stripping and the voting key."""

from __future__ import annotations

import pytest

from reasoning.verifiers import extract_answer, normalize_answer, strip_answer_wrappers
from reasoning.answers.normalize import parse_plain_number

COT_POLAR = r"""We have that $r = \sqrt{0^2 + 3^2} = 3.$  Also, if we draw the line connecting the
origin and $(0,3),$ this line makes an angle of $\frac{\pi}{2}$ with the positive $x$-axis.

Therefore, the polar coordinates are $\boxed{\left( 3, \frac{\pi}{2} \right)}.$"""

COT_SELF_CORRECTING = r"""Let me compute $2 + 2 = \boxed{5}$. Wait, that is wrong.
Recomputing carefully: $2 + 2 = 4$, so the final answer is

\[
\boxed{4}
\]"""

COT_GSM8K = """Natalia sold 48/2 = <<48/2=24>>24 clips in May.
Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.
#### 72"""

COT_MINERVA = r"""Multiplying both sides by 4 gives $3x = 12$, so $x = 4$.
Final Answer: The final answer is $\frac{3}{4}$. I hope it is correct."""

COT_MANY_NUMBERS = """First, 12 apples cost $3 each, so that is 36 dollars.
Then she buys 4 more for 2 dollars each: 8 dollars.
In total she spends 44 dollars."""

EXTRACTION_CASES = [
    # boxed, with nesting and variants
    (r"So the answer is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (COT_POLAR, r"\left( 3, \frac{\pi}{2} \right)"),
    (COT_SELF_CORRECTING, "4"),
    (r"First \boxed{3}, then corrected: \boxed{4}", "4"),
    (r"$\boxed{\frac{\sqrt{3}}{2}}$", r"\frac{\sqrt{3}}{2}"),
    (r"\boxed{\{1,2,3\}}", r"\{1,2,3\}"),
    (r"The matrix is $\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}$", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    (r"so $x = \boxed 5$", "5"),
    (r"\fbox{7}", "7"),
    (r"\boxed{\text{(B)}}", r"\text{(B)}"),
    (r"\boxed{x \in [1, 2)}", r"x \in [1, 2)"),
    (r"\boxed{ 18 }.", "18"),
    (r"The answer is \boxed{2} and then \boxed{unclosed", "2"),
    (r"The answer is 7. \boxed{12}", "12"),
    (r"\boxed{\$18}", "18"),
    (r"The set is $\boxed{\text{all real numbers}}$", r"\text{all real numbers}"),
    ("The answer is all real numbers.", "all real numbers"),
    (r"\boxed{\boxed{9}}", "9"),
    # answer phrases
    ("The answer is $18.", "18"),
    ("The answer is $18$.", "18"),
    (r"The answer is $\$18$.", "18"),
    ("The final answer is 42. I hope it is correct.", "42"),
    (COT_MINERVA, r"\frac{3}{4}"),
    ("**Answer:** 12", "12"),
    ("**Final Answer**: (B)", "(B)"),
    ("Answer: B", "B"),
    ("The answer is B, because it fits.", "B"),
    ("The answer is 2x+3.", "2x+3"),
    (r"The answer is 2\sqrt{3}.", r"2\sqrt{3}"),
    ("The answer is 18 because 3 times 6 is 18.", "18"),
    ("The answer is 0.5.", "0.5"),
    (r"The answer is 10\%.", r"10\%"),
    ("answer is: 7", "7"),
    ("So the answer is **1,234**.", "1234"),
    (r"Hence the answer is \(x^2 - 1\).", "x^2 - 1"),
    ("The answer is 3 and the check is 3.", "3"),
    # GSM8K marker
    (COT_GSM8K, "72"),
    ("So total is 1,234 dollars.\n#### 1,234", "1234"),
    ("#### -5", "-5"),
    ("#### $40", "40"),
    # last number fallback
    (COT_MANY_NUMBERS, "44"),
    ("She pays $18 in total.", "18"),
    ("The price went up by 10%.", "10%"),
    ("Temperature is -5 degrees.", "-5"),
    ("It is 3.5 miles away, or 3/4 of the way.", "3/4"),
    ("Compute 3-5 and stop", "5"),
    ("So 1,000,000 people came.", "1000000"),
    ("The total is $1,234.56.", "1234.56"),
    ("Thus the result is \\frac{3}{4}", r"\frac{3}{4}"),
    ("We get x = 5 and y = 7.", "7"),
    ("It costs .75 per item", ".75"),
    # nothing to find
    ("No numbers here.", None),
    ("", None),
    (r"\boxed{unclosed", None),
    ("The answer is that we need to look again at the whole problem because it is not well posed.", None),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACTION_CASES)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


WRAPPER_CASES = [
    ("$18$", "18"),
    ("$$x+1$$", "x+1"),
    (r"\(x\)", "x"),
    (r"\[ \frac{1}{2} \]", r"\frac{1}{2}"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"$\boxed{5}$.", "5"),
    (r"\fbox{A}", "A"),
    ("**42**", "42"),
    ("  7.  ", "7"),
    (r"$\$18$", r"\$18"),
    ("$1$ and $2$", "$1$ and $2$"),
    (r"\boxed{1} + \boxed{2}", r"\boxed{1} + \boxed{2}"),
    ("3.5", "3.5"),
]


@pytest.mark.parametrize(("wrapped", "expected"), WRAPPER_CASES)
def test_strip_answer_wrappers(wrapped: str, expected: str) -> None:
    assert strip_answer_wrappers(wrapped) == expected


SAME_KEY_GROUPS = [
    [r"\frac{1}{2}", r"\dfrac12", "0.5", "0.50", ".5", "1/2", r"$\boxed{\tfrac{1}{2}}$", "2/4"],
    ["18", "18.00", "+18", r"\$18", "$18$", "18 dollars", r"18 \text{ dollars}", "18."],
    ["1234", "1,234", r"1{,}234", r"1,\!234", r"1\,234", "1234.0"],
    ["5", r"5\text{ cm}", r"5 \mbox{cm}^2", "x=5", "x = 5", r"\theta = 5"],
    ["B", "(B)", r"\text{(B)}", "B)"],
    ["10", r"10\%", "10%", "10 percent"],
    ["30", r"30^\circ", r"30^{\circ}", "30°"],
    [r"(3,\frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)", r"\left(3,\dfrac{\pi}{2}\right)"],
    ["[1,2)", r"x \in [1, 2)", r"\left[1, 2\right)"],
    [r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"],
    [r"\sqrt{2}/2", r"\sqrt2/2", r"\sqrt 2 / 2"],
    ["x^2+1", "x^{2} + 1", r"x^2 \! + 1"],
    ["-1/3", r"-\frac{1}{3}", r"\frac{-1}{3}", r"-\frac{2}{6}"],
]


@pytest.mark.parametrize("group", SAME_KEY_GROUPS, ids=lambda group: group[0])
def test_normalize_answer_merges_spellings(group: list[str]) -> None:
    keys = {normalize_answer(answer) for answer in group}
    assert len(keys) == 1, keys


DIFFERENT_KEY_PAIRS = [
    ("-3", "3"),
    ("1, 234", "1234"),  # a list of two numbers, not a thousands separator
    ("(1,2)", "(2,1)"),
    ("(1,2]", "[1,2]"),
    (r"2\sqrt{3}", r"\sqrt{12}"),  # no symbolic work in the voting key
    ("1/3", "0.333"),
    (r"\pi r", r"\pir"),
]


@pytest.mark.parametrize(("a", "b"), DIFFERENT_KEY_PAIRS)
def test_normalize_answer_keeps_different_answers_apart(a: str, b: str) -> None:
    assert normalize_answer(a) != normalize_answer(b)


@pytest.mark.parametrize(
    ("answer", "key"),
    [("0.50", "0.5"), (r"\frac{3}{8}", "0.375"), (r"\frac{14}{3}", "14/3"), ("-0", "0"), ("1e3", "1e3"), ("", "")],
)
def test_normalize_answer_number_format(answer: str, key: str) -> None:
    assert normalize_answer(answer) == key


@pytest.mark.parametrize(
    ("answer", "value", "is_percent"),
    [
        ("10\\%", 10, True),
        ("-1,234.5", -1234.5, False),
        (r"\frac{3}{4}", 0.75, False),
        ("x", None, None),
        ("1/0", None, None),
    ],
)
def test_parse_plain_number(answer: str, value: float | None, is_percent: bool | None) -> None:
    number = parse_plain_number(answer)
    if value is None:
        assert number is None
    else:
        assert number is not None and float(number.value) == value and number.is_percent == is_percent


def test_normalize_answer_is_fast() -> None:
    import time

    answers = [r"\left( 3, \frac{\pi}{2} \right)", "1,234", r"5\text{ cm}", "x^5 - x^4 + x^3"] * 500
    start = time.perf_counter()
    for answer in answers:
        normalize_answer(answer)
    # 2000 keys, ~40 ms in all in practice: the bound only catches a gross regression (a
    # quadratic pass), with room for a loaded 2-core CI machine.
    assert time.perf_counter() - start < 10.0


@pytest.mark.parametrize(
    "degenerate_output",
    [
        r"\boxed{" * 15_000,
        ". " * 50_000 + "x",
        "1," * 50_000,
        "The answer is " * 7_000,
        "$1" * 50_000,
        "1 " + "ab " * 30_000,
    ],
    ids=["unclosed-boxes", "full-stops", "commas", "phrases", "dollars", "words"],
)
def test_degenerate_outputs_are_handled_in_linear_time(degenerate_output: str) -> None:
    import time

    start = time.perf_counter()
    extract_answer(degenerate_output)
    normalize_answer(degenerate_output)
    # Milliseconds when linear; a backtracking regex on these ~100k-character inputs takes
    # minutes. The generous bound keeps a loaded machine from failing it (it failed once at 1 s).
    assert time.perf_counter() - start < 10.0


def _brace_pairs_by_character(text: str) -> dict[int, int]:
    """The character-by-character scan brace_pairs replaced (issue 19): the reference."""
    pairs: dict[int, int] = {}
    open_stack: list[int] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "{":
            open_stack.append(i)
        elif text[i] == "}" and open_stack:
            pairs[open_stack.pop()] = i
        i += 1
    return pairs


def test_brace_scans_agree_with_the_character_by_character_scan() -> None:
    """The regex scans (brace_pairs, matching_brace) pair exactly the braces the per-character
    loop did: escapes (a backslash skips the next character, a line break, a backslash or a
    final lone backslash included), unbalanced closers, braces never closed; and brace_pairs
    from a box command on pairs every brace after it as a scan from 0 does."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from reasoning.answers.latex_utils import _BOX_COMMAND, brace_pairs, matching_brace

    @settings(max_examples=3000, deadline=None)
    @given(st.lists(st.sampled_from(["{", "}", "\\", "a", "\n", "$", "\\boxed", "\\fbox"]), max_size=30))
    def agree(pieces: list[str]) -> None:
        text = "".join(pieces)
        expected = _brace_pairs_by_character(text)
        assert brace_pairs(text) == expected
        for index, char in enumerate(text):
            if char == "{" and index in expected:
                assert matching_brace(text, index) == expected[index]
        for command in _BOX_COMMAND.finditer(text):
            after = {o: c for o, c in expected.items() if o > command.start()}
            assert brace_pairs(text, command.start()) == after

    agree()
    assert brace_pairs("\\\\{a}\\{b\\}{\\}") == {2: 4}  # an escaped backslash does not escape the brace
    assert matching_brace("{a\\}b", 0) is None
