"""How a benchmark's JSON records the command that made it (RESULTS.md cites it for every figure)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence


def command(module: str, argv: Sequence[str] | None = None) -> str:
    """``python -m reasoning.benchmarks.<module>`` and its arguments, shell-quoted so the line can be
    pasted back; ``argv`` None means this process's own (``sys.argv[1:]``), as ``main(None)`` parses
    them. Not ``sys.argv`` whole: under ``python -m`` its first item is the script's file path."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", "-m", f"reasoning.benchmarks.{module}", *arguments])
