"""Pull a Python program out of a model's free-form output, and assemble HumanEval programs.

``extract_code`` prefers the last ```python fenced block, then the last fenced block of any
language, then the whole text when it parses as Python (or starts like code). Blocks
without a ``def``/``class`` are skipped when an earlier block has one (a trailing usage
example must not replace the solution).
"""

from __future__ import annotations

import ast
import re
import warnings

__all__ = ["assemble_humaneval", "defines", "extract_code", "prompt_imports"]

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^\s*(def |class |import |from \w+ import |@|    \S)", re.MULTILINE)


def _parses(code: str) -> bool:
    try:
        compile(code, "<candidate>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def defines(code: str, name: str) -> bool:
    """Does ``code`` define ``name`` at top level (function, class or assignment)?"""
    if re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(|^class\s+{re.escape(name)}\b", code, re.MULTILINE):
        return True
    return bool(re.search(rf"^{re.escape(name)}\s*=", code, re.MULTILINE))


def defined_functions(code: str) -> tuple[str, ...]:
    """Names of the top-level functions and classes ``code`` defines (none if it does not parse)."""
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence" in a dataset's regexes
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return ()
    return tuple(node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


def extract_code(text: str | None, entry_point: str | None = None) -> str | None:
    """The candidate program in ``text``, or None when there is none.

    With ``entry_point``, a fenced block that defines it is preferred over later blocks
    that do not (for example a usage example after the solution).
    """
    if not text or not text.strip():
        return None
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    if blocks:
        python = [body for lang, body in blocks if lang in ("python", "py", "python3")]
        candidates = python or [body for _, body in blocks]
        candidates = [c for c in candidates if c.strip()]
        if candidates:
            if entry_point:
                defining = [c for c in candidates if defines(c, entry_point)]
                if defining:
                    return defining[-1].rstrip() + "\n"
            with_def = [c for c in candidates if re.search(r"^\s*(def|class)\s", c, re.MULTILINE)]
            return (with_def or candidates)[-1].rstrip() + "\n"
    body = text.strip("\n")
    if _parses(body) and (_CODE_START.search(body) or "return" in body):
        return body.rstrip() + "\n"
    if _CODE_START.search(body):  # code with some prose around it: keep from the first code line
        start = _CODE_START.search(body).start()  # type: ignore[union-attr]
        tail = body[start:]
        if _parses(tail):
            return tail.rstrip() + "\n"
    return None


def prompt_imports(prompt: str) -> str:
    """The top-level ``import``/``from`` lines of a HumanEval prompt."""
    lines = [line for line in prompt.splitlines() if re.match(r"^(import |from \S+ import )", line)]
    return "\n".join(lines)


def assemble_humaneval(prompt: str, completion: str, entry_point: str) -> str:
    """The program to test for a HumanEval task.

    A completion that defines ``entry_point`` itself is used whole, after the prompt's
    imports (and the prompt's other helper functions, which some tasks call). A completion
    that gives only the body is appended to the prompt, as in the original harness; its
    indentation is repaired when the model dropped the first level.
    """
    if defines(completion, entry_point):
        helpers = _prompt_helpers(prompt, entry_point, completion)
        return "\n".join(part for part in (prompt_imports(prompt), helpers, completion) if part.strip()) + "\n"
    body = completion
    if body.strip() and not body.startswith((" ", "\t")) and not _parses(prompt + body):
        body = "\n".join(("    " + line) if line.strip() else line for line in body.splitlines())
    return prompt + body + "\n"


def _prompt_helpers(prompt: str, entry_point: str, completion: str) -> str:
    """Top-level functions of the prompt other than the entry point that the completion lacks."""
    try:
        tree = ast.parse(prompt + "    pass\n")
    except SyntaxError:
        return ""
    lines = prompt.splitlines()
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name != entry_point and not defines(completion, node.name):
            start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno]) - 1
            out.append("\n".join(lines[start : node.end_lineno]))
    return "\n\n".join(out)
