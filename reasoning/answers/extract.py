"""Pull the final answer out of a model's free-form output.

Preference order, first that finds something wins:

1. ``\\boxed{}`` / ``\\fbox{}``: the LAST well-formed box counts. Boxes before it are
   intermediate results or answers the response corrected ("\\boxed{5}. Wait... \\boxed{4}"
   gives 4), even when a box is followed by more prose. One exception: boxes that end the
   response together, on one line, separated only by commas, "and"/"or", spacing commands,
   `$` or a variable assignment (``x = \\boxed{2}`` or ``x = \\boxed{3}``), are one answer with
   several parts, joined with ", " ("2, 3"); repeated identical boxes count once. A box that
   is never closed is skipped.
2. An answer marker in running prose, the last one that is followed by an answer:
   English "the (final) answer is / Answer:", French "Réponse :", "La réponse (finale) est",
   Chinese "答案", "答案是", "答案为", "最终答案", German "Antwort:", "Die Antwort ist/lautet",
   Spanish "Respuesta:", "La respuesta (final) es", Russian "Ответ:". After the marker: a math
   span (``$..$``, ``\\(..\\)``, ``\\[..\\]``, a matrix environment), else a leading number
   (units and words after a plain number are dropped: "18 dollars" gives 18), else the rest
   of the sentence (ended by ". ", a line break, ";", "。", "，", ...) if it is short and not
   prose (at most 5 words, 80 characters, no CJK characters).
3. A matrix at the end of the response, not boxed: the last ``\\begin{pmatrix}`` (bmatrix,
   Bmatrix, vmatrix, Vmatrix, matrix, smallmatrix, or array inside ``\\left[..\\right]`` /
   ``\\left(..\\right)``) when no number follows it.
4. The GSM8K marker ``#### N``.
5. The last number in the text (signed, decimal, ``a/b``, ``\\frac{a}{b}``, percent).

Units and ``\\text{}`` / ``\\mbox{}`` inside a box or a math span are KEPT as written
(``5\\text{ cm}``): the extractor reports what the response said; whether a unit matters is
the comparer's call (``normalize_answer`` drops unit words, so ``5\\text{ cm}`` equals 5).
Every pattern is linear in the length of the text (tests/test_verifiers_extract.py guards
degenerate inputs).
"""

from __future__ import annotations

import re

from reasoning.answers.latex_utils import box_argument, brace_pairs, strip_answer_wrappers
from reasoning.answers.normalize import normalize_answer

__all__ = ["extract_answer", "normalize_answer", "strip_answer_wrappers"]

_NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
# A minus sign counts only when it is not a binary operator (`3-5` is not "-5").
_SIGNED_NUMBER = rf"(?:(?<![\w)\]}}])-\s?)?\$?{_NUMBER}"
_LATEX_FRACTION = r"-?\\[dt]?frac\{\s*-?\d+\s*\}\{\s*\d+\s*\}"
_NUMBER_TOKEN = re.compile(rf"{_LATEX_FRACTION}|{_SIGNED_NUMBER}(?:\s?/\s?{_NUMBER})?(?:\s?\\?%)?")
# A number that is the whole answer: "18", "18 dollars", "$1,234." but not "2x+1", "2 \pi".
# A list after a marker ("Réponse : 1,-2", "3, 5") is not its first number.
_LEADING_NUMBER = re.compile(
    rf"\$?(?:-\s?)?{_NUMBER}(?:/{_NUMBER})?(?:\s?\\?%)?(?![\w\\^{{(*/+\-]|[.,]\d|,\s*-?\d|\s*[\\^*/+\-=])"
)

