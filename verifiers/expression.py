"""Check an arithmetic answer to a Countdown / Game of 24 puzzle, safely and exactly.

``check_expression(answer, numbers, target)`` says whether ``answer`` is an expression that
uses the given numbers with ``+ - * /`` and parentheses only and equals ``target``, and why
not when it is not. It never calls ``eval``: the text is parsed with Python's ``ast`` and
only these nodes are accepted — binary ``+ - * /`` and unsigned decimal literals
(parentheses leave no node of their own). Everything else is refused with a reason: unary
minus (``-3 + 27``: only the four binary operations are allowed), ``**`` / ``^``, ``//``,
``%``, names, calls and implicit multiplication (``2(3+4)``), commas.

Arithmetic is exact (``fractions.Fraction``): ``8 / (3 - 8/3)`` is exactly 24; fractions are
allowed in intermediate results (as in the Tree-of-Thoughts Game-of-24 checker and d1's
Countdown reward, which both evaluate with real division); a division by zero makes the
answer invalid.

Number use. Each literal must be one of the given numbers (compared by value, so ``6.0``
is 6), and no number may be used more often than it is given (a number given twice may be
used twice). With ``use_all=True`` (the default, and the rule of both shipped datasets:
Game of 24 "use each number exactly once"; d1's Countdown set, whose checker requires the
sorted numbers of the equation to equal the given ones) every given number must be used
exactly as many times as given. ``use_all=False`` is the TV-show variant: a sub-multiset
will do.

Spellings models use are accepted: ``×``, ``\\times``, ``·``, ``\\cdot``, ``∗``, ``\\ast`` and
an ``x`` between operands for ``*``; ``÷`` and ``\\div`` for ``/``; ``−`` / en dash for ``-``;
``\\left( \\right)``, ``[ ]`` and ``{ }`` as parentheses; ``\\frac{a}{b}`` (and ``\\dfrac``,
``\\tfrac``) as ``(a)/(b)``; ``$``/``\\boxed{}``/``\\text{}`` wrappers; an equation such as
``(6 - 2) * (3 + 3) = 24`` or ``24 = ...``: the left-most side that is not a lone number is
the expression checked (a chain ``a = b = 24`` checks ``a``).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from reasoning.answers.latex_utils import matching_brace, strip_answer_wrappers

__all__ = ["ExpressionVerdict", "check_expression", "normalize_expression"]

MAX_EXPRESSION_CHARS = 1000  # longer "expressions" are prose, and parsing them is wasted work

_LITERAL = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)")
_SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)(?![a-zA-Z])")
_FRAC = re.compile(r"\\[dt]?frac(?![a-zA-Z])")
_TEXT = re.compile(r"\\(?:text|mathrm|mathbf|textbf|operatorname)\s*(?=\{)")
_TIMES = re.compile(r"\\(?:times|cdot|ast)(?![a-zA-Z])|[×·⋅∗•✕]")
_DIVIDE = re.compile(r"\\div(?![a-zA-Z])|[÷∕]")
_MINUS = re.compile(r"[−–—‐]")
_SPACES = re.compile(r"\\[,;:! ]|~|\\quad|\\qquad")
# "3 x 8", "(2+1)x8": an x between two operands is a multiplication sign.
_LETTER_X = re.compile(r"(?<=[\d)\]}])\s*[xX]\s*(?=[\d(\[{])")
_LONE_NUMBER = re.compile(rf"\s*[+-]?\s*{_LITERAL.pattern}\s*")

_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_REFUSED_OPERATORS = {
    ast.Pow: "'**' (power) is not allowed",
    ast.BitXor: "'^' (power) is not allowed",
    ast.FloorDiv: "'//' is not allowed",
    ast.Mod: "'%' is not allowed",
    ast.MatMult: "'@' is not allowed",
}


@dataclass(frozen=True, slots=True)
class ExpressionVerdict:
    """``valid`` and why; ``expression`` is the normalised text that was checked (Python
    syntax), ``value`` its exact value when it could be computed."""

    valid: bool
    reason: str
    expression: str | None = None
    value: Fraction | None = None

    def __bool__(self) -> bool:
        return self.valid


class _Refused(Exception):
    pass


def check_expression(
    answer: str | None,
    numbers: Sequence[float | str | Fraction],
    target: float | str | Fraction,
    *,
    use_all: bool = True,
) -> ExpressionVerdict:
    """Is ``answer`` an expression over ``numbers`` (+ - * / and parentheses) equal to ``target``?"""
    if answer is None or not answer.strip():
        return ExpressionVerdict(False, "no expression")
    if len(answer) > MAX_EXPRESSION_CHARS:
        return ExpressionVerdict(False, f"longer than {MAX_EXPRESSION_CHARS} characters")
    given = Counter(_as_fraction(n) for n in numbers)
    goal = _as_fraction(target)
    expression = normalize_expression(answer)
    if not expression:
        return ExpressionVerdict(False, "no expression")
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ExpressionVerdict(False, "not an arithmetic expression (could not parse it)", expression)
    literals: list[Fraction] = []
    try:
        _collect(tree.body, expression, literals)
    except _Refused as refused:
        return ExpressionVerdict(False, str(refused), expression)
    except RecursionError:
        return ExpressionVerdict(False, "expression nested too deeply", expression)
    problem = _number_use(Counter(literals), given, use_all)
    if problem:
        return ExpressionVerdict(False, problem, expression)
    try:
        value = _evaluate(tree.body)
    except ZeroDivisionError:
        return ExpressionVerdict(False, "division by zero", expression)
    if value != goal:
        return ExpressionVerdict(False, f"evaluates to {_show(value)}, not {_show(goal)}", expression, value)
    return ExpressionVerdict(True, "correct", expression, value)


def normalize_expression(text: str) -> str:
    """Rewrite common model/LaTeX spellings into plain Python arithmetic (no evaluation)."""
    text = strip_answer_wrappers(text.strip())
    text = _TEXT.sub("", text)
    text = _SIZING.sub("", text)
    text = text.replace("\\{", "(").replace("\\}", ")")
    text = _expand_fracs(text)
    text = _TIMES.sub("*", text)
    text = _DIVIDE.sub("/", text)
    text = _MINUS.sub("-", text)
    text = _SPACES.sub(" ", text)
    text = " ".join(text.replace("$", "").split())  # newlines would end a Python expression
    text = _LETTER_X.sub("*", text)
    text = text.translate(str.maketrans("[]{}", "()()"))
    return _expression_side(text).strip()


def _expand_fracs(text: str) -> str:
    """``\\frac{a}{b}`` -> ``((a)/(b))``, innermost last; ``\\frac12`` -> ``((1)/(2))``."""
    for _ in range(100):  # each pass removes one \frac; the cap keeps junk input linear
        command = _FRAC.search(text)
        if command is None:
            return text
        position = command.end()
        arguments = []
        for _ in range(2):
            while position < len(text) and text[position] == " ":
                position += 1
            if position >= len(text):
                return text  # a dangling \frac: leave it, the parser will refuse it
            if text[position] == "{":
                close = matching_brace(text, position)
                if close is None:
                    return text
                arguments.append(text[position + 1 : close])
                position = close + 1
            else:
                arguments.append(text[position])
                position += 1
        text = f"{text[: command.start()]}(({arguments[0]})/({arguments[1]})){text[position:]}"
    return text


def _expression_side(text: str) -> str:
    """The left-most side of an equation that is not a lone number (or the whole text)."""
    sides = [side for side in text.split("=") if side.strip()]
    if len(sides) <= 1:
        return sides[0] if sides else ""
    for side in sides:
        if not _LONE_NUMBER.fullmatch(side):
            return side
    return sides[0]


def _collect(node: ast.AST, source: str, literals: list[Fraction]) -> None:
    """Refuse anything but binary + - * / over decimal literals; gather the literals."""
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _OPERATORS:
            raise _Refused(_REFUSED_OPERATORS.get(type(node.op), "only + - * / are allowed"))
        _collect(node.left, source, literals)
        _collect(node.right, source, literals)
        return
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        written = ast.get_source_segment(source, node) or ""
        if not _LITERAL.fullmatch(written):
            raise _Refused(f"number {written!r} is not a plain decimal number")
        literals.append(Fraction(written))
        return
    if isinstance(node, ast.UnaryOp):
        sign = "minus" if isinstance(node.op, ast.USub) else "operator"
        raise _Refused(f"unary {sign} is not allowed (only + - * / between numbers)")
    if isinstance(node, ast.Call):
        raise _Refused("function calls and implicit multiplication such as 2(3+4) are not allowed")
    if isinstance(node, ast.Name):
        raise _Refused(f"names such as {node.id!r} are not allowed")
    if isinstance(node, ast.Tuple):
        raise _Refused("commas are not allowed: write one expression")
    if isinstance(node, ast.Compare):
        raise _Refused("comparisons are not allowed")
    raise _Refused(f"{type(node).__name__} is not allowed (only numbers, + - * / and parentheses)")


def _evaluate(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant):
        return Fraction(str(node.value)) if isinstance(node.value, float) else Fraction(node.value)
    assert isinstance(node, ast.BinOp)  # _collect admitted nothing else
    left, right = _evaluate(node.left), _evaluate(node.right)
    op = type(node.op)
    if op is ast.Add:
        return left + right
    if op is ast.Sub:
        return left - right
    if op is ast.Mult:
        return left * right
    return left / right  # ZeroDivisionError for x / 0


def _number_use(used: Counter, given: Counter, use_all: bool) -> str | None:
    for number, count in used.items():
        if number not in given:
            return f"uses {_show(number)}, which is not one of the given numbers"
        if count > given[number]:
            return f"uses {_show(number)} {count} times but it is given {_times(given[number])}"
    if use_all:
        for number, count in given.items():
            if used[number] < count:
                rule = "(each given number must be used exactly once)"
                if used[number] == 0:
                    return f"does not use {_show(number)} {rule}"
                return f"uses {_show(number)} {_times(used[number])} but it is given {_times(count)} {rule}"
    return None


def _as_fraction(value: float | str | Fraction) -> Fraction:
    if isinstance(value, bool):
        raise TypeError("a number, not a bool")
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def _show(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def expression_vote_key(problem, answer: str) -> str:
    """Voting key for a puzzle (``Problem.metadata``: numbers, target, use_all): every valid
    solution is the same answer, so valid expressions vote together; an invalid one votes as
    its own normalised text."""
    meta = problem.metadata
    verdict = check_expression(answer, meta["numbers"], meta["target"], use_all=meta.get("use_all", True))
    return f"valid expression for {meta['target']}" if verdict.valid else (verdict.expression or answer).replace(" ", "")
