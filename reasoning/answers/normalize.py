"""Cheap canonical string form of an answer: the voting key for majority voting.

Pure python and fast (regexes only, no sympy). It merges spellings of the same
answer (`\\dfrac12`, `\\frac{1}{2}`, `0.50`, `.5` -> `0.5`) but never tries
symbolic equivalence: `\\sqrt{12}` and `2\\sqrt{3}` stay different keys.
"""

from __future__ import annotations

import re
from functools import lru_cache
from dataclasses import dataclass
from fractions import Fraction

from reasoning.answers.latex_utils import strip_answer_wrappers

# (pattern, replacement) applied in order; each line says what it undoes.
_REWRITES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])"), ""),  # sizing of delimiters
    (re.compile(r"\\displaystyle(?![a-zA-Z])"), ""),
    (re.compile(r"(?<=\d)\\,(?=\d{3}(?!\d))"), ""),  # `1\,000`: thin space as thousands separator
    (re.compile(r"\\!\s*"), ""),  # negative space, as in `10,\!080`
    (re.compile(r"\\[,;:> ]|\\q?quad(?![a-zA-Z])|~"), " "),  # latex spacing
    (re.compile(r"\{,\}"), ","),  # `10{,}000`
    (re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\frac\s*(\d)\s*(\d)"), r"\\frac{\1}{\2}"),  # `\frac12`
    (re.compile(r"\\frac\s*(\d)\s*\{"), r"\\frac{\1}{"),  # `\frac1{x}`
    (re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)"), r"\\frac{\1}{\2}"),  # `\frac{x}2`
    (re.compile(r"\\sqrt\s*(\d)"), r"\\sqrt{\1}"),  # `\sqrt2`
    (re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\degree(?![a-zA-Z])"), ""),  # degrees
    (re.compile(r"\\\$|\$"), ""),  # dollar signs
    (re.compile(r"\\(?:mathrm|textrm|textnormal|textbf|mathbf|mbox|text)\s*\{\s*\}"), ""),
]
# A unit after a number: `5\text{ cm}`, `3\mbox{ inches}^2`, `18 dollars`.
_TRAILING_UNIT = re.compile(
    r"(?<=[\d}])\s*(?:\\(?:text|mbox|mathrm|textrm|textnormal)\s*\{\s*[a-zA-Z][a-zA-Z .]*\}"
    r"|\s+[a-zA-Z]{2,}(?:\s+[a-zA-Z]{2,})*)(?:\^\{?[23]\}?)?$"
)
_TEXT_COMMAND = re.compile(r"\\(?:text|mbox|mathrm|textrm|textnormal|textbf|mathbf)\s*\{([^{}]*)\}")
# `x = 5`, `\theta=30`, `k \in (1,2)`: one variable then the value.
_SINGLE_VARIABLE_PREFIX = re.compile(r"^(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w\}?)?\s*(?:=|\\in(?![a-zA-Z]))\s*(?=\S)")
_MULTIPLE_CHOICE = re.compile(r"^\(?([A-Z])\)$|^\(([A-Z])\)?$")
_COMMAND_THEN_LETTER = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z0-9])")
_SINGLE_CHAR_GROUP = re.compile(r"([\^_])\{(\w)\}")

_PLAIN_NUMBER = re.compile(
    r"(?P<sign>[-+]?)\s*(?P<value>\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+)"
    r"(?:\s*/\s*(?P<denominator>\d+))?"
)
_LATEX_FRACTION = re.compile(
    r"(?P<sign>[-+]?)\s*\\frac\s*\{\s*(?P<numerator>[-+]?\s*\d+)\s*\}\s*\{\s*(?P<denominator>\d+)\s*\}"
)
_ROW_BREAK = "\x01"
# Longer "numbers" are degenerate output; int() refuses them beyond 4300 digits anyway.
_MAX_NUMBER_LENGTH = 1000
_MAX_PEELING_ROUNDS = 4  # bounded so degenerate input stays linear
_PERCENT = re.compile(r"\\%|%|\\text\{\s*percent\s*\}|\bpercent\b")


@dataclass(frozen=True, slots=True)
class PlainNumber:
    """A number written out in full: `-1,234.50`, `3/4`, `\\frac{3}{4}`, `10\\%`."""

    value: Fraction
    is_percent: bool
    is_decimal: bool  # written with a decimal point, so maybe rounded by the writer
    places: int = 0  # digits shown after the decimal point (`2.6667` -> 4)
    significant: int = 0  # significant digits shown (`0.0330` -> 3), 0 for non-decimals


def parse_plain_number(answer: str) -> PlainNumber | None:
    """The number an answer consists of, or None if it is anything else."""
    text = _strip_decorations(answer, keep_percent=True)
    is_percent = text.endswith("%")
    text = text.removesuffix("%").strip()
    if len(text) > _MAX_NUMBER_LENGTH:
        return None
    if match := _LATEX_FRACTION.fullmatch(text):
        numerator = int(re.sub(r"\s", "", match["numerator"]))
        value = Fraction(numerator, int(match["denominator"])) if int(match["denominator"]) else None
        decimal = False
    elif match := _PLAIN_NUMBER.fullmatch(text):
        value = Fraction(match["value"].replace(",", "").rstrip(".") or "0")
        if match["denominator"] is not None:
            denominator = int(match["denominator"])
            value = value / denominator if denominator else None
        decimal = "." in match["value"]
    else:
        return None
    if value is None:
        return None
    if match["sign"] == "-":
        value = -value
    if decimal and match["denominator"] is None:
        return PlainNumber(value, is_percent, True, *_shown_digits(match["value"].replace(",", "")))
    return PlainNumber(value, is_percent, decimal)


