"""Entry point of a verifier worker process: `python -m reasoning.verifiers._worker_main READ_FD WRITE_FD`.

Runs math_verify with its own (signal-based) timeouts disabled; the parent
enforces the time limit by killing this process. Started with a fresh
interpreter, not multiprocessing, so the caller's `__main__` is never re-imported
and no threads or GPU state are forked.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from multiprocessing.connection import Connection


def compare(gold: str, pred: str, unordered: bool = False) -> bool | None:
    """The verdict on two bare answers (already `prepare_for_parsing`); None when either does not parse.

    math_verify's `verify` first (relations `\\geq`/`>=`, `\\neq`/`!=`, `\\lt`/`<`, `\\le`/`≤`;
    `-2 \\le x \\le 7` equals `x \\in [-2, 7]` as the same set; `pmatrix`, `bmatrix` and
    `\\left[\\begin{array}..\\right]` with equal entries; sets as sets), then this project's rules:

    - Order (`_ordered_verdict`): a gold written as a bare list, `10, 4, -2`, is a sequence and
      the prediction must give the same items in the same order; a gold in braces, `\\{10, 4, -2\\}`,
      is a set and any order is equal, as is a list of solutions of one variable, `x=1, x=2`.
      Tuples `(1, 2)` and intervals keep their order anyway. ``unordered`` (the caller knows
      the answer is a set) skips this rule.
    - Vectors (`_vector_as_tuple`): a one-row or one-column matrix equals the tuple of its
      entries, `\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}` = `(1, 2)`; a larger matrix is never a tuple.
    - Equations (`_equations_proportional`): two equations are equal when `lhs - rhs` of one is a
      nonzero constant times `lhs - rhs` of the other, over the same variables: `2x+4y-3=0` equals
      `y=-x/2+3/4` (the same line); `x^2=4` does not equal `x=2`.
    - Given precision (`_snap_rounded`): a decimal written with k places and at least 2
      significant digits stands for an exact value of the other answer when it is that value
      rounded to k places (within half a unit of its last place), anywhere in the structure:
      `(\\frac{3}{5}, \\frac{8}{3}]` equals `(0.6, 2.6667]`, `\\sqrt{2}` equals `1.414`, a matrix
      of fractions equals the same matrix with rounded entries. Two decimals are not rounded
      against each other.
    """
    from math_verify import verify

    ordered = _NOT_A_SEQUENCE if unordered else _ordered_verdict(gold, pred)
    if ordered is not _NOT_A_SEQUENCE:
        return ordered
    gold_parsed = _parse(gold)
    pred_parsed = _parse(pred)
    if not _has_expression(gold_parsed) or not _has_expression(pred_parsed):
        return None
    if verify(gold_parsed, pred_parsed, allow_set_relation_comp=True, timeout_seconds=None):
        return True
    gold_expr = next(item for item in gold_parsed if not isinstance(item, str))
    pred_expr = next(item for item in pred_parsed if not isinstance(item, str))
    if _equations_proportional(gold_expr, pred_expr):
        return True
    gold_expr, pred_expr = _vector_as_tuple(gold_expr, pred_expr), _vector_as_tuple(pred_expr, gold_expr)
    if (gold_expr, pred_expr) != (gold_parsed[0], pred_parsed[0]) and verify(
        [gold_expr], [pred_expr], allow_set_relation_comp=True, timeout_seconds=None
    ):
        return True
    snapped_pred = _snap_rounded(pred_expr, pred, gold_expr)
    if snapped_pred is not None and verify(
        [gold_expr], [snapped_pred], allow_set_relation_comp=True, timeout_seconds=None
    ):
        return True
    snapped_gold = _snap_rounded(gold_expr, gold, pred_expr)
    return snapped_gold is not None and bool(
        verify([snapped_gold], [pred_expr], allow_set_relation_comp=True, timeout_seconds=None)
    )


_NOT_A_SEQUENCE = object()
_SET_BRACES = re.compile(r"^\\{(.*)\\}$", re.DOTALL)
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")  # `10,080` is a number, not a list
_SOLUTION_ITEM = re.compile(r"^\s*([a-zA-Z])\s*=")
_DECIMAL_LITERAL = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])")
_MIN_SIGNIFICANT_DIGITS = 2  # as math_equiv.MIN_SIGNIFICANT_DIGITS
_MAX_SNAP_CANDIDATES = 200


def _top_level_items(text: str) -> list[str]:
    """`text` split at commas outside any brackets (`(`, `[`, `{`, either direction closes)."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            items.append(text[start:index].strip())
            start = index + 1
    items.append(text[start:].strip())
    return items


def _ordered_verdict(gold: str, pred: str) -> object:
    """True/False/None for a gold that is a sequence; _NOT_A_SEQUENCE otherwise (see `compare`)."""
    gold = gold.strip()
    if _SET_BRACES.match(gold) or _THOUSANDS.fullmatch(gold):
        return _NOT_A_SEQUENCE
    gold_items = _top_level_items(gold)
    if len(gold_items) < 2 or not all(gold_items):
        return _NOT_A_SEQUENCE
    variables = {m.group(1) if (m := _SOLUTION_ITEM.match(item)) else None for item in gold_items}
    if len(variables) == 1 and None not in variables:
        return _NOT_A_SEQUENCE  # `x=1, x=2`: the solutions of one equation, a set
    pred = pred.strip()
    if braces := _SET_BRACES.match(pred):
        pred = braces.group(1)
    pred_items = _top_level_items(pred)
    if len(pred_items) < 2:
        return _NOT_A_SEQUENCE  # a single answer against a list: leave it to math_verify
    if len(pred_items) != len(gold_items):
        return False
    verdicts = [compare(gold_item, pred_item) for gold_item, pred_item in zip(gold_items, pred_items, strict=True)]
    if False in verdicts:
        return False
    return None if None in verdicts else True


