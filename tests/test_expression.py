"""The Countdown / Game-of-24 expression checker, the puzzle datasets and their grading."""

import asyncio
import json
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasoning.benchmarks.datasets import Item, load_items
from reasoning.benchmarks.run import grade_item
from reasoning.errors import ConfigError
from reasoning.verifiers import check_expression, normalize_expression

G24 = [1, 2, 3, 4]


@pytest.mark.parametrize(
    "answer, numbers, target",
    [
        ("(1 + 2 + 3) * 4", G24, 24),
        ("4 * (3 + 2 + 1)", G24, 24),
        ("1 * 2 * 3 * 4", G24, 24),
        ("(6 - 2) * (3 + 3)", [2, 3, 3, 6], 24),  # a number given twice is used twice
        ("8 / (3 - 8 / 3)", [3, 3, 8, 8], 24),  # fractions in between, exactly
        (r"8 \div (3 - \frac{8}{3})", [3, 3, 8, 8], 24),
        (r"\frac{8}{3 - \frac83}", [3, 3, 8, 8], 24),
        (r"\dfrac{8}{3-\tfrac{8}{3}}", [3, 3, 8, 8], 24),
        (r"\left(6 - 2\right) \times \left(3 + 3\right)", [2, 3, 3, 6], 24),
        (r"(6-2) \cdot (3+3)", [2, 3, 3, 6], 24),
        ("(6 − 2) × (3 + 3)", [2, 3, 3, 6], 24),
        ("(6 - 2) · (3 + 3)", [2, 3, 3, 6], 24),
        ("12 ÷ (3 - 2) * 2", [2, 2, 3, 12], 24),
        ("(1 + 2 + 3) x 4", G24, 24),
        ("(1 + 2 + 3) * 4 = 24", G24, 24),
        ("24 = (1 + 2 + 3) * 4", G24, 24),
        ("(6-2)*(3+3) = 4*6 = 24", [2, 3, 3, 6], 24),  # a chain: the first expression counts
        (r"$\boxed{(1+2+3)\times 4}$", G24, 24),
        (r"\text{(1+2+3)*4}", G24, 24),
        (r"[(1 + 2) + 3] * 4", G24, 24),
        (r"\{(1 + 2) + 3\} \cdot 4", G24, 24),
        ("30 + 93 - 100", [30, 100, 93], 23),  # Countdown: all three, target 23
        ("(100 - 93) * 30 / 30", [30, 30, 100, 93], 7),
        ("6.0 * 4", [6, 4], 24),  # compared by value
        ("(1 + 2 + 3)\n* 4", G24, 24),
    ],
)
def test_valid_expressions(answer, numbers, target):
    verdict = check_expression(answer, numbers, target)
    assert verdict.valid, verdict.reason
    assert verdict.reason == "correct" and verdict.value == target


@pytest.mark.parametrize(
    "answer, numbers, target, reason",
    [
        (None, G24, 24, "no expression"),
        ("   ", G24, 24, "no expression"),
        ("(1 + 2) * 4 * 3", G24, 24, "evaluates to 36, not 24"),
        ("4 * 6", G24, 24, "uses 6, which is not one of the given numbers"),
        ("2 * 3 * 4", G24, 24, "does not use 1"),
        ("(6 - 2) * 3 * 2", [2, 3, 3, 6], 24, "uses 2 2 times but it is given once"),
        ("(6 - 2) * 6", [2, 3, 3, 6], 24, "uses 6 2 times"),
        ("12 * 2", [1, 2, 2], 24, "uses 12"),  # no joining digits
        ("-1 + 25", [1, 25], 24, "unary minus"),
        ("2 ** 3 * 3", [2, 3, 3], 24, "'**' (power) is not allowed"),
        ("2 ^ 3 * 3", [2, 3, 3], 24, "'^' (power) is not allowed"),
        ("48 // 2", [48, 2], 24, "'//' is not allowed"),
        ("49 % 25", [49, 25], 24, "'%' is not allowed"),
        ("4 / (2 - 2) + 24", [4, 2, 2, 24], 24, "division by zero"),
        ("6(2 + 2)", [6, 2, 2], 24, "implicit multiplication"),
        ("__import__('os').system('true')", G24, 24, "function calls"),
        ("x + 1", [1], 24, "names such as 'x'"),
        ("1, 2", [1, 2], 24, "commas"),
        ("1e1 + 14", [10, 14], 24, "not a plain decimal number"),
        ("(1 + 2 + 3 * 4", G24, 24, "could not parse"),
        ("1 < 2", [1, 2], 24, "comparisons"),
        ("(" * 300 + "1" + ")" * 300, [1], 1, "could not parse"),  # the parser's nesting limit
        ("1 + " * 400 + "1", [1], 24, "longer than"),
    ],
)
def test_invalid_expressions_say_why(answer, numbers, target, reason):
    verdict = check_expression(answer, numbers, target)
    assert not verdict.valid and not verdict
    assert reason in verdict.reason