# `1,22`, `1000,99`, `-3,5`: a comma that cannot be a thousands separator.
_DECIMAL_COMMA = re.compile(r"(?P<sign>[-+]?)\s*(?P<integer>\d+),(?P<fraction>\d+)")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+")


def parse_decimal_comma(answer: str) -> PlainNumber | None:
    """The number of an answer written with a decimal comma (`1,22` = 1.22), else None.

    Rule: one comma between digits is a decimal comma unless it can be a thousands
    separator, that is unless the digits after it are exactly three and those before
    it one to three (`1,000` stays one thousand; `1,22`, `1000,99`, `12,3456` are
    decimals). Only a single number qualifies: `1,2,3` is a list.
    """
    text = _strip_decorations(answer, keep_percent=True)
    is_percent = text.endswith("%")
    text = text.removesuffix("%").strip()
    if len(text) > _MAX_NUMBER_LENGTH:
        return None
    match = _DECIMAL_COMMA.fullmatch(text)
    if match is None or _THOUSANDS.fullmatch(f"{match['integer']},{match['fraction']}"):
        return None
    digits = f"{match['integer']}.{match['fraction']}"
    value = Fraction(digits)
    return PlainNumber(-value if match["sign"] == "-" else value, is_percent, True, *_shown_digits(digits))


def _shown_digits(digits: str) -> tuple[int, int]:
    """(places after the point, significant digits) of an unsigned decimal such as `0.0330`."""
    whole, _, fraction = digits.partition(".")
    significant = (whole + fraction).lstrip("0")
    return len(fraction), len(significant)


def format_number(value: Fraction) -> str:
    """`18`, `0.5`, `-1/3`: the decimal form when it terminates, else a reduced fraction."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    digits = str(scaled).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def normalize_answer(answer: str) -> str:
    """Canonical string form of an answer, for grouping equal answers cheaply.

    Removes wrappers (`$`, `\\boxed`), spacing and sizing commands, units
    (`\\text{ cm}`, `dollars`), degree signs, percent signs (so `10\\%` and `10`
    share a key), dollar signs, a leading `x =`; writes numbers canonically
    (`1,234.0` -> `1234`, `\\frac{2}{4}` -> `0.5`), `(B)` -> `B`.
    """
    if answer is None:
        return ""
    return _normalize_cached(str(answer))


# Votes repeat the same few answers many times: caching the pure function makes the
# voting key nearly free on the hot path (thousands of samples per second).
@lru_cache(maxsize=1 << 16)
def _normalize_cached(answer: str) -> str:
    text = _strip_decorations(answer)
    number = parse_plain_number(text)
    if number is not None:
        return format_number(number.value)
    text = _COMMAND_THEN_LETTER.sub(lambda m: m.group(1) + "\0", text)
    text = re.sub(r"\s+", "", text).replace("\0", " ")
    text = _SINGLE_CHAR_GROUP.sub(r"\1\2", text)
    if choice := _MULTIPLE_CHOICE.fullmatch(text):
        return choice.group(1) or choice.group(2)
    return text


def _strip_decorations(answer: str, keep_percent: bool = False, keep_variable: bool = False) -> str:
    """Everything normalize_answer removes before looking at whitespace and numbers.

    Percent signs are dropped (the voting key of `10\\%` is `10`) unless
    ``keep_percent``, which turns every spelling of them into a plain `%`.
    ``keep_variable`` keeps a leading `y =`, so an equation stays an equation.
    """
    # Hide `\\` (row break) so `\\ ` is not read as the spacing command `\ `.
    text = strip_answer_wrappers(answer).replace("\\\\", _ROW_BREAK)
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    text = text.replace(_ROW_BREAK, "\\\\")
    text = _PERCENT.sub("%" if keep_percent else "", text)
    text = text.strip()
    for _ in range(_MAX_PEELING_ROUNDS):  # `$x = 5\text{ cm}$` needs several rounds
        previous = text
        text = _TRAILING_UNIT.sub("", text).strip()
        if text.count("=") <= 1 and not keep_variable:
            text = _SINGLE_VARIABLE_PREFIX.sub("", text, count=1)
        text = strip_answer_wrappers(text)
        if text == previous:
            break
    text = _TEXT_COMMAND.sub(lambda m: m.group(1).strip(), text)
    return text.lstrip("+").strip() if re.match(r"\+\s*[\d.]", text) else text


def prepare_for_parsing(answer: str, keep_variable: bool = False) -> str:
    """The answer with wrappers, units, `x =` and similar decorations removed, still LaTeX.

    What the math_verify worker is given: the same clean-up as the voting key,
    but spacing, numbers and percent signs (as `\\%`) are left for sympy.
    ``keep_variable`` keeps a leading `y =` (to compare an equation with an equation).
    A vector in angle brackets, `\\langle 1, 2 \\rangle`, becomes the tuple `(1, 2)`.
    """
    text = _strip_decorations(answer, keep_percent=True, keep_variable=keep_variable).replace("%", "\\%")
    return _ANGLE_OPEN.sub("(", _ANGLE_CLOSE.sub(")", text))


_ANGLE_OPEN = re.compile(r"\\langle(?![a-zA-Z])|⟨")
_ANGLE_CLOSE = re.compile(r"\\rangle(?![a-zA-Z])|⟩")