_ANSWER_PHRASE = re.compile(
    r"(?:final\s+answer|\banswer|\br[ée]ponse(?:\s+finale)?|\bantwort|\brespuesta(?:\s+final)?|\bответ"
    r"|最终答案|最終答案|答案)"
    r"\s*(?:\*\*)?\s*(?:(?:is|est|ist|lautet|es)\b|[:：=是为為])\s*(?:\*\*)?\s*[:：]?\s*"
    r"(?:therefore\s+|thus\s+)?",
    re.IGNORECASE,
)
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
# What may separate the boxes of one several-part answer: `x = \boxed{2}$ or $x = \boxed{3}`.
_BOX_GAP = re.compile(
    r"(?:[ \t$,;&]|\\[,;:! ]|\\q?quad\b|\\[()]|\\text\{\s*(?:and|or)?\s*\}|\band\b|\bor\b"
    r"|[a-zA-Z](?:_\{?\w{1,3}\}?)?\s*=)*"
)
_MAX_BOX_GAP = 40
_MATRIX_END = re.compile(r"\\end\{((?:[pbBvV]|small)?matrix|array)\}")
_LEFT = re.compile(r"\\left\s*(?:\[|\(|\\\{)\s*$")
_RIGHT = re.compile(r"\s*\\right\s*(?:\]|\)|\\\})")
_GSM8K_MARKER = re.compile(r"####\s*([^\n]+)")
_MATH_SPAN = re.compile(r"\$\$((?:\\.|[^$\\])+)\$\$|\$((?:\\.|[^$\\])+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]")
# Inside a would-be math span, these mean we paired two currency signs: "$18. Then $x$".
_PROSE_IN_SPAN = re.compile(r"(?<!\\)\b[a-zA-Z]{3,}\s+[a-zA-Z]{2,}|\.\s+[A-Z]")
# End of a sentence: a period not inside a number, or a line break.
_SENTENCE_END = re.compile(r"(?<!\d)\.(?!\d)|\.(?=\s|$)|\n|;|,\s+(?=[a-z]{3,}\b)|[。，；！？]")
_CURRENCY_PREFIX = re.compile(r"^\\?\$\s*(?=-?\.?\d)")
# Longer than this, the "answer" after a phrase is prose, not an answer.
_MAX_PHRASE_ANSWER = 80
_MAX_ANSWER_WORDS = 5  # "all real numbers" is an answer; a whole clause is not


def extract_answer(text: str) -> str | None:
    """The model's final answer as a cleaned string, or None if there is none."""
    if not text:
        return None
    for finder in (_from_boxed, _from_answer_phrase, _from_trailing_matrix, _from_gsm8k_marker, _from_last_number):
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
    """The last closed box; with the boxes just before it when they form one answer (rule 1)."""
    commands = list(_BOX_COMMAND.finditer(text))
    if not commands:
        return None
    # One pass (rescanning each unclosed box would be quadratic), from the first box on.
    pairs = brace_pairs(text, commands[0].start())
    parts: list[str] = []
    part_start = None
    for command in reversed(commands):
        argument = box_argument(text, command.end(), pairs)
        if argument is None:
            if parts:
                break
            continue
        content, end = argument
        if part_start is not None:
            gap = text[end:part_start]
            if len(gap) > _MAX_BOX_GAP or not _BOX_GAP.fullmatch(gap):
                break
        cleaned = _clean(content)
        if cleaned and cleaned not in parts:
            parts.append(cleaned)
        elif not cleaned and not parts:
            return None
        part_start = command.start()
    return ", ".join(reversed(parts)) or None


def _from_answer_phrase(text: str) -> str | None:
    for phrase in reversed(list(_ANSWER_PHRASE.finditer(text))):
        answer = _answer_after_phrase(text[phrase.end() :])
        if answer:
            return answer
    return None


def _answer_after_phrase(rest: str) -> str | None:
    rest = rest.replace("**", "").lstrip(" \t")  # markdown bold around the answer
    matrix = _matrix_at_start(rest)
    if matrix:
        return matrix
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
    if not candidate or len(candidate) > _MAX_PHRASE_ANSWER or _is_prose(candidate) or _CJK.search(candidate):
        return None
    return candidate


def _matrix_at_start(rest: str) -> str | None:
    """A matrix environment opening ``rest`` (after `$$`, `\\[`, `$` or `\\left[`), or None."""
    head = rest.lstrip("$ \t\n")
    if head.startswith("\\["):
        head = head[2:].lstrip()
    if not (head.startswith("\\begin{") or head.startswith("\\left")):
        return None
    end = _MATRIX_END.search(head, 0, 2000)
    if end is None:
        return None
    return _matrix_span(head, end)


def _matrix_span(text: str, end: re.Match[str]) -> str | None:
    """The environment closed by ``end``, widened to a `\\left[ .. \\right]` around it."""
    begin = text.rfind("\\begin{" + end.group(1) + "}", 0, end.start())
    if begin < 0:
        return None
    stop = end.end()
    left = _LEFT.search(text, max(0, begin - 12), begin)
    right = _RIGHT.match(text, stop)
    if left and right:
        begin, stop = left.start(), right.end()
    return text[begin:stop].strip()


def _from_trailing_matrix(text: str) -> str | None:
    """Rule 3: the last matrix environment, if no number comes after it."""
    last = None
    for last in _MATRIX_END.finditer(text):
        pass
    if last is None or re.search(r"\d", text[last.end() :]):
        return None
    return _matrix_span(text, last)


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