def test_subset_rule_for_the_tv_show_variant():
    assert not check_expression("4 * 6", [4, 6, 1], 24)
    assert check_expression("4 * 6", [4, 6, 1], 24, use_all=False)
    # Still at most as often as given.
    assert "uses 4 2 times" in check_expression("4 * 4 + 8", [4, 8, 1], 24, use_all=False).reason


def test_normalize_rewrites_spellings_without_evaluating():
    assert normalize_expression(r"\left(6 \div 2\right) \times \frac{16}{2} = 24") == "(6 / 2) * ((16)/(2))"
    assert normalize_expression("3 X 8") == "3*8"


def _random_expression(rng: random.Random, numbers: list[int]) -> tuple[str, Fraction | None]:
    """A random full binary tree over ``numbers`` (shuffled) with its exact value (None: x/0)."""
    terms: list[tuple[str, Fraction | None]] = [(str(n), Fraction(n)) for n in numbers]
    rng.shuffle(terms)
    while len(terms) > 1:
        i = rng.randrange(len(terms) - 1)
        (a, x), (b, y) = terms[i], terms[i + 1]
        op = rng.choice("+-*/")
        if x is None or y is None:
            value = None
        elif op == "+":
            value = x + y
        elif op == "-":
            value = x - y
        elif op == "*":
            value = x * y
        else:
            value = None if y == 0 else x / y
        spaced = rng.choice([" ", ""])
        terms[i : i + 2] = [(f"({a}{spaced}{op}{spaced}{b})", value)]
    return terms[0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=13), min_size=1, max_size=5), st.integers(0, 2**32 - 1))
def test_random_expressions_over_the_numbers_evaluate_consistently(numbers, seed):
    rng = random.Random(seed)
    text, value = _random_expression(rng, numbers)
    if value is None:
        assert check_expression(text, numbers, 24).reason == "division by zero"
        return
    assert check_expression(text, numbers, value).valid  # its own value: valid
    assert check_expression(text, numbers, value + 1).reason.startswith("evaluates to")
    latex = text.replace("*", r" \times ").replace("/", r" \div ")
    assert check_expression(latex, numbers, value).valid  # same verdict in LaTeX spelling
    if len(numbers) > 1:  # dropping a number is always caught
        assert not check_expression(text, numbers[:-1] + [99], value).valid


def test_countdown_and_game24_load_as_expression_items():
    for name, size in (("countdown", 3), ("game24", 4)):
        items = load_items(name, 5)
        assert len(items) == 5
        for item in items:
            assert item.kind == "expression"
            assert len(item.metadata["numbers"]) == size and item.metadata["use_all"] is True
            assert item.answer == str(item.metadata["target"])
            assert "exactly once" in item.problem and "\\boxed{}" in item.problem
            assert ", ".join(map(str, item.metadata["numbers"])) in item.problem
    assert [i.id for i in load_items("game24", 3)] == ["900", "901", "902"]  # the ToT test subset
    assert len(load_items("game24")) == 100 and len(load_items("game24-all")) == 1362
    assert len(load_items("countdown")) == 256