def _vector_as_tuple(expr: object, other: object) -> object:
    """A one-row or one-column matrix as the tuple of its entries when ``other`` is a tuple
    (or an open interval, math_verify's reading of a pair `(a, b)`)."""
    from sympy import Interval, MatrixBase, Tuple

    if isinstance(expr, MatrixBase) and 1 in expr.shape:
        if isinstance(other, Tuple):
            return Tuple(*expr)
        if isinstance(other, Interval) and other.left_open and other.right_open and len(expr) == 2:
            return Interval.open(*expr)  # `(1, 2)` reads as an open interval; as a pair it is the same
    return expr


def _equations_proportional(gold: object, pred: object) -> bool:
    from sympy import Eq, cancel

    if not isinstance(gold, Eq) or not isinstance(pred, Eq):
        return False
    gold_zero = gold.lhs - gold.rhs
    pred_zero = pred.lhs - pred.rhs
    if not gold_zero.free_symbols or gold_zero.free_symbols != pred_zero.free_symbols or pred_zero == 0:
        return False
    ratio = cancel(gold_zero / pred_zero)
    return bool(ratio.is_number and ratio.is_finite and ratio != 0)


def _snap_rounded(expr: object, text: str, exact: object) -> object | None:
    """``expr`` with each rounded decimal of ``text`` replaced by the exact value of ``exact``
    it rounds (see `compare`); None when nothing was replaced."""
    from sympy import Float, MatrixBase, Rational, preorder_traversal

    shown: dict[float, tuple[int, int]] = {}
    for match in _DECIMAL_LITERAL.finditer(text):
        significant = len((match.group(1) + match.group(2)).lstrip("0"))
        shown[float(f"{match.group(1)}.{match.group(2)}")] = (len(match.group(2)), significant)
    if not shown:
        return None
    candidates = []
    roots = list(exact) if isinstance(exact, MatrixBase) else [exact]
    for root in roots:
        for node in preorder_traversal(root):
            if len(candidates) >= _MAX_SNAP_CANDIDATES:
                break
            if getattr(node, "is_number", False) and not node.has(Float) and getattr(node, "is_real", False):
                candidates.append((node, Rational(str(node.evalf(30)))))
    replacements = {}
    floats = set()
    for root in list(expr) if isinstance(expr, MatrixBase) else [expr]:
        floats |= root.atoms(Float) if hasattr(root, "atoms") else set()
    for number in floats:
        digits = shown.get(abs(float(number)))
        if digits is None or digits[1] < _MIN_SIGNIFICANT_DIGITS:
            continue
        value = Rational(str(number))
        half_unit = Rational(1, 2 * 10 ** digits[0])
        for node, node_value in candidates:
            if abs(node_value - value) <= half_unit:
                replacements[number] = node
                break
    if not replacements:
        return None
    if isinstance(expr, MatrixBase):
        return expr.applyfunc(lambda entry: entry.xreplace(replacements))
    return expr.xreplace(replacements)


def sleep_then(seconds: float, result: object) -> object:
    """Test hook: a job that takes ``seconds``."""
    time.sleep(seconds)
    return result


JOBS = {"compare": compare, "sleep_then": sleep_then}


def _parse(answer: str) -> list:
    """math_verify's parse of a bare answer.

    `⩾`/`⩽` are read as `\\geq`/`\\leq`. A relation ending in a one-letter variable
    (`-3 \\le t`) is parsed without math_verify's unit removal, which would take the
    `t` for tonnes (this project strips units itself, `normalize.prepare_for_parsing`).
    """
    from latex2sympy2_extended.math_normalization import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    answer = answer.replace("⩾", "\\geq ").replace("⩽", "\\leq ")
    latex_config = LatexExtractionConfig()
    if _RELATION_THEN_LETTER.search(answer):
        latex_config = LatexExtractionConfig(
            normalization_config=NormalizationConfig(
                basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all"
            )
        )
    return parse(
        f"${answer}$",
        extraction_config=[latex_config, ExprExtractionConfig()],
        parsing_timeout=None,
    )


_RELATION_THEN_LETTER = re.compile(r"(?:[<>=≤≥≠]|\\(?:le|ge|leq|geq|lt|gt|ne|neq|leqslant|geqslant))\s*[A-Za-z]\s*$")


def _has_expression(parsed: list) -> bool:
    # parse() falls back to the raw string when sympy conversion fails.
    return any(not isinstance(item, str) for item in parsed)


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)


def main(read_fd: int, write_fd: int) -> None:
    # math_verify warns once per process that its timeout is off; that is on purpose here.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    compare("1", "1")  # import and warm up sympy / the latex parser before saying ready
    outbox.send(("ready", None))
    while True:
        try:
            job_name, args = inbox.recv()
        except EOFError:
            return
        try:
            outbox.send(("ok", JOBS[job_name](*args)))
        except Exception as error:  # noqa: BLE001 - reported to the parent; one bad input must not kill the worker
            outbox.send(("error", f"{type(error).__name__}: {error}"[:500]))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
