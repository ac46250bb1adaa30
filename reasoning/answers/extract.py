"""Pull the final answer out of a model's free-form output.

Preference order: last `\\boxed{}` > "the (final) answer is ..." / "Answer: ..." >
GSM8K `#### N` > last number in the text.
"""

from __future__ import annotations

import re

from reasoning.answers.latex_utils import last_boxed, strip_answer_wrappers
from reasoning.answers.normalize import normalize_answer

__all__ = ["extract_answer", "normalize_answer", "strip_answer_wrappers"]

_NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
# A minus sign counts only when it is not a binary operator (`3-5` is not "-5").
_SIGNED_NUMBER = rf"(?:(?<![\w)\]}}])-\s?)?\$?{_NUMBER}"
_LATEX_FRACTION = r"-?\\[dt]?frac\{\s*-?\d+\s*\}\{\s*\d+\s*\}"
_NUMBER_TOKEN = re.compile(rf"{_LATEX_FRACTION}|{_SIGNED_NUMBER}(?:\s?/\s?{_NUMBER})?(?:\s?\\?%)?")
# A number that is the whole answer: "18", "18 dollars", "$1,234." but not "2x+1", "2 \pi".
_LEADING_NUMBER = re.compile(
    rf"\$?(?:-\s?)?{_NUMBER}(?:/{_NUMBER})?(?:\s?\\?%)?(?![\w\\^{{(*/+\-]|[.,]\d|\s*[\\^*/+\-=])"
)

_ANSWER_PHRASE = re.compile(
    r"(?:final\s+answer|\banswer)\s*(?:\*\*)?\s*(?:is|:|=)\s*(?:\*\*)?\s*:?\s*"
    r"(?:therefore\s+|thus\s+)?",
    re.IGNORECASE,
)
_GSM8K_MARKER = re.compile(r"####\s*([^\n]+)")
_MATH_SPAN = re.compile(r"\$\$((?:\\.|[^$\\])+)\$\$|\$((?:\\.|[^$\\])+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]")
# Inside a would-be math span, these mean we paired two currency signs: "$18. Then $x$".
_PROSE_IN_SPAN = re.compile(r"(?<!\\)\b[a-zA-Z]{3,}\s+[a-zA-Z]{2,}|\.\s+[A-Z]")
# End of a sentence: a period not inside a number, or a line break.
_SENTENCE_END = re.compile(r"(?<!\d)\.(?!\d)|\.(?=\s|$)|\n|;|,\s+(?=[a-z]{3,}\b)")
_CURRENCY_PREFIX = re.compile(r"^\\?\$\s*(?=-?\.?\d)")
# Longer than this, the "answer" after a phrase is prose, not an answer.
_MAX_PHRASE_ANSWER = 80
_MAX_ANSWER_WORDS = 5  # "all real numbers" is an answer; a whole clause is not


def extract_answer(text: str) -> str | None:
    """The model's final answer as a cleaned string, or None if there is none."""
    if not text:
        return None
    for finder in (_from_boxed, _from_answer_phrase, _from_gsm8k_marker, _from_last_number):
        found = finder(text)
        if found:
            return found
    return None


def _clean(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    answer = strip_answer_wrappers(answer)
    if answer.startswith("$") and "$" not in answer[1:]:
        answer = answer[1:].strip()  # currency: "$18"
    answer = _CURRENCY_PREFIX.sub("", answer)
    return answer.rstrip(".").strip()


def _from_boxed(text: str) -> str | None:
    boxed = last_boxed(text)
    return _clean(boxed) if boxed is not None else None


def _from_answer_phrase(text: str) -> str | None:
    for phrase in reversed(list(_ANSWER_PHRASE.finditer(text))):
        answer = _answer_after_phrase(text[phrase.end() :])
        if answer:
            return answer
    return None


def _answer_after_phrase(rest: str) -> str | None:
    rest = rest.replace("**", "").lstrip(" \t")  # markdown bold around the answer
    span = _MATH_SPAN.match(rest)
    if span:
        inner = next(group for group in span.groups() if group is not None)
        # "$18 and $20 ..." is currency, not a math span.
        if not _PROSE_IN_SPAN.search(inner):
            return _clean(inner) or None
    number = _LEADING_NUMBER.match(rest)
    if number:
        return _clean(number.group(0).replace(",", "") if _is_plain_number(number.group(0)) else number.group(0))
    end = _SENTENCE_END.search(rest)
    candidate = rest[: end.start()] if end else rest
    candidate = _clean(candidate)
    if not candidate or len(candidate) > _MAX_PHRASE_ANSWER or _is_prose(candidate):
        return None
    return candidate


def _is_prose(candidate: str) -> bool:
    plain_words = re.findall(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}\b", candidate)
    return len(plain_words) > _MAX_ANSWER_WORDS


def _is_plain_number(token: str) -> bool:
    return re.fullmatch(rf"\$?(?:-\s?)?{_NUMBER}(?:\s?\\?%)?", token) is not None


def _from_gsm8k_marker(text: str) -> str | None:
    markers = _GSM8K_MARKER.findall(text)
    if not markers:
        return None
    marked = markers[-1].strip()
    number = _LEADING_NUMBER.match(marked)
    if number:
        return _clean(number.group(0).replace(",", ""))
    return _clean(marked) or None


def _from_last_number(text: str) -> str | None:
    tokens = _NUMBER_TOKEN.findall(text)
    if not tokens:
        return None
    token = re.sub(r"\s", "", tokens[-1])
    if "frac" not in token:
        token = token.replace(",", "")
    return _clean(token) or None