def test_every_shipped_puzzle_has_a_valid_solution_checked_by_the_verifier():
    """The checker agrees with a brute force: the first 40 game24 puzzles are solvable."""
    from itertools import permutations, product

    def solve(numbers):
        for order in permutations(numbers):
            for ops in product("+-*/", repeat=len(numbers) - 1):
                a, b, c, d = order
                o1, o2, o3 = ops
                for form in (f"(({a}{o1}{b}){o2}{c}){o3}{d}", f"({a}{o1}{b}){o2}({c}{o3}{d})",
                             f"({a}{o1}({b}{o2}{c})){o3}{d}", f"{a}{o1}(({b}{o2}{c}){o3}{d})",
                             f"{a}{o1}({b}{o2}({c}{o3}{d}))"):
                    if check_expression(form, numbers, 24):
                        return form
        return None

    for item in load_items("game24-all", 40):
        assert solve(item.metadata["numbers"]) is not None, item.metadata


def test_own_jsonl_with_numbers_and_target_and_bad_records(tmp_path):
    path = tmp_path / "puzzles.jsonl"
    path.write_text(json.dumps({"numbers": [25, 50, 3], "target": 75, "use_all": False}) + "\n")
    [item] = load_items(str(path))
    assert item.kind == "expression" and "at most once" in item.problem and item.answer == "75"
    path.write_text(json.dumps({"numbers": [], "target": 1}) + "\n")
    with pytest.raises(ConfigError, match=":1: 'numbers' must be"):
        load_items(str(path))
    path.write_text(json.dumps({"numbers": [1, "2"], "target": 1}) + "\n")
    with pytest.raises(ConfigError, match="'numbers' must be"):
        load_items(str(path))
    path.write_text(json.dumps({"numbers": [1, 2], "target": "3"}) + "\n")
    with pytest.raises(ConfigError, match="'target' must be a number"):
        load_items(str(path))


def test_grade_item_grades_expression_items_with_the_checker():
    item = Item("0", "…", "24", {"numbers": [2, 3, 3, 6], "target": 24, "use_all": True}, kind="expression")
    assert asyncio.run(grade_item(item, "(6-2)*(3+3)", [])) == (True, {"detail": "correct"})
    correct, extra = asyncio.run(grade_item(item, "24", []))
    assert correct is False and extra["detail"] == "uses 24, which is not one of the given numbers"
    assert asyncio.run(grade_item(item, None, []))[0] is False


def test_valid_expressions_vote_together():
    from reasoning import Problem
    from reasoning.verifiers.expression import expression_vote_key

    puzzle = Problem("30, 100, 93 -> 23", "0", {"numbers": [30, 100, 93], "target": 23, "use_all": True})
    keys = {expression_vote_key(puzzle, e) for e in ["30-(100-93)", "30+93-100", "(30 - 100) + 93"]}
    assert len(keys) == 1
    assert expression_vote_key(puzzle, "100-77") != next(iter(keys))
    assert expression_vote_key(puzzle, "100 - 77") == expression_vote_key(puzzle, "100-77")


def test_self_consistency_on_a_puzzle_counts_equivalent_solutions_as_one_answer(tmp_path):
    """Three different valid expressions outvote a wrong one written twice, which would win a
    vote on the raw text (2 votes against 1, 1, 1)."""
    import json

    from reasoning.benchmarks.cli import main

    out = tmp_path / "run"
    answers = "30-(100-93),30+93-100,(30-100)+93,100-77,100-77"
    assert main(["run", "--dataset", "countdown", "--limit", "1", "--strategy", "self-consistency", "--n", "5",
                 "--backend", f"scripted:{answers}", "--out", str(out)]) == 0
    row = json.loads((out / "results.jsonl").read_text())
    assert row["correct"] and row["answer"] == "30-(100-93)"
